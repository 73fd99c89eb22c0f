#include <unistd.h>

#include <iostream>
#include <iterator>

#include <fmt/format.h>

#include "cli/commands.h"

namespace lmlab::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model,
                 "GGUF file, model directory, or Hugging Face id org/name (or org/name/file.gguf), "
                 "downloaded into the Hugging Face cache when missing (default: the bundled SmolLM2-135M-Instruct)");
  app.add_option("--revision", o.revision, "Hub branch, tag or commit of --model (default: main)");
  app.add_option("--dtype", o.dtype, "compute dtype: float32, float16, bfloat16")
      ->check(CLI::IsMember({"", "float32", "float16", "bfloat16"}));
  app.add_option("--activations", o.activations,
                 "quantized matmuls on CPU: float (exact dequantized weights) or q8 (activations "
                 "rounded to int8 blocks, as llama.cpp computes GGUF Q4_0/Q4_1/Q8_0; faster)")
      ->check(CLI::IsMember({"float", "q8"}))
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu, gpu or auto")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  app.add_flag("--verbose", o.verbose, "print load details");
}

void add_sampling_options(CLI::App& app, SamplerConfig& s) {
  app.add_option("--temp", s.temp, "sampling temperature (0: greedy)")->capture_default_str();
  app.add_option("--top-p", s.top_p, "nucleus sampling mass")->capture_default_str();
  app.add_option("--top-k", s.top_k, "keep the k most likely tokens (0: off)")->capture_default_str();
  app.add_option("--min-p", s.min_p, "drop tokens below min_p × the top probability")
      ->capture_default_str();
  app.add_option("--repetition-penalty", s.repetition_penalty, "penalty for recent tokens (1: off)")
      ->capture_default_str();
  app.add_option("--repetition-context-size", s.repetition_context,
                 "tokens the repetition penalty looks back over")
      ->capture_default_str();
  app.add_option("--seed", s.seed, "random seed");
}

Context make_context(const ModelOptions& o, std::optional<uint64_t> seed) {
  ContextOptions c;
  c.device = o.device == "cpu" ? DeviceKind::Cpu : o.device == "gpu" ? DeviceKind::Gpu : DeviceKind::Auto;
  c.seed = seed;
  return Context(c);
}

LoadedModel load(const Context& ctx, const ModelOptions& o) {
  return load_model(ctx, LoadOptions{.model = o.model,
                                     .revision = o.revision,
                                     .dtype = o.dtype,
                                     .activations = o.activations});
}

std::string read_prompt(const std::string& flag_value) {
  if (!flag_value.empty() && flag_value != "-") return flag_value;
  if (flag_value.empty() && isatty(STDIN_FILENO))
    throw std::invalid_argument("[prompt] give --prompt TEXT (or pipe the prompt on stdin)");
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (s.empty()) throw std::invalid_argument("[prompt] the prompt read from stdin is empty");
  return s;
}

}  // namespace lmlab::cli
