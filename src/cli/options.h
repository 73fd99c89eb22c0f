// The option groups commands share: each flag is declared once, here, with
// its help text, and every command that takes a group takes all of it, so a
// flag means the same everywhere. Short flags keep one meaning across
// commands (the table is in docs/cli.md):
//   -m model   -p prompt   -s system prompt   -n tokens to generate
//   -k entries of a ranked list shown         -l layer   -v edit value
// Values are range-checked by the library's validate() functions; a command
// calls them (through check_usage) before it loads a model.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lmlab/context.h"
#include "lmlab/generate.h"
#include "lmlab/loader.h"

namespace lmlab::cli {

// A mistake in the command line itself (exit code 2, JSON type "usage_error").
class UsageError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A failure that carries its own exit code (lmlab launch exits with the
// failing rank's status); reported like a runtime_error.
class ExitError : public std::runtime_error {
 public:
  ExitError(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;
};

// Runs `check` (a library validate call) and reports what it throws as a usage error.
template <typename F>
void check_usage(F&& check) {
  try {
    check();
  } catch (const UsageError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

// -m/--model, --revision, --adapter-path, --dtype, --activations, --device, --verbose.
struct ModelOptions {
  std::string model;
  std::string revision;
  std::string adapter_path;  // lmlab lora or mlx_lm.lora adapters applied at load
  std::string dtype;
  std::string activations = "float";
  std::string device = "auto";
  bool no_fused = false;
  bool verbose = false;
  bool tensor_parallel = true;  // under lmlab launch: each rank its shard (false: the whole model)

  void add(CLI::App& app);          // --model, --revision, --adapter-path and add_compute's
  void add_compute(CLI::App& app);  // --dtype, --activations, --device, --no-fused, --verbose
};

// -p/--prompt (once, or repeatable with `many`), -s/--system (--system-prompt),
// --no-chat-template (--ignore-chat-template). Without -p the prompt is read
// from standard input; `-p -` waits for it, `-p ""` is an empty prompt (refused).
struct PromptOptions {
  std::vector<std::string> prompts;
  std::string system;
  bool no_chat_template = false;

  void add(CLI::App& app, bool many = false, const std::string& help = "");
  // The one prompt: --prompt, or standard input.
  std::string one() const;
  // Every --prompt, or standard input when none was given (or `fallback` when set).
  std::vector<std::string> all(const std::optional<std::string>& fallback = std::nullopt) const;

 private:
  const CLI::Option* flag_ = nullptr;
};

// The sampler's flags (--temp, --top-p, --top-k, --min-p, --repetition-penalty,
// --repetition-context-size, --seed) and the generation's (-n/--max-tokens,
// --stop, --prefill-step-size, --ignore-eos, --max-kv-size).
void add_sampling_options(CLI::App& app, SamplerConfig& s);
void add_generation_options(CLI::App& app, GenerateOptions& g);

// For unsigned options (seeds): CLI11 would wrap "-5" around.
const CLI::Validator& non_negative();

// --json with the command's own description of what it prints.
void add_json_flag(CLI::App& app, bool& json, const std::string& what);

// The run Context for the model options (device, seed).
Context make_context(const ModelOptions& o, std::optional<uint64_t> seed = std::nullopt);
// Loads the model: Hub downloads and a slow load show progress on a terminal,
// --verbose prints where it came from, and a half-precision dtype on the CPU
// gets a note (MLX emulates it there, 60-80x slower than float32).
LoadedModel load(const Context& ctx, const ModelOptions& o);
// A model path, Hub id or "" (the default model) → a local path, downloading
// with progress on a terminal (what `load` and `tokenize` resolve through).
std::string resolve(const std::string& model, const std::string& revision);

// Standard input as a prompt. With `wait` false (no --prompt given), gives up
// when nothing arrives for a few seconds: an open pipe nobody writes to
// should not hang the command. Refuses empty input, input over 16 MiB and
// invalid UTF-8.
std::string read_stdin_prompt(bool wait);
// Refuses text that is not valid UTF-8, naming `what` and the byte.
void check_utf8(const std::string& text, const std::string& what);

}  // namespace lmlab::cli
