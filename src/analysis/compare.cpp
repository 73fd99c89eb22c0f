// Models side by side (compare.h): the reference first, kept loaded; every
// other model loaded, timed, run on the prompts, scored on the text against
// the reference, and released before the next.
#include "lmlab/compare.h"

#include <chrono>
#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "lmlab/analysis.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/model_cache.h"
#include "lmlab/report.h"
#include "lmlab/sweep.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab::analysis {

// ---------------------------------------------------------------- throughput

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Throughput measure_throughput(const Model& m, int prompt, int gen, int batch, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> token(0, m.config().vocab_size - 1);
  const int L = std::max(prompt, 1);
  std::vector<int> ids(static_cast<size_t>(batch) * L);
  for (int& t : ids) t = token(rng);
  auto cache = m.make_cache();
  auto t0 = std::chrono::steady_clock::now();
  mx::array logits = m.forward(mx::array(ids.begin(), {batch, L}, mx::int32), cache.get());
  mx::array next = mx::argmax(mx::slice(logits, {0, L - 1, 0}, {batch, L, logits.shape(2)}), -1);
  mx::eval(next);
  Throughput t;
  if (prompt > 0) t.pp_tps = static_cast<double>(batch) * prompt / seconds_since(t0);
  // Each step is built from the previous step's token before that token is
  // read, and scheduled at once: the host builds step i+1 while the device
  // runs step i.
  double build = 0, schedule = 0;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < gen; ++i) {
    auto t1 = std::chrono::steady_clock::now();
    logits = m.forward(mx::astype(next, mx::int32), cache.get());
    mx::array following = mx::argmax(logits, -1);
    auto t2 = std::chrono::steady_clock::now();
    mx::async_eval(following);
    build += std::chrono::duration<double>(t2 - t1).count();
    schedule += seconds_since(t2);
    mx::eval(next);
    next = std::move(following);
  }
  mx::eval(next);
  if (gen > 0) {
    t.tg_tps = static_cast<double>(batch) * gen / seconds_since(t0);
    t.host_build_ms = 1e3 * build / gen;
    t.host_schedule_ms = 1e3 * schedule / gen;
  }
  return t;
}

MeanStd mean_std(const std::vector<double>& v) {
  MeanStd s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x / static_cast<double>(v.size());
  if (v.size() > 1) {
    for (double x : v) s.std += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));
  }
  return s;
}

// ---------------------------------------------------------------- compare

void validate(const CompareOptions& o) {
  auto at_least = [](int64_t v, int64_t min, const char* name) {
    if (v < min) throw std::invalid_argument(fmt::format("[compare] {} {} is below {}", name, v, min));
  };
  if (o.prompts.empty()) throw std::invalid_argument("[compare] needs at least one prompt");
  at_least(o.max_tokens, 1, "--max-tokens");
  at_least(o.text_tokens, 0, "--tokens");
  at_least(o.speed_prompt, 1, "--speed-prompt");
  at_least(o.speed_gen, 1, "--speed-gen");
  at_least(o.repetitions, 1, "--repetitions");
  at_least(o.warmup, 0, "--warmup");
  quant::validate(o.windows);
}

namespace {

// The quantization a user would name: a GGUF's file type, a config's scheme,
// else the stored dtype.
void describe(const LoadedModel& m, const ModelSummary& s, ModelFigures& f) {
  CachedModel d = describe_model(m.path);
  f.format = m.format;
  f.file_bytes = d.bytes;
  f.architecture = !d.architecture.empty() ? d.architecture : s.model_type;
  f.quantization = d.quantization;
  if (f.quantization.empty() && !s.params.empty()) f.quantization = s.params.front().dtype;
  f.params = s.total_params;
  f.bits_per_weight = s.bits_per_param;
}

void measure_speed(const Model& model, const CompareOptions& o, ModelFigures& f) {
  const int ctx = model.config().max_position_embeddings;
  if (ctx > 0 && o.speed_prompt + o.speed_gen > ctx)
    throw std::invalid_argument(fmt::format("[compare] {}: --speed-prompt {} + --speed-gen {} exceed its context of {}",
                                            f.name, o.speed_prompt, o.speed_gen, ctx));
  std::mt19937_64 rng(o.seed);
  for (int w = 0; w < o.warmup; ++w) measure_throughput(model, o.speed_prompt, o.speed_gen, 1, rng);
  std::vector<double> pp, tg;
  for (int r = 0; r < o.repetitions; ++r) {
    Throughput t = measure_throughput(model, o.speed_prompt, o.speed_gen, 1, rng);
    pp.push_back(t.pp_tps);
    tg.push_back(t.tg_tps);
  }
  f.pp_tps = mean_std(pp);
  f.tg_tps = mean_std(tg);
}

void run_prompts(const LoadedModel& m, const CompareOptions& o, ModelFigures& f) {
  GenerateOptions g;
  g.max_tokens = o.max_tokens;
  g.sampler.temp = 0;
  for (const std::string& p : o.prompts) {
    GenerationResult r = generate(m, build_prompt(m, p, o.system, o.chat_template), g);
    f.texts.push_back(r.text);
    f.text_lengths.push_back(r.stats.generation_tokens);
  }
}

std::vector<int> text_tokens(const LoadedModel& m, const CompareOptions& o) {
  if (!o.text_file.empty()) return quant::tokenize_file(m, o.text_file, o.text_tokens);
  std::vector<int> ids = m.tokenizer.encode(default_eval_text(), /*add_special_tokens=*/true);
  if (o.text_tokens > 0 && static_cast<int64_t>(ids.size()) > o.text_tokens) ids.resize(o.text_tokens);
  return ids;
}

// Σ NLL in bits over the UTF-8 bytes of the tokens the windows score.
double bits_per_byte(const LoadedModel& m, const std::vector<int>& ids, const quant::Perplexity& p,
                     const quant::WindowOptions& w) {
  size_t bytes = 0;
  for (const quant::Window& win : quant::plan_windows(static_cast<int64_t>(ids.size()), w))
    bytes += m.tokenizer
                 .decode(std::span<const int>(ids).subspan(win.first_target, win.end - win.first_target),
                         /*skip_special_tokens=*/true)
                 .size();
  const double nll_bits = p.nll.mean * static_cast<double>(p.scored) / std::numbers::ln2;
  return bytes > 0 ? nll_bits / static_cast<double>(bytes) : 0.0;
}

// Everything that needs only the model: size, speed, memory, greedy texts.
ModelFigures measure(const std::string& name, const ModelLoader& load, const CompareOptions& o, LoadedModel& m) {
  ModelFigures f{.name = name};
  const size_t before = Context::active_memory();
  Context::reset_peak_memory();
  m = load(name);
  f.path = m.path;
  f.load_seconds = m.load_seconds;
  describe(m, inspect(*m.model), f);
  measure_speed(*m.model, o, f);
  run_prompts(m, o, f);
  const size_t peak = Context::peak_memory();
  f.peak_memory_gb = static_cast<double>(peak > before ? peak - before : 0) / 1e9;
  return f;
}

}  // namespace

Comparison compare_models(const std::vector<std::string>& models, const ModelLoader& load, const CompareOptions& o,
                          const ProgressCallback& progress) {
  validate(o);
  if (models.size() < 2)
    throw std::invalid_argument(fmt::format("[compare] needs at least two models (got {})", models.size()));
  Comparison c{.options = o, .text_source = o.text_file.empty() ? "built-in text" : o.text_file};
  auto step = [&](size_t done) {
    if (progress)
      progress({.what = "comparing", .done = static_cast<double>(done), .total = static_cast<double>(models.size()),
                .unit = "models", .finished = done == models.size()});
  };
  step(0);
  LoadedModel ref;
  c.models.push_back(measure(models[0], load, o, ref));
  const std::vector<int> ref_ids = text_tokens(ref, o);
  c.models[0].perplexity = quant::perplexity(*ref.model, ref_ids, o.windows);
  c.models[0].bits_per_byte = bits_per_byte(ref, ref_ids, c.models[0].perplexity, o.windows);
  step(1);
  for (size_t i = 1; i < models.size(); ++i) {
    LoadedModel m;
    ModelFigures f = measure(models[i], load, o, m);
    const std::vector<int> ids = text_tokens(m, o);
    if (ids != ref_ids)
      f.kl_missing = "its tokens of the text differ from the reference's (another tokenizer)";
    else if (m.model->config().vocab_size != ref.model->config().vocab_size)
      f.kl_missing = fmt::format("its vocabulary has {} entries, the reference's {}", m.model->config().vocab_size,
                                 ref.model->config().vocab_size);
    if (f.kl_missing.empty()) {
      f.kl = quant::compare(*m.model, *ref.model, ids, o.windows);
      f.perplexity = f.kl->model;
    } else {
      f.perplexity = quant::perplexity(*m.model, ids, o.windows);
    }
    f.bits_per_byte = bits_per_byte(m, ids, f.perplexity, o.windows);
    c.models.push_back(std::move(f));
    step(i + 1);
  }
  return c;
}

// ---------------------------------------------------------------- reports

namespace {

std::string pm(const MeanStd& s) { return fmt::format("{:.1f} ± {:.1f}", s.mean, s.std); }

// A cell of a markdown table: line breaks as spaces, no outer blanks.
std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  const size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

std::string to_markdown(const Comparison& c) {
  report::Table t{.columns = {""}, .align = "l"};
  for (const auto& m : c.models) {
    t.columns.push_back(m.name.empty() ? "default" : m.name);
    t.align += 'r';
  }
  auto row = [&](const std::string& label, auto&& cell) {
    std::vector<std::string> r{label};
    for (size_t i = 0; i < c.models.size(); ++i) r.push_back(cell(c.models[i], i));
    t.rows.push_back(std::move(r));
  };
  using F = const ModelFigures&;
  row("architecture", [](F m, size_t) { return m.architecture; });
  row("format", [](F m, size_t) { return m.quantization.empty() ? m.format : m.format + ", " + m.quantization; });
  row("parameters", [](F m, size_t) { return count_label(m.params); });
  row("file size", [](F m, size_t) { return bytes_label(m.file_bytes); });
  row("bits per weight", [](F m, size_t) { return fmt::format("{:.3f}", m.bits_per_weight); });
  row("load time (s)", [](F m, size_t) { return fmt::format("{:.3f}", m.load_seconds); });
  row(fmt::format("prompt tok/s (pp{})", c.options.speed_prompt), [](F m, size_t) { return pm(m.pp_tps); });
  row(fmt::format("generation tok/s (tg{})", c.options.speed_gen), [](F m, size_t) { return pm(m.tg_tps); });
  row("peak memory (GB)", [](F m, size_t) { return fmt::format("{:.3f}", m.peak_memory_gb); });
  row("text tokens scored", [](F m, size_t) { return std::to_string(m.perplexity.scored); });
  row("perplexity", [](F m, size_t) { return fmt::format("{:.3f} ± {:.3f}", m.perplexity.ppl, m.perplexity.ppl_se); });
  row("bits per byte", [](F m, size_t) { return fmt::format("{:.4f}", m.bits_per_byte); });
  row("KL vs reference (nats)", [](F m, size_t i) {
    return i == 0 ? std::string("reference") : m.kl ? fmt::format("{:.5f} ± {:.5f}", m.kl->kl.mean, m.kl->kl.se) : "n/a";
  });
  row("same top-1 as reference", [](F m, size_t i) {
    return i == 0 ? std::string("reference") : m.kl ? fmt::format("{:.2f}%", 100 * m.kl->top1) : "n/a";
  });
  std::string out = fmt::format("evaluation text: {}; windows of {} with stride {}; speed: mean ± std over {} runs "
                                "after {} warm-up, batch 1, random tokens\n\n",
                                c.text_source, c.options.windows.context, c.options.windows.stride,
                                c.options.repetitions, c.options.warmup);
  out += report::markdown(t);
  for (size_t i = 1; i < c.models.size(); ++i)
    if (!c.models[i].kl_missing.empty())
      out += fmt::format("\nn/a for {}: {}.\n", c.models[i].name, c.models[i].kl_missing);
  for (size_t p = 0; p < c.options.prompts.size(); ++p) {
    report::Table g{.columns = {"model", "greedy text"}, .align = "ll"};
    for (const auto& m : c.models)
      g.rows.push_back({m.name.empty() ? "default" : m.name, one_line(m.texts.at(p))});
    out += fmt::format("\n**{}** (up to {} tokens)\n\n{}", one_line(c.options.prompts[p]), c.options.max_tokens,
                       report::markdown(g));
  }
  return out;
}

void to_json(json& j, const Comparison& c) {
  json models = json::array();
  for (const auto& m : c.models) {
    json r = {{"name", m.name},
              {"path", m.path},
              {"format", m.format},
              {"architecture", m.architecture},
              {"quantization", m.quantization},
              {"params", m.params},
              {"file_bytes", m.file_bytes},
              {"bits_per_weight", m.bits_per_weight},
              {"load_seconds", m.load_seconds},
              {"peak_memory_gb", m.peak_memory_gb},
              {"pp_tps", {{"mean", m.pp_tps.mean}, {"std", m.pp_tps.std}}},
              {"tg_tps", {{"mean", m.tg_tps.mean}, {"std", m.tg_tps.std}}},
              {"perplexity", m.perplexity},
              {"bits_per_byte", m.bits_per_byte},
              {"texts", m.texts},
              {"text_tokens", m.text_lengths}};
    if (m.kl) r["versus_reference"] = *m.kl;
    if (!m.kl_missing.empty()) r["versus_reference_missing"] = m.kl_missing;
    models.push_back(std::move(r));
  }
  const CompareOptions& o = c.options;
  j = {{"text", c.text_source},
       {"windows", o.windows},
       {"prompts", o.prompts},
       {"max_tokens", o.max_tokens},
       {"system", o.system},
       {"chat_template", o.chat_template},
       {"speed", {{"prompt_tokens", o.speed_prompt}, {"gen_tokens", o.speed_gen},
                  {"repetitions", o.repetitions}, {"warmup", o.warmup}, {"seed", o.seed}}},
       {"models", models}};
}

}  // namespace lmlab::analysis
