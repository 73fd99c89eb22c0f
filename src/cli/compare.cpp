// lmlab compare MODEL_A MODEL_B ...: the same prompts and evaluation text
// through each model, side by side against the first (analysis/compare.cpp),
// as markdown or JSON.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eta.h"
#include "lmlab/compare.h"
#include "lmlab/core.h"

namespace lmlab::cli {

namespace {

struct CompareCliOptions {
  std::vector<std::string> models;
  ModelOptions model;  // compute options shared by every model
  PromptOptions prompts;
  analysis::CompareOptions compare;
  std::string output;
  bool json = false;
};

void run_compare(CompareCliOptions& o) {
  check_usage([&] {
    if (o.models.size() < 2)
      throw std::invalid_argument(fmt::format("[compare] give at least two models (got {})", o.models.size()));
    if (!o.prompts.prompts.empty()) o.compare.prompts = o.prompts.all();
    o.compare.system = o.prompts.system;
    o.compare.chat_template = !o.prompts.no_chat_template;
    analysis::validate(o.compare);
  });
  Context ctx = make_context(o.model, o.compare.seed);
  auto loader = [&](const std::string& name) {
    ModelOptions mo = o.model;
    mo.model = name == "default" ? "" : name;
    return load(ctx, mo);
  };
  analysis::Comparison c = analysis::compare_models(o.models, loader, o.compare, eta_progress());
  const std::string text = o.json ? nlohmann::json(c).dump(2) + "\n" : analysis::to_markdown(c);
  if (!o.output.empty()) write_file_atomic(o.output, text);
  fmt::print("{}", text);
}

}  // namespace

void setup_compare(CLI::App& app) {
  auto o = std::make_shared<CompareCliOptions>();
  app.add_option("models", o->models,
                 "models to compare, the first being the reference: GGUF files, model directories, Hub ids, "
                 "short names (gemma3-270m), or `default`")
      ->required();
  o->model.add_compute(app);
  o->prompts.add(app, /*many=*/true, "prompt for the greedy texts (repeatable; default: three built-in prompts)");
  auto& c = o->compare;
  app.add_option("-n,--max-tokens", c.max_tokens, "greedy tokens per prompt")->capture_default_str();
  app.add_option("-f,--text", c.text_file,
                 "evaluation text: a text file, or .jsonl with \"text\", \"prompt\"/\"completion\" or \"messages\" "
                 "(default: a built-in passage of about 300 tokens)");
  app.add_option("--tokens", c.text_tokens, "score only the first N tokens of the text (0: all)")->capture_default_str();
  app.add_option("--context,--ctx-size", c.windows.context, "tokens per scoring window")->capture_default_str();
  app.add_option("--stride", c.windows.stride, "tokens between window starts")->capture_default_str();
  app.add_option("--speed-prompt", c.speed_prompt, "random-token prompt timed for prompt tok/s")->capture_default_str();
  app.add_option("--speed-gen", c.speed_gen, "decode steps timed for generation tok/s")->capture_default_str();
  app.add_option("-r,--repetitions", c.repetitions, "timed speed runs per model")->capture_default_str();
  app.add_option("--warmup", c.warmup, "untimed speed runs before them")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the random speed-run tokens")->capture_default_str();
  app.add_option("-o,--output", o->output, "also write the report to this file (atomically)");
  add_json_flag(app, o->json, "one object: every figure, the KL statistics and the texts");
  app.callback([o] { run_compare(*o); });
}

}  // namespace lmlab::cli
