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
  std::vector<std::string> prompts;
  an::PredictOptions predict;
  bool no_chat_template = false;
  bool lens = false;
  int lens_k = 3;
  bool json = false;
};

json probs_json(const std::vector<an::TokenProb>& top) {
  json a = json::array();
  for (const auto& t : top) a.push_back({{"id", t.id}, {"token", t.piece}, {"prob", t.prob}, {"logit", t.logit}});
  return a;
}

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

void run_predict(PredictCliOptions o) {
  if (o.prompts.empty()) o.prompts.push_back(read_prompt(""));
  o.predict.chat_template = !o.no_chat_template;
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<an::Prediction> preds = an::predict(m, o.prompts, o.predict);
  json out = json::array();
  const size_t per_prompt = o.predict.temperatures.size();
  for (size_t i = 0; i < preds.size(); ++i) {
    const an::Prediction& p = preds[i];
    const bool first = i % per_prompt == 0;
    std::vector<an::LensRow> lens;
    if (o.lens && first) {
      lens = an::logit_lens(*m.model, p.ids, o.lens_k);
      for (auto& r : lens) an::fill_pieces(m.tokenizer, r.top);
    }
    if (o.json) {
      json j = {{"prompt", p.prompt}, {"prompt_tokens", p.ids.size()}, {"temperature", p.temperature},
                {"entropy_bits", p.entropy}, {"top", probs_json(p.top)}};
      if (!lens.empty()) {
        json l = json::array();
        for (const auto& r : lens) l.push_back({{"layer", r.name}, {"entropy_bits", r.entropy}, {"top", probs_json(r.top)}});
        j["logit_lens"] = l;
      }
      out.push_back(j);
      continue;
    }
    if (first) fmt::print("{}prompt {:?}  ({} tokens)\n", i ? "\n" : "", p.prompt, p.ids.size());
    print_prediction(p);
    if (!lens.empty()) print_lens(lens);
  }
  if (o.json) std::cout << out.dump(2) << "\n";
}

}  // namespace

void setup_predict(CLI::App& app) {
  auto o = std::make_shared<PredictCliOptions>();
  add_model_options(app, o->model);
  app.add_option("-p,--prompt", o->prompts, "prompt (repeatable; absent: read stdin)");
  app.add_option("-s,--system", o->predict.system, "system prompt");
  app.add_option("-k,--top-k", o->predict.k, "tokens shown")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--temp", o->predict.temperatures, "temperature (repeatable, e.g. --temp 0.5 --temp 1 --temp 2)")
      ->capture_default_str();
  app.add_flag("--no-chat-template", o->no_chat_template, "encode the prompt as raw text");
  app.add_flag("--logit-lens", o->lens, "top tokens read from every layer's residual stream");
  app.add_option("--lens-k", o->lens_k, "tokens per layer in the logit lens")->capture_default_str();
  app.add_flag("--json", o->json, "print JSON: one object per prompt and temperature");
  app.callback([o] { run_predict(*o); });
}

}  // namespace lmlab::cli
