// lmlab ppl: perplexity of a model over a text file or JSONL dataset in
// sliding windows, and with --reference the KL divergence of its next-token
// distributions against another model's on the same tokens, reported as
// llama.cpp's `perplexity --kl-divergence` reports it.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eta.h"
#include "lmlab/quant.h"

namespace lmlab::cli {

namespace {

using json = nlohmann::json;

struct PplOptions {
  ModelOptions model;
  std::string text;
  std::string reference;
  quant::WindowOptions windows;
  int64_t tokens = 0;
  bool json = false;
};

void print_summary(const char* what, const quant::Summary& s, double scale, const char* unit) {
  fmt::print("{}\n", what);
  fmt::print("  mean    {:12.6f} ± {:.6f} {}   (95% CI {:.6f} to {:.6f})\n", s.mean * scale, s.se * scale, unit,
             s.ci95_low * scale, s.ci95_high * scale);
  const std::pair<const char*, double> rows[] = {{"maximum", s.max}, {"99.9%", s.p999}, {"99%", s.p99},
                                                 {"95%", s.p95},     {"90%", s.p90},    {"median", s.median},
                                                 {"10%", s.p10},     {"5%", s.p05},     {"1%", s.p01},
                                                 {"minimum", s.min}};
  for (auto [name, v] : rows) fmt::print("  {:<8}{:12.6f} {}\n", name, v * scale, unit);
}

void print_ppl(const std::string& name, const quant::Perplexity& p) {
  fmt::print("{:<10} PPL {:.4f} ± {:.4f}   mean NLL {:.6f} ± {:.6f} nats/token\n", name, p.ppl, p.ppl_se, p.nll.mean,
             p.nll.se);
}

void run_ppl(const PplOptions& o) {
  check_usage([&] {
    quant::validate(o.windows);
    if (o.tokens < 0) throw std::invalid_argument(fmt::format("[ppl] --tokens {} must be >= 0", o.tokens));
  });
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<int> tokens = quant::tokenize_file(m, o.text, o.tokens);
  ProgressCallback progress = eta_progress();
  const std::string head = fmt::format(
      "{}: {} tokens, windows of {} tokens with stride {} ({} scored after at least {} tokens of context)\n", o.text,
      tokens.size(), o.windows.context, o.windows.stride, o.windows.stride == o.windows.context ? "disjoint;" : "each token",
      o.windows.context - o.windows.stride);
  if (o.reference.empty()) {
    quant::Perplexity p = quant::perplexity(*m.model, tokens, o.windows, progress);
    if (o.json) {
      print_json({{"model", m.path}, {"text", o.text}, {"perplexity", p}});
      return;
    }
    fmt::print("{}", head);
    print_ppl("model", p);
    fmt::print("{} windows, {} tokens scored\n", p.windows, p.scored);
    return;
  }
  ModelOptions ro = o.model;
  ro.model = o.reference;
  LoadedModel r = load(ctx, ro);
  quant::KlComparison k = quant::compare(*m.model, *r.model, tokens, o.windows, progress);
  if (o.json) {
    print_json({{"model", m.path}, {"reference", r.path}, {"text", o.text}, {"comparison", k}});
    return;
  }
  fmt::print("{}model     {}\nreference {}\n\n", head, m.path, r.path);
  print_ppl("model", k.model);
  print_ppl("reference", k.reference);
  fmt::print("Mean ln(PPL(model)/PPL(reference)) {:.6f} ± {:.6f}   PPL ratio {:.6f}\n", k.ln_ratio.mean,
             k.ln_ratio.se, std::exp(k.ln_ratio.mean));
  fmt::print("Cor(ln PPL(model), ln PPL(reference)) {:.2f}%\n\n", 100 * k.ln_ppl_correlation);
  print_summary("KL divergence (reference ‖ model)", k.kl, 1.0, "nats");
  fmt::print("\nSame top-1 token {:.3f} ± {:.3f} %   (95% CI {:.3f} to {:.3f} %)\n\n", 100 * k.top1, 100 * k.top1_se,
             100 * k.top1_ci95_low, 100 * k.top1_ci95_high);
  print_summary("Δp = p_model(token) − p_reference(token)", k.delta_p, 100.0, "%");
  fmt::print("  RMS Δp  {:12.6f} %\n", 100 * k.rms_delta_p);
  fmt::print("\n{} tokens scored in {} windows; ± is one standard error\n", k.model.scored, k.model.windows);
}

}  // namespace

void setup_ppl(CLI::App& app) {
  auto o = std::make_shared<PplOptions>();
  o->model.add(app);
  app.add_option("-f,--text,text", o->text, "text file, or .jsonl with \"text\", \"prompt\"/\"completion\" or \"messages\"")
      ->required();
  app.add_option("--reference", o->reference, "a second model (same vocabulary): KL divergence of the model against it");
  app.add_option("--context,--ctx-size", o->windows.context, "tokens per window")->capture_default_str();
  app.add_option("--stride", o->windows.stride,
                 "tokens between window starts; each window scores its last `stride` tokens (= context: disjoint windows)")
      ->capture_default_str();
  app.add_option("--batch-tokens", o->windows.batch_tokens, "windows run together while rows × context fit this")
      ->capture_default_str();
  app.add_option("--tokens", o->tokens, "score only the first N tokens of the text (0: all)")->capture_default_str();
  add_json_flag(app, o->json, "one object: perplexity, or the comparison with --reference");
  app.callback([o] { run_ppl(*o); });
}

}  // namespace lmlab::cli
