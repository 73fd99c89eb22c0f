// lmlab generate: text from a prompt, streamed, then the statistics
// mlx_lm.generate prints (or one JSON object with --json).
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace lmlab::cli {

namespace {

struct GenerateCliOptions {
  ModelOptions model;
  PromptOptions prompt;
  GenerateOptions gen;
  bool json = false;
};

void run_generate(GenerateCliOptions& o) {
  check_usage([&] { validate(o.gen); });
  std::string prompt = o.prompt.one();
  Context ctx = make_context(o.model, o.gen.sampler.seed);
  LoadedModel m = load(ctx, o.model);
  std::vector<int> ids = build_prompt(m, prompt, o.prompt.system, !o.prompt.no_chat_template);
  o.gen.on_prefill = terminal_progress();
  // The peak is MLX's, for the process: start it here so it covers this generation.
  Context::reset_peak_memory();
  if (o.json) {
    nlohmann::json out = generate(m, ids, o.gen);
    out["prompt_tokens"] = ids;
    out["stats"]["load_seconds"] = m.load_seconds;
    print_json(out);
    return;
  }
  Generator g(m, ids, o.gen);  // refuses a bad prompt before anything is printed
  std::cout << "==========\n" << std::flush;
  while (auto step = g.next()) std::cout << step->text << std::flush;
  const GenerationResult& r = g.result();
  std::cout << "\n==========\n";
  fmt::print("Prompt: {} tokens, {:.3f} tokens-per-sec\n", r.stats.prompt_tokens, r.stats.prompt_tps);
  fmt::print("Generation: {} tokens, {:.3f} tokens-per-sec\n", r.stats.generation_tokens,
             r.stats.generation_tps);
  fmt::print("Peak memory: {:.3f} GB (MLX allocator)\n", r.stats.peak_memory_gb);
  fmt::print("Load time: {:.3f} s\n", m.load_seconds);
}

}  // namespace

void setup_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateCliOptions>();
  o->model.add(app);
  o->prompt.add(app);
  add_generation_options(app, o->gen);
  add_json_flag(app, o->json, "one object with text, token ids and stats");
  app.callback([o] { run_generate(*o); });
}

}  // namespace lmlab::cli
