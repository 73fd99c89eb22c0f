// The sensitivity atlas: every layer's projections (and the embedding and
// head) perturbed one at a time at a fixed strength, each scored by the KL of
// the model's next-token distributions against the unperturbed model's over
// an evaluation text. The baseline is computed once; each entry costs one
// edit, one pass over the text from the perturbed block on, and one restore
// (hash-checked).
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/internal.h"
#include "analysis/sweep_internal.h"
#include "lmlab/model.h"
#include "lmlab/report.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace lmlab::analysis {

namespace {

const std::vector<std::string> kLayerKinds = {"q", "k", "v", "o", "gate", "up", "down"};
const std::vector<std::string> kModelKinds = {"embed", "head", "tied"};

std::string layer_tensor(const std::string& kind, int l) {
  static const std::map<std::string, std::string> path = {
      {"q", "self_attn.q_proj"}, {"k", "self_attn.k_proj"}, {"v", "self_attn.v_proj"}, {"o", "self_attn.o_proj"},
      {"gate", "mlp.gate_proj"}, {"up", "mlp.up_proj"},       {"down", "mlp.down_proj"}};
  return fmt::format("model.layers.{}.{}.weight", l, path.at(kind));
}

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void validate(const AtlasOptions& o, const Model& m) {
  auto bad = [](const std::string& s) { throw std::invalid_argument("[atlas] " + s); };
  if (o.mode != "noise" && o.mode != "requantize") bad(fmt::format("mode '{}': choose noise or requantize", o.mode));
  if (o.mode == "noise" && !(o.level > 0 && std::isfinite(o.level)))
    bad(fmt::format("noise level {} must be a positive number", o.level));
  if (o.kinds.empty()) bad("no tensor kinds to perturb");
  for (const auto& k : o.kinds)
    if (std::find(kLayerKinds.begin(), kLayerKinds.end(), k) == kLayerKinds.end() &&
        std::find(kModelKinds.begin(), kModelKinds.end(), k) == kModelKinds.end())
      bad(fmt::format("unknown tensor kind '{}' (q, k, v, o, gate, up, down, embed, head, tied)", k));
  for (int l : o.layers)
    if (l < 0 || l >= m.config().num_hidden_layers)
      bad(fmt::format("layer {} outside [0, {})", l, m.config().num_hidden_layers));
  quant::validate(o.windows);
}

EditSpec spec_for(const AtlasOptions& o, const std::string& target) {
  if (o.mode == "noise")
    return {.target = target, .op = EditOp::Noise, .value = o.level, .relative = true, .seed = o.seed};
  return {.target = target, .op = EditOp::Requantize, .value = static_cast<double>(o.bits), .group_size = o.group_size};
}

struct Job {
  std::string kind;
  int layer = -1;
  std::vector<std::string> targets;  // edited together (tied: embedding and head)
};

std::vector<Job> plan(const Model& m, const AtlasOptions& o, bool tied) {
  std::vector<int> layers = o.layers;
  if (layers.empty())
    for (int l = 0; l < m.config().num_hidden_layers; ++l) layers.push_back(l);
  auto wants = [&](const std::string& k) { return std::find(o.kinds.begin(), o.kinds.end(), k) != o.kinds.end(); };
  std::vector<Job> jobs;
  if (wants("embed")) jobs.push_back({"embed", -1, {"model.embed_tokens.weight"}});
  if (wants("head")) jobs.push_back({"head", -1, {"lm_head.weight"}});
  if (tied && (wants("tied") || (wants("embed") && wants("head"))))
    jobs.push_back({"tied", -1, {"model.embed_tokens.weight", "lm_head.weight"}});
  for (int l : layers)
    for (const auto& k : kLayerKinds)
      if (wants(k)) jobs.push_back({k, l, {layer_tensor(k, l)}});
  return jobs;
}

json atlas_config(const LoadedModel& m, const AtlasOptions& o, uint64_t hash, const std::vector<int>& tokens) {
  json c = {{"lmlab", version()}, {"model", m.path}, {"model_hash", detail::hex64(hash)}, {"mode", o.mode},
            {"kinds", o.kinds}, {"layers", o.layers}, {"windows", o.windows},
            {"eval", {{"source", o.eval_source.empty() ? "built-in text" : o.eval_source}, {"tokens", tokens.size()}}}};
  if (o.mode == "noise") c["level"] = o.level, c["seed"] = o.seed;
  else c["bits"] = o.bits, c["group_size"] = o.group_size;
  return c;
}

}  // namespace

Atlas run_atlas(const LoadedModel& m, const AtlasOptions& o, const ProgressCallback& progress) {
  const auto t0 = Clock::now();
  validate(o, *m.model);
  const bool tied = m.model->config().tie_word_embeddings && !m.model->weights().contains("lm_head.weight");
  // On a tied model the head is perturbed through an untied copy (shared arrays), so "embed" and "head" each
  // change one side only.
  const LoadedModel u = tied ? untie(m) : m;
  Model& model = *u.model;
  std::vector<Job> jobs = plan(model, o, tied);
  std::vector<int> tokens = detail::eval_tokens(u, o.eval_tokens);
  Atlas a{.model = m.path, .model_hash = weights_hash(*m.model), .tied = tied, .eval_tokens = static_cast<int64_t>(tokens.size())};
  a.config = atlas_config(m, o, a.model_hash, tokens);
  auto tb = Clock::now();
  // Each entry's pass starts at the block it perturbs, from the baseline's
  // residual stream (the head's at the head): on average half the blocks.
  int first = model.config().num_hidden_layers;
  for (const Job& job : jobs) first = std::min(first, detail::first_layer_changed(model, job.targets));
  detail::Baseline base = detail::make_baseline(model, tokens, o.windows,
                                                detail::keep_residuals(model, tokens, o.windows, std::max(first, 1)));
  a.baseline_ppl = base.ppl;
  a.baseline_seconds = since(tb);
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    const auto te = Clock::now();
    std::vector<std::string> group;
    for (const auto& t : job.targets) {
      group.push_back(t);
      if (std::string p = quant_prefix(model.weights(), t); !p.empty()) group.push_back(p + ".scales"), group.push_back(p + ".biases");
    }
    const uint64_t h0 = weights_hash(model, group);
    Surgery s(model);
    for (const auto& t : job.targets) s.apply(spec_for(o, t));
    const double edit = since(te);
    const auto tv = Clock::now();
    detail::Divergence d;
    try {
      d = detail::diverge(model, tokens, o.windows, base, detail::first_layer_changed(model, job.targets));
    } catch (...) {
      s.restore();
      throw;
    }
    a.eval_seconds += since(tv);
    s.restore();
    if (weights_hash(model, group) != h0)
      throw std::logic_error(fmt::format("[atlas] restoring {} did not give back the original bytes", job.targets[0]));
    AtlasEntry e{.kind = job.kind, .layer = job.layer, .tensor = job.targets[0],
                 .params = param_info(model.weights(), job.targets[0]).params, .kl = d.kl.mean, .kl_se = d.kl.se,
                 .top1 = d.top1, .ppl = d.ppl, .seconds = since(te)};
    a.edit_seconds += edit;
    a.entries.push_back(e);
    if (progress)
      progress({.what = "atlas", .done = static_cast<double>(i + 1), .total = static_cast<double>(jobs.size()),
                .unit = "tensors", .finished = i + 1 == jobs.size()});
  }
  a.seconds = since(t0);
  return a;
}

namespace {

std::string col_label(const AtlasEntry& e) { return e.kind; }

}  // namespace

std::string atlas_svg(const Atlas& a) {
  std::vector<std::string> cols;
  int layers = 0;
  for (const auto& e : a.entries) {
    if (std::find(cols.begin(), cols.end(), col_label(e)) == cols.end()) cols.push_back(col_label(e));
    layers = std::max(layers, e.layer + 1);
  }
  // Layer kinds first, then the whole-model tensors in their own row on top.
  std::stable_partition(cols.begin(), cols.end(), [](const std::string& c) {
    return std::find(kLayerKinds.begin(), kLayerKinds.end(), c) != kLayerKinds.end();
  });
  bool model_row = std::any_of(a.entries.begin(), a.entries.end(), [](const AtlasEntry& e) { return e.layer < 0; });
  report::Heatmap h{.title = fmt::format("KL per perturbed tensor ({})", a.config.value("mode", std::string())),
                    .col_labels = cols, .unit = "nats/token"};
  if (model_row) h.row_labels.push_back("model");
  for (int l = 0; l < layers; ++l) h.row_labels.push_back(fmt::format("layer {}", l));
  h.values.assign(h.row_labels.size() * cols.size(), std::nan(""));
  for (const auto& e : a.entries) {
    const size_t r = e.layer < 0 ? 0 : static_cast<size_t>(e.layer) + (model_row ? 1 : 0);
    const size_t c = std::find(cols.begin(), cols.end(), col_label(e)) - cols.begin();
    h.values[r * cols.size() + c] = e.kl;
  }
  return report::svg(h);
}

std::string atlas_markdown(const Atlas& a) {
  const json& c = a.config;
  std::string strength = c.at("mode") == "noise"
                             ? fmt::format("Gaussian noise of {} quantization step(s) (dense tensors: × their RMS), seed {}",
                                           report::number(c.at("level")), c.at("seed").get<uint64_t>())
                             : fmt::format("re-quantization to {} bits, group {}", c.at("bits").get<int>(), c.at("group_size").get<int>());
  std::string s = fmt::format("# Sensitivity atlas\n\n- model: `{}` (weights hash {}), lmlab {}\n- perturbation: {}, one tensor at a time\n",
                              a.model, c.at("model_hash").get<std::string>(), c.at("lmlab").get<std::string>(), strength);
  if (a.tied)
    s += "- the head is tied to the embedding: `embed` perturbs the input side only, `head` the output side only "
         "(an untied copy), `tied` both (what quantizing the shared tensor does)\n";
  s += fmt::format("- evaluation: {} tokens of {}, windows of {} (stride {}); baseline perplexity {:.4f}\n", a.eval_tokens,
                   c.at("eval").at("source").get<std::string>(), c.at("windows").at("context").get<int>(),
                   c.at("windows").at("stride").get<int>(), a.baseline_ppl);
  s += fmt::format("- time: {:.1f} s in all: baseline {:.1f} s, edits {:.1f} s, evaluation passes {:.1f} s "
                   "({} entries, {:.2f} s each)\n\n",
                   a.seconds, a.baseline_seconds, a.edit_seconds, a.eval_seconds, a.entries.size(),
                   a.entries.empty() ? 0.0 : (a.edit_seconds + a.eval_seconds) / a.entries.size());
  std::vector<const AtlasEntry*> ranked;
  for (const auto& e : a.entries) ranked.push_back(&e);
  std::sort(ranked.begin(), ranked.end(), [](auto x, auto y) { return x->kl > y->kl; });
  report::Table t{.columns = {"rank", "tensor", "kind", "layer", "params", "KL mean", "± se", "top-1", "ppl"},
                  .align = "rllrrrrrr"};
  for (size_t i = 0; i < ranked.size(); ++i) {
    const AtlasEntry& e = *ranked[i];
    t.rows.push_back({std::to_string(i + 1), e.tensor, e.kind, e.layer < 0 ? "" : std::to_string(e.layer),
                      count_label(e.params), fmt::format("{:.4g}", e.kl), fmt::format("{:.2g}", e.kl_se),
                      fmt::format("{:.4f}", e.top1), fmt::format("{:.4g}", e.ppl)});
  }
  return s + "## Ranked by KL\n\n" + report::markdown(t);
}

void to_json(json& j, const Atlas& a) {
  json entries = json::array();
  for (const auto& e : a.entries)
    entries.push_back({{"kind", e.kind}, {"layer", e.layer}, {"tensor", e.tensor}, {"params", e.params},
                       {"kl", e.kl}, {"kl_se", e.kl_se}, {"top1", e.top1}, {"ppl", e.ppl}, {"seconds", e.seconds}});
  j = {{"config", a.config}, {"model", a.model}, {"model_hash", detail::hex64(a.model_hash)}, {"tied", a.tied},
       {"baseline_ppl", a.baseline_ppl}, {"eval_tokens", a.eval_tokens}, {"entries", entries},
       {"seconds", {{"total", a.seconds}, {"baseline", a.baseline_seconds}, {"edits", a.edit_seconds},
                    {"evaluation", a.eval_seconds}}}};
}

Atlas read_atlas(const fs::path& file) {
  std::ifstream f(file);
  if (!f) throw std::runtime_error(fmt::format("[atlas] cannot read {}", file.string()));
  try {
    json j = json::parse(f);
    Atlas a{.config = j.at("config"), .model = j.at("model"),
            .model_hash = std::stoull(j.at("model_hash").get<std::string>(), nullptr, 16), .tied = j.at("tied"),
            .baseline_ppl = j.at("baseline_ppl"), .eval_tokens = j.at("eval_tokens")};
    for (const auto& e : j.at("entries"))
      a.entries.push_back({.kind = e.at("kind"), .layer = e.at("layer"), .tensor = e.at("tensor"),
                           .params = e.at("params"), .kl = e.at("kl"), .kl_se = e.at("kl_se"), .top1 = e.at("top1"),
                           .ppl = e.at("ppl"), .seconds = e.at("seconds")});
    return a;
  } catch (const std::exception& e) {  // json::exception, or std::stoull on a hash that is not hex
    throw std::invalid_argument(fmt::format("[atlas] {} is not an atlas.json written by lmlab sweep --atlas ({})",
                                            file.string(), e.what()));
  }
}

quant::Sensitivity sensitivity(const Atlas& a) {
  quant::Sensitivity s{.mode = a.config.at("mode").get<std::string>()};
  if (s.mode == "requantize") s.bits = a.config.at("bits"), s.group_size = a.config.at("group_size");
  else s.level = a.config.at("level");
  auto module = [](const std::string& t) { return t.ends_with(".weight") ? t.substr(0, t.size() - 7) : t; };
  bool has_tied = false;
  for (const auto& e : a.entries) has_tied |= e.kind == "tied";
  for (const auto& e : a.entries) {
    if (a.tied && e.kind == "head") continue;  // no separate head to quantize
    if (a.tied && e.kind == "embed" && has_tied) continue;
    s.kl[e.kind == "tied" ? "model.embed_tokens" : module(e.tensor)] = e.kl;
  }
  return s;
}

std::vector<fs::path> write_atlas_report(const Atlas& a, const fs::path& dir) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"atlas.md", atlas_markdown(a)}, {"atlas.json", json(a).dump(2) + "\n"}, {"atlas.svg", atlas_svg(a)}};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("[atlas] cannot create {}: {}", dir.string(), ec.message()));
  std::vector<fs::path> out;
  for (const auto& [name, text] : files) {
    write_file_atomic(dir / name, text);
    out.push_back(dir / name);
  }
  return out;
}

}  // namespace lmlab::analysis
