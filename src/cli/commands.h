// The command table of the `lmlab` binary and the option groups commands share.
// Each command lives in its own file: it parses options, calls the library and
// formats output.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lmlab/context.h"
#include "lmlab/generate.h"
#include "lmlab/loader.h"

namespace lmlab::cli {

// Options every model-using command takes.
struct ModelOptions {
  std::string model;
  std::string revision;
  std::string dtype;
  std::string activations = "float";
  std::string device = "auto";
  bool verbose = false;
};

void add_model_options(CLI::App& app, ModelOptions& o);
void add_sampling_options(CLI::App& app, SamplerConfig& s);
Context make_context(const ModelOptions& o, std::optional<uint64_t> seed = std::nullopt);
// Loads the model, printing nothing; the caller reports load time if it wants.
LoadedModel load(const Context& ctx, const ModelOptions& o);
// --prompt, or all of standard input when the prompt is "-" or absent and stdin is not a TTY.
std::string read_prompt(const std::string& flag_value);

struct Command {
  const char* name;
  const char* summary;
  void (*setup)(CLI::App& app);  // registers options and the callback
};

void setup_generate(CLI::App& app);
void setup_tokenize(CLI::App& app);
void setup_inspect(CLI::App& app);
void setup_weights(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_surgery(CLI::App& app);
void setup_attention(CLI::App& app);
void setup_embed(CLI::App& app);
void setup_chat(CLI::App& app);
void setup_serve(CLI::App& app);
void setup_data(CLI::App& app);
void setup_models(CLI::App& app);
void setup_bench(CLI::App& app);

}  // namespace lmlab::cli
