// sweep: one surgery edit at a schedule of strengths. The unperturbed model
// is measured once (baseline); each point applies the edit, measures, and
// restores the originals, checked by hash. Points are kept in a state file
// after each one, so an interrupted sweep resumes where it stopped.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "analysis/internal.h"
#include "analysis/sweep_internal.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/report.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::analysis {

const char* const kStatuses[4] = {"healthy", "degraded", "collapsing", "dead"};

namespace {

int status_index(const std::string& s) {
  for (int i = 0; i < 4; ++i)
    if (s == kStatuses[i]) return i;
  throw std::invalid_argument(fmt::format("[sweep] unknown status '{}' (healthy, degraded, collapsing, dead)", s));
}

bool integer_op(EditOp op) {
  return op == EditOp::ShiftWords || op == EditOp::ShiftFields || op == EditOp::Requantize;
}

// The edit at strength v: the rate of a bit flip, the value of anything else.
EditSpec edit_at(const EditSpec& e, const std::string& target, double v) {
  EditSpec s = e;
  s.target = target;
  if (s.op == EditOp::FlipBits) s.rate = v;
  else s.value = v;
  return s;
}

bool identity_edit(const EditSpec& e, double v) {
  return v == 0 && (e.op == EditOp::ShiftWords || e.op == EditOp::ShiftFields || e.op == EditOp::Noise ||
                    e.op == EditOp::FlipBits);
}

json schedule_json(const Schedule& s) {
  static const char* kinds[] = {"list", "log-grid", "bisect"};
  json j = {{"kind", kinds[static_cast<int>(s.kind)]}};
  if (s.kind == Schedule::Kind::List) j["values"] = s.values;
  if (s.kind != Schedule::Kind::List) j["lo"] = s.lo, j["hi"] = s.hi;
  if (s.kind == Schedule::Kind::LogGrid) j["points"] = s.points;
  if (s.kind == Schedule::Kind::Bisect) j["resolution"] = s.resolution;
  return j;
}

uint64_t fnv(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Everything that makes two runs the same run; a state file is reused only
// when this matches exactly.
json run_config(const LoadedModel& m, const SweepOptions& o, const ResolvedTarget& rt, uint64_t model_hash,
                const std::vector<int>& tokens) {
  json edit = {{"op", edit_op_name(o.edit.op)}, {"target", o.edit.target}, {"resolved", rt.target},
               {"relative", o.edit.relative}, {"seed", o.edit.seed}};
  if (o.edit.op == EditOp::Requantize) edit["group_size"] = o.edit.group_size;
  if (o.edit.op == EditOp::FlipBits && !o.edit.positions.empty()) edit["positions"] = o.edit.positions;
  const Criterion& c = o.criterion;
  return {{"lmlab", version()},
          {"model", m.path},
          {"model_hash", detail::hex64(model_hash)},
          {"edit", edit},
          {"untie", o.untie},
          {"schedule", schedule_json(o.schedule)},
          {"prompts", o.prompts},
          {"expect", o.expect},
          {"max_tokens", o.max_tokens},
          {"chat_template", o.chat_template},
          {"system", o.system},
          {"eval", {{"source", o.eval_source.empty() ? "built-in text" : o.eval_source},
                    {"tokens", tokens.size()},
                    {"hash", detail::hex64(fnv(tokens.data(), tokens.size() * sizeof(int)))}}},
          {"windows", o.windows},
          {"thresholds", {{"healthy_kl", o.thresholds.healthy_kl}, {"degraded_kl", o.thresholds.degraded_kl},
                          {"collapsing_kl", o.thresholds.collapsing_kl}}},
          {"criterion", {{"metric", c.metric}, {"threshold", c.threshold}, {"status", c.status}}},
          {"example_words", o.example_words}};
}

// Points of an earlier run of the same configuration.
std::vector<SweepPoint> read_state(const fs::path& file, const json& config) {
  if (!fs::exists(file)) return {};
  json state;
  try {
    std::ifstream f(file);
    state = json::parse(f);
  } catch (const json::exception& e) {
    throw std::runtime_error(fmt::format("[sweep] {}: unreadable state ({}); remove it to start over", file.string(), e.what()));
  }
  if (!state.contains("config") || state["config"] != config) {
    std::vector<std::string> differ;
    if (state.contains("config") && state["config"].is_object())
      for (auto& [k, v] : config.items())
        if (!state["config"].contains(k) || state["config"][k] != v) differ.push_back(k);
    throw std::invalid_argument(fmt::format(
        "[sweep] {} belongs to a different sweep (it differs in: {}); choose another output folder or remove it",
        file.string(), differ.empty() ? std::string("its format") : fmt::format("{}", fmt::join(differ, ", "))));
  }
  try {
    return state.value("points", json::array()).get<std::vector<SweepPoint>>();
  } catch (const std::exception& e) {  // json::exception, or std::stoull on a hash that is not hex
    throw std::runtime_error(fmt::format("[sweep] {}: unreadable state ({}); remove it to start over", file.string(), e.what()));
  }
}

void write_state(const fs::path& file, const json& config, const std::vector<SweepPoint>& points) {
  if (file.empty()) return;
  write_file_atomic(file, json{{"config", config}, {"points", points}}.dump(1));
}

// An answer the unperturbed model gets right and this point gets wrong.
bool answer_lost(const SweepPoint& p, const std::vector<bool>& baseline) {
  for (size_t i = 0; i < p.answers_ok.size() && i < baseline.size(); ++i)
    if (baseline[i] && !p.answers_ok[i]) return true;
  return false;
}

// The matched tensors and the scales and biases of matched quantized weights:
// every tensor an edit of the target can replace.
std::vector<std::string> edit_group(const Weights& w, const std::vector<std::string>& names) {
  std::vector<std::string> out;
  auto add = [&](const std::string& n) {
    if (w.contains(n) && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (const auto& n : names) {
    add(n);
    if (std::string p = quant_prefix(w, n); !p.empty()) add(p + ".scales"), add(p + ".biases");
  }
  return out;
}

}  // namespace

namespace detail {

std::string classify(const SweepPoint& p, const Thresholds& t, const std::vector<bool>& baseline) {
  if (p.kl <= t.healthy_kl && !answer_lost(p, baseline)) return kStatuses[0];
  if (p.kl <= t.degraded_kl) return kStatuses[1];
  if (p.kl <= t.collapsing_kl) return kStatuses[2];
  return kStatuses[3];
}

bool crossed(const Criterion& c, const SweepPoint& p, const SweepReport& r) {
  if (c.metric == "status") return status_index(p.status) >= status_index(c.status);
  if (c.metric == "kl") return p.kl >= c.threshold;
  if (c.metric == "top1") return p.top1 <= c.threshold;
  if (c.metric == "ppl_ratio") return p.ppl >= c.threshold * r.baseline_ppl;
  return answer_lost(p, r.baseline_answers_ok);
}

}  // namespace detail

namespace {

// One sweep in progress: the model, the baseline and the points so far.
class Runner {
 public:
  Runner(const LoadedModel& m, const SweepOptions& o, const ProgressCallback& progress)
      : m_(m), o_(o), progress_(progress) {}

  SweepReport run(const LoadedModel& original);

 private:
  void prepare();
  const SweepPoint& point(double v);
  SweepPoint measure(double v);
  std::vector<std::string> replies();
  std::vector<bool> check_answers(const std::vector<std::string>& replies) const;
  void bisect();
  void report_progress() const;

  const LoadedModel& m_;
  const SweepOptions& o_;
  const ProgressCallback& progress_;
  SweepReport r_;
  ResolvedTarget rt_;
  std::vector<int> tokens_;
  std::vector<std::vector<int>> prompts_;
  std::vector<std::regex> expect_;
  detail::Baseline base_;
  int first_layer_ = 0;  // the first block an edit of the target changes
  uint64_t target_hash_ = 0;
  double mean_word_ = 0;
  std::map<double, SweepPoint> done_;
  int planned_ = 0;
};

void Runner::prepare() {
  rt_ = resolve_target(*m_.model, o_.edit.target);
  r_.target = rt_.target;
  r_.tensors = edit_group(m_.model->weights(), match_tensors(*m_.model, rt_.target));  // throws for unknown names
  validate(o_.schedule, integer_op(o_.edit.op));
  validate(o_.thresholds);
  quant::validate(o_.windows);
  if (o_.max_tokens < 1) throw std::invalid_argument(fmt::format("[sweep] max_tokens {} must be at least 1", o_.max_tokens));
  if (o_.expect.size() > 1 && o_.expect.size() != o_.prompts.size())
    throw std::invalid_argument(fmt::format("[sweep] {} answer patterns for {} prompts; give one, or one per prompt",
                                            o_.expect.size(), o_.prompts.size()));
  for (const auto& e : o_.expect) {
    try {
      expect_.emplace_back(e);
    } catch (const std::regex_error& err) {
      throw std::invalid_argument(fmt::format("[sweep] answer pattern '{}' is not a valid regex: {}", e, err.what()));
    }
  }
  for (const auto& p : o_.prompts) prompts_.push_back(build_prompt(m_, p, o_.system, o_.chat_template));
  tokens_ = detail::eval_tokens(m_, o_.eval_tokens);
  r_.model = m_.path;
  r_.model_hash = weights_hash(*m_.model);
  r_.config = run_config(m_, o_, rt_, r_.model_hash, tokens_);
  r_.eval_tokens = static_cast<int64_t>(tokens_.size());
  target_hash_ = weights_hash(*m_.model, r_.tensors);
  mean_word_ = detail::mean_word(m_.model->weights(), r_.tensors);
}

std::vector<bool> Runner::check_answers(const std::vector<std::string>& replies) const {
  std::vector<bool> ok;
  for (size_t i = 0; i < replies.size(); ++i)
    ok.push_back(std::regex_search(replies[i], expect_.size() == 1 ? expect_[0] : expect_[i]));
  return ok;
}

std::vector<std::string> Runner::replies() {
  std::vector<std::string> out;
  GenerateOptions g;
  g.max_tokens = o_.max_tokens;
  g.sampler.temp = 0.0f;
  for (const auto& ids : prompts_) out.push_back(generate(m_, ids, g).text);
  return out;
}

SweepPoint Runner::measure(double v) {
  SweepPoint p{.value = v};
  Model& model = *m_.model;
  const Weights before = model.weights();  // handles only
  Surgery surgery(model);
  std::vector<std::string> edited;
  if (!identity_edit(o_.edit, v)) edited = surgery.apply(edit_at(o_.edit, rt_.target, v)).tensors;
  try {
    p.edited_hash = weights_hash(model, r_.tensors);
    detail::Measured measured = detail::measure(before, model.weights(), edited);
    p.change = measured.change;
    p.fields = measured.fields;
    if (o_.edit.op == EditOp::ShiftWords) p.change.word_pct = mean_word_ > 0 ? 100.0 * v / mean_word_ : 0.0;
    p.words = detail::example_words(before, model.weights(), edited.empty() ? r_.tensors : edited, o_.example_words);
    detail::Divergence d = detail::diverge(model, tokens_, o_.windows, base_, first_layer_);
    p.kl = d.kl.mean, p.kl_median = d.kl.median, p.kl_p99 = d.kl.p99, p.kl_max = d.kl.max;
    p.top1 = d.top1, p.ppl = d.ppl;
    p.replies = replies();
  } catch (...) {
    surgery.restore();
    throw;
  }
  surgery.restore();
  if (weights_hash(model, r_.tensors) != target_hash_)
    throw std::logic_error(fmt::format("[sweep] restoring {} after point {} did not give back the original bytes",
                                       rt_.target, report::number(v)));
  p.answers_ok = check_answers(p.replies);
  p.status = detail::classify(p, o_.thresholds, r_.baseline_answers_ok);
  return p;
}

const SweepPoint& Runner::point(double v) {
  auto it = done_.find(v);
  if (it == done_.end()) {
    it = done_.emplace(v, measure(v)).first;
    r_.points.push_back(it->second);
    write_state(o_.state_file, r_.config, r_.points);
  } else if (std::none_of(r_.points.begin(), r_.points.end(), [&](const SweepPoint& p) { return p.value == v; })) {
    r_.points.push_back(it->second);
    ++r_.resumed;
  }
  report_progress();
  return it->second;
}

void Runner::report_progress() const {
  if (progress_)
    progress_({.what = "sweep", .done = static_cast<double>(r_.points.size()),
               .total = static_cast<double>(std::max<int>(planned_, r_.points.size())), .unit = "points",
               .finished = false});
}

void Runner::bisect() {
  const Schedule& s = o_.schedule;
  const std::string what = o_.criterion.metric == "status" ? "status>=" + o_.criterion.status : o_.criterion.metric;
  auto [lo, hi] = analysis::bisect(s.lo, s.hi, s.resolution, integer_op(o_.edit.op),
                                   [&](double v) { return detail::crossed(o_.criterion, point(v), r_); }, what);
  r_.tipping_point = hi;
  r_.tipping_low = lo;
}

SweepReport Runner::run(const LoadedModel& original) {
  prepare();
  r_.tied_head = rt_.tied_head;
  r_.untied = &original != &m_;
  if (r_.untied) r_.head_note = "lm_head untied: the head is its own copy of model.embed_tokens, so only the output side changes";
  else if (rt_.tied_head) r_.head_note = "lm_head is tied to model.embed_tokens: the edit changes the input embedding as well as the output head (--untie perturbs the head alone)";
  else if (o_.edit.target.rfind("lm_head", 0) == 0) r_.head_note = "lm_head is the model's own output head (untied)";
  if (!o_.state_file.empty()) {
    std::vector<SweepPoint> earlier = read_state(o_.state_file, r_.config);
    write_state(o_.state_file, r_.config, earlier);  // an unwritable folder fails now, before any work
    for (auto& p : earlier) done_.emplace(p.value, std::move(p));
  }
  const Schedule& s = o_.schedule;
  std::vector<double> values = s.values;
  if (s.kind == Schedule::Kind::LogGrid) {
    values.clear();
    for (int i = 0; i < s.points; ++i)
      values.push_back(s.lo * std::pow(s.hi / s.lo, static_cast<double>(i) / (s.points - 1)));
    if (integer_op(o_.edit.op))
      for (double& v : values) v = std::round(v);
  }
  planned_ = s.kind == Schedule::Kind::Bisect
                 ? 2 + static_cast<int>(std::ceil(std::log2(std::max(2.0, (s.hi - s.lo) / std::max(s.resolution, 1e-300)))))
                 : static_cast<int>(values.size());
  // Passes after an edit start at the first block it changes (the head alone for lm_head).
  first_layer_ = detail::first_layer_changed(*m_.model, r_.tensors);
  base_ = detail::make_baseline(*m_.model, tokens_, o_.windows,
                                detail::keep_residuals(*m_.model, tokens_, o_.windows, first_layer_));
  r_.baseline_ppl = base_.ppl;
  r_.baseline_replies = replies();
  r_.baseline_answers_ok = check_answers(r_.baseline_replies);
  report_progress();
  if (s.kind == Schedule::Kind::Bisect) bisect();
  else
    for (double v : values) point(v);
  if (progress_)
    progress_({.what = "sweep", .done = static_cast<double>(r_.points.size()),
               .total = static_cast<double>(r_.points.size()), .unit = "points", .finished = true});
  return r_;
}

}  // namespace

std::vector<double> seed_shifts() {
  return {0, 1, 1e6, 1e6 + 1, 1e6 + 3, 1e6 + 4, 1e6 + 5, 1e6 + 10, 1e7, 1e8};
}

void validate(const Schedule& s, bool integer_values) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("[sweep] " + what); };
  auto check = [&](double v) {
    if (!std::isfinite(v)) bad(fmt::format("schedule value {} is not a finite number", v));
    if (integer_values && v != std::floor(v))
      bad(fmt::format("schedule value {} is not an integer, and this edit takes integers", report::number(v)));
  };
  switch (s.kind) {
    case Schedule::Kind::List:
      if (s.values.empty()) bad("the schedule has no values");
      for (double v : s.values) check(v);
      break;
    case Schedule::Kind::LogGrid:
      if (!(s.lo > 0 && s.hi > s.lo)) bad(fmt::format("a log grid needs 0 < lo < hi (got {} to {})", s.lo, s.hi));
      if (s.points < 2 || s.points > 10000) bad(fmt::format("a log grid needs 2 to 10000 points (got {})", s.points));
      break;
    case Schedule::Kind::Bisect:
      check(s.lo), check(s.hi);
      if (!(s.hi > s.lo)) bad(fmt::format("bisection needs lo < hi (got {} to {})", s.lo, s.hi));
      if (!(s.resolution > 0)) bad(fmt::format("bisection needs a resolution > 0 (got {})", s.resolution));
      if ((s.hi - s.lo) / s.resolution > 1e15) bad("bisection resolution is too fine for its range");
      break;
  }
}

void validate(const Thresholds& t) {
  if (!(t.healthy_kl >= 0 && t.healthy_kl <= t.degraded_kl && t.degraded_kl <= t.collapsing_kl) ||
      !std::isfinite(t.collapsing_kl))
    throw std::invalid_argument(fmt::format(
        "[sweep] thresholds must satisfy 0 <= healthy ({}) <= degraded ({}) <= collapsing ({})", t.healthy_kl,
        t.degraded_kl, t.collapsing_kl));
}

Criterion parse_criterion(const std::string& text) {
  static const std::regex re(R"(^\s*(status|kl|top1|ppl_ratio)\s*(>=|<=)\s*([A-Za-z]+|[-+0-9.eE]+)\s*$)");
  std::smatch m;
  if (text == "answers") return {.metric = "answers"};
  if (!std::regex_match(text, m, re))
    throw std::invalid_argument(fmt::format(
        "[sweep] criterion '{}' not understood; write status>=degraded, kl>=0.5, top1<=0.9, ppl_ratio>=2 or answers",
        text));
  Criterion c{.metric = m[1]};
  const std::string op = m[2], value = m[3];
  const bool want_ge = c.metric != "top1";
  if ((op == ">=") != want_ge)
    throw std::invalid_argument(fmt::format("[sweep] criterion '{}': {} takes {}", text, c.metric, want_ge ? ">=" : "<="));
  if (c.metric == "status") {
    c.status = value;
    (void)status_index(value);
    return c;
  }
  try {
    size_t used = 0;
    c.threshold = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
  } catch (const std::exception&) {
    throw std::invalid_argument(fmt::format("[sweep] criterion '{}': {} is not a number", text, value));
  }
  return c;
}

std::pair<double, double> bisect(double lo, double hi, double resolution, bool integers,
                                 const std::function<bool(double)>& past, const std::string& what) {
  if (!(hi > lo)) throw std::invalid_argument(fmt::format("[sweep] bisection needs lo < hi (got {} to {})", lo, hi));
  if (past(lo))
    throw std::invalid_argument(
        fmt::format("[sweep] at the bisection's low end {} '{}' already holds; start lower", report::number(lo), what));
  if (!past(hi))
    throw std::invalid_argument(
        fmt::format("[sweep] at the bisection's high end {} '{}' does not hold yet; end higher", report::number(hi), what));
  const double res = integers ? std::max(1.0, resolution) : resolution;
  while (hi - lo > res) {
    const double mid = integers ? std::floor((lo + hi) / 2) : (lo + hi) / 2;
    if (mid <= lo || mid >= hi) break;  // no representable midpoint left
    (past(mid) ? hi : lo) = mid;
  }
  return {lo, hi};
}

ResolvedTarget resolve_target(const Model& m, const std::string& target) {
  if (target.rfind("lm_head", 0) != 0 || m.weights().contains("lm_head.weight")) return {target, false};
  if (!m.config().tie_word_embeddings) return {target, false};
  return {"model.embed_tokens" + target.substr(7), true};
}

LoadedModel untie(const LoadedModel& m) {
  const Model& src = *m.model;
  if (!src.config().tie_word_embeddings || src.weights().contains("lm_head.weight"))
    throw std::invalid_argument("[sweep] --untie: the model's head is already its own tensor (lm_head.weight)");
  Weights w = src.weights();
  for (const char* part : {".weight", ".scales", ".biases"})
    if (const auto* a = w.find(std::string("model.embed_tokens") + part)) w.set(std::string("lm_head") + part, *a);
  if (const QuantSpec* q = w.quant("model.embed_tokens")) w.set_quant("lm_head", *q);
  json config = src.config().raw;
  config["tie_word_embeddings"] = false;
  LoadedModel out = m;
  out.model = make_model(config, std::move(w), src.dtype());
  return out;
}

SweepReport run_sweep(const LoadedModel& m, const SweepOptions& o, const ProgressCallback& progress) {
  if (o.untie) {
    LoadedModel u = untie(m);
    SweepOptions uo = o;
    return Runner(u, uo, progress).run(m);
  }
  return Runner(m, o, progress).run(m);
}

}  // namespace lmlab::analysis
