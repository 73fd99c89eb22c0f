// The command table of the `lmlab` binary. Each command lives in its own file:
// it adds the option groups it takes (options.h) and its own flags, calls the
// library and formats the output (terminal.h).
#pragma once

#include <CLI/CLI.hpp>

#include "cli/options.h"
#include "cli/terminal.h"

namespace lmlab::cli {

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
void setup_compare(CLI::App& app);
void setup_lora(CLI::App& app);
void setup_fuse(CLI::App& app);
void setup_launch(CLI::App& app);
void setup_ppl(CLI::App& app);
void setup_sweep(CLI::App& app);
void setup_convert(CLI::App& app);

}  // namespace lmlab::cli
