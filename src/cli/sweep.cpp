// lmlab sweep: a surgery edit at a schedule of strengths (a list, a log grid,
// or a bisection for the tipping point), the seed notebook's table on the
// terminal and the full report in --out (markdown, CSV, JSON, SVG); with
// --atlas, every layer's tensors perturbed in turn (heatmap, ranked table).
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eta.h"
#include "lmlab/report.h"
#include "lmlab/sweep.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
namespace fs = std::filesystem;
using json = nlohmann::json;

struct SweepCliOptions {
  ModelOptions model;
  std::string op = "shift-words";
  an::SweepOptions sweep;
  std::vector<std::string> values, log_grid, bisect;
  std::string until = "status>=degraded";
  PromptOptions prompt;
  std::vector<std::string> expect;
  std::string text;
  int64_t eval_tokens = 0;
  std::string out = "sweep";
  bool restart = false;
  bool json = false;
  bool atlas = false;
  an::AtlasOptions atlas_options;
  std::vector<std::string> kinds;
};

double parse_number(const std::string& s, const char* flag) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(fmt::format("[sweep] {}: '{}' is not a number", flag, s));
}

// "LO:HI" or "LO:HI:N".
std::vector<double> parse_range(const std::vector<std::string>& parts, size_t want, const char* flag) {
  if (parts.size() != want)
    throw std::invalid_argument(fmt::format("[sweep] {} takes {} numbers separated by ':'", flag,
                                            want == 2 ? "LO:HI" : "LO:HI:POINTS"));
  std::vector<double> out;
  for (const auto& p : parts) out.push_back(parse_number(p, flag));
  return out;
}

an::Schedule schedule_of(const SweepCliOptions& o) {
  an::Schedule s;
  const int given = !o.values.empty() + !o.log_grid.empty() + !o.bisect.empty();
  if (given > 1) throw std::invalid_argument("[sweep] give one of --values, --log-grid and --bisect");
  if (!o.values.empty()) {
    s.values.clear();
    for (const auto& v : o.values) s.values.push_back(parse_number(v, "--values"));
  } else if (!o.log_grid.empty()) {
    auto r = parse_range(o.log_grid, 3, "--log-grid");
    s.kind = an::Schedule::Kind::LogGrid;
    s.lo = r[0], s.hi = r[1];
    if (r[2] != std::floor(r[2])) throw std::invalid_argument("[sweep] --log-grid: the number of points must be an integer");
    s.points = static_cast<int>(r[2]);
  } else if (!o.bisect.empty()) {
    auto r = parse_range(o.bisect, 2, "--bisect");
    s.kind = an::Schedule::Kind::Bisect;
    s.lo = r[0], s.hi = r[1];
    s.resolution = o.sweep.schedule.resolution;
  }
  return s;
}

std::string reply_cell(const an::SweepPoint& p) {
  std::string s;
  for (const auto& r : p.replies) s += (s.empty() ? "" : " / ") + json(r).dump(-1, ' ', false, json::error_handler_t::replace);
  return s;
}

void print_table(const an::SweepReport& r) {
  const bool words = r.config["edit"]["op"] == "shift-words";
  fmt::print("{:>12}  {:>14}  {:<9}  {:>10}  {:>7}  {}\n", words ? "shift" : "value", "% of original", "status", "KL",
             "top-1", "response");
  for (const auto& p : r.points)
    fmt::print("{:>12}  {:>13.6g}%  {:<9}  {:>10.4g}  {:>7.4f}  {}\n", report::number(p.value),
               words ? p.change.word_pct : 100 * p.change.value_rel, p.status, p.kl, p.top1, reply_cell(p));
}

void run_atlas_mode(SweepCliOptions& o, const LoadedModel& m) {
  an::AtlasOptions& a = o.atlas_options;
  if (!o.kinds.empty()) a.kinds = o.kinds;
  a.eval_tokens = o.sweep.eval_tokens;
  a.eval_source = o.sweep.eval_source;
  a.windows = o.sweep.windows;
  a.seed = o.sweep.edit.seed;
  an::Atlas atlas = an::run_atlas(m, a, eta_progress());
  auto files = an::write_atlas_report(atlas, o.out);
  if (o.json) {
    print_json(atlas);
    return;
  }
  std::vector<const an::AtlasEntry*> ranked;
  for (const auto& e : atlas.entries) ranked.push_back(&e);
  std::sort(ranked.begin(), ranked.end(), [](auto x, auto y) { return x->kl > y->kl; });
  fmt::print("most sensitive tensors (KL against the unperturbed model, nats/token)\n");
  for (size_t i = 0; i < ranked.size() && i < 12; ++i)
    fmt::print("  {:>3}  {:<44} {:>10.4g}  top-1 {:.4f}\n", i + 1, ranked[i]->tensor + (ranked[i]->kind == "tied" ? " (tied)" : ""),
               ranked[i]->kl, ranked[i]->top1);
  fmt::print("{} tensors in {:.1f} s (baseline {:.1f} s, edits {:.1f} s, evaluation {:.1f} s)\n", atlas.entries.size(),
             atlas.seconds, atlas.baseline_seconds, atlas.edit_seconds, atlas.eval_seconds);
  for (const auto& f : files) fmt::print("wrote {}\n", f.string());
}

void run_sweep_cli(SweepCliOptions o) {
  check_usage([&] {
    o.sweep.edit.op = an::parse_edit_op(o.op);
    o.sweep.schedule = schedule_of(o);
    o.sweep.criterion = an::parse_criterion(o.until);
    an::validate(o.sweep.schedule, o.sweep.edit.op == an::EditOp::ShiftWords ||
                                       o.sweep.edit.op == an::EditOp::ShiftFields ||
                                       o.sweep.edit.op == an::EditOp::Requantize);
    an::validate(o.sweep.thresholds);
  });
  if (!o.prompt.prompts.empty()) o.sweep.prompts = o.prompt.all();
  if (!o.expect.empty()) o.sweep.expect = o.expect;
  o.sweep.chat_template = !o.prompt.no_chat_template;
  o.sweep.system = o.prompt.system;
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  if (!o.text.empty()) {
    o.sweep.eval_tokens = quant::tokenize_file(m, o.text, o.eval_tokens);
    o.sweep.eval_source = o.text;
  } else if (o.eval_tokens > 0) {
    throw std::invalid_argument("[sweep] --eval-tokens goes with --text");
  }
  if (o.atlas) return run_atlas_mode(o, m);
  const fs::path state = fs::path(o.out) / "sweep-state.json";
  if (o.restart) fs::remove(state);
  const bool created = !fs::exists(o.out);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw std::runtime_error(fmt::format("[sweep] cannot create {}: {}", o.out, ec.message()));
  o.sweep.state_file = state.string();
  an::SweepReport r;
  std::vector<fs::path> files;
  try {
    r = an::run_sweep(m, o.sweep, eta_progress());
    files = an::write_sweep_report(r, o.out);
  } catch (...) {
    // A sweep that failed before its first point leaves no empty folder;
    // one with finished points keeps them for the rerun to resume from.
    if (created && fs::is_empty(o.out, ec)) fs::remove(o.out, ec);
    throw;
  }
  if (o.json) {
    print_json(r);
    return;
  }
  fmt::print("{} on {}{}\n", o.op, r.target, r.target != o.sweep.edit.target ? fmt::format(" (given as {})", o.sweep.edit.target) : "");
  if (!r.head_note.empty()) fmt::print("{}\n", r.head_note);
  fmt::print("unperturbed: perplexity {:.4f} over {} tokens; replies {}\n\n", r.baseline_ppl, r.eval_tokens,
             json(r.baseline_replies).dump(-1, ' ', false, json::error_handler_t::replace));
  print_table(r);
  if (r.tipping_point)
    fmt::print("\ntipping point ({}): between {} and {}\n", o.until, report::number(r.tipping_low),
               report::number(*r.tipping_point));
  if (r.resumed) fmt::print("\n{} point{} read back from {}\n", r.resumed, r.resumed == 1 ? "" : "s", state.string());
  fmt::print("originals restored after every point (hash-checked)\n");
  for (const auto& f : files) fmt::print("wrote {}\n", f.string());
}

}  // namespace

void setup_sweep(CLI::App& app) {
  auto o = std::make_shared<SweepCliOptions>();
  o->model.add(app);
  app.add_option("op", o->op, "the edit: shift-words, shift-fields, noise, flip-bits, scale, set, zero, requantize")
      ->capture_default_str();
  app.add_option("target", o->sweep.edit.target,
                 "tensor name or glob; lm_head names the output head (the embedding on a tied model); "
                 "X.scales / X.biases perturb a quantized module's scales or biases")
      ->capture_default_str();
  app.add_option("-v,--value,--values", o->values, "the schedule: edit values (strengths), comma-separated (default: the seed's shifts)")
      ->delimiter(',');
  app.add_option("--log-grid", o->log_grid, "LO:HI:N, N geometric strengths from LO to HI")->delimiter(':');
  app.add_option("--bisect", o->bisect, "LO:HI, bisection for the tipping point between LO and HI")->delimiter(':');
  app.add_option("--resolution", o->sweep.schedule.resolution, "bisection: stop when the bracket is this narrow")
      ->capture_default_str();
  app.add_option("--until", o->until, "bisection criterion: status>=degraded, kl>=X, top1<=X, ppl_ratio>=X, answers")
      ->capture_default_str();
  app.add_flag("--relative", o->sweep.edit.relative, "noise in units of each group's scale (quantization steps)");
  app.add_option("--seed", o->sweep.edit.seed, "seed of noise and random bit flips")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--group-size", o->sweep.edit.group_size, "requantize: group size")->capture_default_str();
  app.add_flag("--untie", o->sweep.untie, "a tied head becomes its own copy: only the output side changes");
  o->prompt.add(app, /*many=*/true, "prompt answered greedily at every point (repeatable; default \"What is 2+2?\")");
  app.add_option("--expect", o->expect, "regex the reply must contain (one, or one per prompt; default \"4\")");
  app.add_option("-n,--max-tokens", o->sweep.max_tokens, "greedy tokens per reply")->capture_default_str();
  app.add_option("--text", o->text, "evaluation text for KL, top-1 and perplexity (.txt or .jsonl; default: a built-in passage)");
  app.add_option("--eval-tokens", o->eval_tokens, "use the first N tokens of --text (0: all)")->capture_default_str();
  app.add_option("--context", o->sweep.windows.context, "evaluation window, tokens")->capture_default_str();
  app.add_option("--stride", o->sweep.windows.stride, "evaluation window stride, tokens")->capture_default_str();
  app.add_option("--healthy-kl", o->sweep.thresholds.healthy_kl, "healthy up to this KL (and every answer right)")
      ->capture_default_str();
  app.add_option("--degraded-kl", o->sweep.thresholds.degraded_kl, "degraded up to this KL")->capture_default_str();
  app.add_option("--collapsing-kl", o->sweep.thresholds.collapsing_kl, "collapsing up to this KL; dead beyond")
      ->capture_default_str();
  app.add_option("--words", o->sweep.example_words, "packed words shown before and after")->capture_default_str();
  app.add_option("-o,--output,--out", o->out, "report folder (also holds the state that resumes an interrupted sweep)")
      ->capture_default_str();
  app.add_flag("--restart", o->restart, "forget the points an earlier run of this sweep left in --out");
  add_json_flag(app, o->json, "the report");
  app.add_flag("--atlas", o->atlas, "atlas mode: every layer's tensors perturbed in turn at one strength");
  app.add_option("--atlas-mode", o->atlas_options.mode, "atlas: noise or requantize")->capture_default_str();
  app.add_option("--level", o->atlas_options.level, "atlas noise: sigma in quantization steps (dense: × RMS)")
      ->capture_default_str();
  app.add_option("--bits", o->atlas_options.bits, "atlas requantize: bits")->capture_default_str();
  app.add_option("--kinds", o->kinds, "atlas: tensor kinds (q,k,v,o,gate,up,down,embed,head,tied)")->delimiter(',');
  app.add_option("--layers", o->atlas_options.layers, "atlas: layers (default: all)")->delimiter(',');
  app.callback([o] {
    o->atlas_options.group_size = o->sweep.edit.group_size;
    run_sweep_cli(*o);
  });
}

}  // namespace lmlab::cli
