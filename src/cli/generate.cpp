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
  GenerateOptions gen;
  std::string prompt;
  std::string system;
  bool no_chat_template = false;
  bool json = false;
};

void run_generate(const GenerateCliOptions& o) {
  std::string prompt = read_prompt(o.prompt);
  Context ctx = make_context(o.model, o.gen.sampler.seed);
  LoadedModel m = load(ctx, o.model);
  if (o.model.verbose)
    fmt::print(stderr, "Loaded {} ({}) in {:.3f} s on {}\n", m.path, m.format, m.load_seconds,
               ctx.device_name());
  std::vector<int> ids = build_prompt(m, prompt, o.system, !o.no_chat_template);
  if (o.json) {
    GenerationResult r = generate(m, ids, o.gen);
    nlohmann::json out = {
        {"text", r.text},
        {"prompt_tokens", ids},
        {"tokens", r.tokens},
        {"finish_reason", r.stats.finish_reason},
        {"stats",
         {{"prompt_tokens", r.stats.prompt_tokens},
          {"prompt_tps", r.stats.prompt_tps},
          {"generation_tokens", r.stats.generation_tokens},
          {"generation_tps", r.stats.generation_tps},
          {"time_to_first_token", r.stats.time_to_first_token},
          {"peak_memory_gb", r.stats.peak_memory_gb},
          {"load_seconds", m.load_seconds}}}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "==========\n" << std::flush;
  GenerationResult r = generate(m, ids, o.gen, [](const std::string& piece) {
    std::cout << piece << std::flush;
    return true;
  });
  std::cout << "\n==========\n";
  fmt::print("Prompt: {} tokens, {:.3f} tokens-per-sec\n", r.stats.prompt_tokens, r.stats.prompt_tps);
  fmt::print("Generation: {} tokens, {:.3f} tokens-per-sec\n", r.stats.generation_tokens,
             r.stats.generation_tps);
  fmt::print("Peak memory: {:.3f} GB\n", r.stats.peak_memory_gb);
  fmt::print("Load time: {:.3f} s\n", m.load_seconds);
}

}  // namespace

void setup_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateCliOptions>();
  add_model_options(app, o->model);
  app.add_option("-p,--prompt", o->prompt, "prompt text ('-' or absent: read stdin)");
  app.add_option("-s,--system", o->system, "system prompt");
  app.add_option("--max-tokens", o->gen.max_tokens, "maximum tokens to generate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_sampling_options(app, o->gen.sampler);
  app.add_option("--stop", o->gen.stop, "stop string (repeatable)");
  app.add_option("--prefill-step-size", o->gen.prefill_step, "prompt tokens per forward chunk")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-chat-template", o->no_chat_template, "encode the prompt as raw text");
  app.add_flag("--ignore-eos", [o](int64_t) { o->gen.stop_at_eos = false; }, "do not stop at EOS");
  app.add_flag("--json", o->json, "print one JSON object: text, token ids, stats");
  app.callback([o] { run_generate(*o); });
}

}  // namespace lmlab::cli
