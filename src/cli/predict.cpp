// lmlab predict: the next-token distribution of one or many prompts as a
// top-k table with bars, at one or several temperatures, and --logit-lens to
// read the top tokens from every layer's residual stream.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct PredictCliOptions {
  ModelOptions model;
  PromptOptions prompt;
  an::PredictOptions predict;
  bool lens = false;
  int lens_k = 3;
  bool json = false;
};

void print_prediction(const an::Prediction& p) {
  fmt::print("temperature {:g}   entropy {:.2f} bits\n", p.temperature, p.entropy);
  const float top = p.top.empty() ? 1.0f : p.top[0].prob;
  for (size_t i = 0; i < p.top.size(); ++i) {
    const auto& t = p.top[i];
    fmt::print("  {:>2}  {:<16} {:>7.2f}%  {}\n", i + 1, fmt::format("{:?}", an::visible(t.piece)),
               100 * t.prob, an::bar(top > 0 ? t.prob / top : 0, 30));
  }
}

void print_lens(const std::vector<an::LensRow>& rows) {
  fmt::print("logit lens (last position; each layer's residual stream through the final norm and head)\n");
  fmt::print("  {:<10} {:>8}  {:<26} {}\n", "after", "entropy", "top-1", "next");
  for (const auto& r : rows) {
    if (r.top.empty()) continue;
    std::string rest;
    for (size_t i = 1; i < r.top.size(); ++i)
      rest += fmt::format("{:?} {:.0f}%  ", an::visible(r.top[i].piece), 100 * r.top[i].prob);
    fmt::print("  {:<10} {:>8.2f}  {:<18} {:>6.1f}% {:<8}  {}\n", r.name, r.entropy,
               fmt::format("{:?}", an::visible(r.top[0].piece)), 100 * r.top[0].prob,
               an::bar(r.top[0].prob, 8), rest);
  }
}

void run_predict(PredictCliOptions& o) {
  o.predict.chat_template = !o.prompt.no_chat_template;
  o.predict.system = o.prompt.system;
  check_usage([&] {
    an::validate(o.predict);
    if (o.lens_k < 1) throw std::invalid_argument(fmt::format("[predict] lens-k {}: must be >= 1", o.lens_k));
  });
  std::vector<std::string> prompts = o.prompt.all();
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<an::Prediction> preds;
  {
    Activity busy("running the model");
    preds = an::predict(m, prompts, o.predict);
  }
  json out = json::array();
  const size_t per_prompt = o.predict.temperatures.size();
  for (size_t i = 0; i < preds.size(); ++i) {
    const an::Prediction& p = preds[i];
    const bool first = i % per_prompt == 0;
    std::vector<an::LensRow> lens;
    if (o.lens && first) {
      Activity busy("reading every layer");
      lens = an::logit_lens(*m.model, p.ids, o.lens_k);
      for (auto& r : lens) an::fill_pieces(m.tokenizer, r.top);
    }
    if (o.json) {
      json j = p;
      if (!lens.empty()) j["logit_lens"] = lens;
      out.push_back(j);
      continue;
    }
    if (first) fmt::print("{}prompt {:?}  ({} tokens)\n", i ? "\n" : "", p.prompt, p.ids.size());
    print_prediction(p);
    if (!lens.empty()) print_lens(lens);
  }
  if (o.json) print_json(out);
}

}  // namespace

void setup_predict(CLI::App& app) {
  auto o = std::make_shared<PredictCliOptions>();
  o->model.add(app);
  o->prompt.add(app, /*many=*/true);
  app.add_option("-k,--top-k", o->predict.k, "tokens shown")->capture_default_str();
  app.add_option("--temp", o->predict.temperatures, "temperature (repeatable, e.g. --temp 0.5 --temp 1 --temp 2)")
      ->capture_default_str();
  app.add_flag("--logit-lens", o->lens, "top tokens read from every layer's residual stream");
  app.add_option("--lens-k", o->lens_k, "tokens per layer in the logit lens")->capture_default_str();
  add_json_flag(app, o->json, "one object per prompt and temperature");
  app.callback([o] { run_predict(*o); });
}

}  // namespace lmlab::cli
