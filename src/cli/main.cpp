// lmlab: one binary, one command table. Errors from the library arrive here as
// exceptions and leave as one line on stderr with a non-zero exit code (2 for
// a wrong command line, 1 otherwise); with --json that line is a JSON object.
#include <dlfcn.h>
#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/errors.h"
#include "lmlab/launch.h"

namespace {

const lmlab::cli::Command kCommands[] = {
    {"generate", "generate text from a prompt (mlx_lm.generate)", lmlab::cli::setup_generate},
    {"tokenize", "token ids and pieces of texts or a chat, vocabulary facts", lmlab::cli::setup_tokenize},
    {"inspect", "architecture tree, parameter table, totals, memory footprint, KV cache", lmlab::cli::setup_inspect},
    {"weights", "a tensor by name or glob: values, packed words and fields, scales, stats", lmlab::cli::setup_weights},
    {"predict", "top-k next-token probabilities, temperature, logit lens", lmlab::cli::setup_predict},
    {"surgery", "edit weights (zero, scale, noise, shifts, bit flips), compare, restore, --save", lmlab::cli::setup_surgery},
    {"attention", "attention maps of layers and heads: heatmaps, entropy, SVG/PNG", lmlab::cli::setup_attention},
    {"embed", "embedding vectors, nearest tokens, context-free vs contextual vectors", lmlab::cli::setup_embed},
    {"chat", "an interactive conversation that keeps its KV cache between turns", lmlab::cli::setup_chat},
    {"serve", "an OpenAI-compatible HTTP API with a prompt cache, and the web lab", lmlab::cli::setup_serve},
    {"data", "check a fine-tuning data set: formats, token lengths, truncation, masking, duplicates", lmlab::cli::setup_data},
    {"models", "models in the lmlab and Hugging Face caches (size, format, quantization); rm", lmlab::cli::setup_models},
    {"bench", "prompt and generation tok/s, mean ± std over runs (llama-bench)", lmlab::cli::setup_bench},
    {"compare", "models side by side: size, speed, memory, perplexity, KL and top-1 against the first, greedy texts",
     lmlab::cli::setup_compare},
    {"lora", "fine-tune with LoRA, DoRA or full fine-tuning (mlx_lm.lora's flags and YAML)", lmlab::cli::setup_lora},
    {"fuse", "merge fine-tuned adapters into the base model (re-quantized, or --dequantize)", lmlab::cli::setup_fuse},
    {"launch", "run a command on N ranks for MLX's distributed backends (ring, nccl)", lmlab::cli::setup_launch},
    {"sweep", "an edit at a schedule of strengths, tipping points, the sensitivity atlas (--atlas)", lmlab::cli::setup_sweep},
    {"ppl", "perplexity over a text; KL divergence against a reference model", lmlab::cli::setup_ppl},
    {"convert", "GGUF / HF / MLX model → MLX directory: quantize (uniform, mixed, atlas recipes) or de-quantize", lmlab::cli::setup_convert},
};

// Under `lmlab launch`, rank 0 speaks for the job: the other ranks compute in
// step with it and keep their stdout quiet (errors still reach stderr).
void quiet_unless_rank_zero() {
  if (lmlab::launched_rank() <= 0) return;
  int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) ::dup2(null, STDOUT_FILENO), ::close(null);
}

// OpenBLAS (MLX's float GEMM on Linux) picks its kernels when it loads, from
// the CPU model; a model it does not know (virtual machines report a generic
// "Intel Xeon Processor") gets its Prescott SSE3 kernels. On such a CPU with
// AVX-512 or AVX2 + FMA, lmlab runs itself again once with OPENBLAS_CORETYPE
// naming the kernels the CPU can run (SkylakeX, Haswell): LoRA training on the
// default model went from 0.27 to 0.40 it/s on 2 cores (docs/benchmarks.md).
// A user's own OPENBLAS_CORETYPE is kept, and no other BLAS is touched.
void pick_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  using CoreName = char* (*)();
  auto corename = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!corename || !corename() || ::strcasecmp(corename(), "prescott") != 0) return;
  const char* pick = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    pick = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    pick = "Haswell";
  if (!pick || ::setenv("OPENBLAS_CORETYPE", pick, 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: carry on with Prescott
}

}  // namespace

int main(int argc, char** argv) {
  pick_blas_kernels(argv);
  CLI::App app{"lmlab — a laboratory for large language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lmlab ") + lmlab::version());
  for (const auto& c : kCommands) c.setup(*app.add_subcommand(c.name, c.summary));
  quiet_unless_rank_zero();
  return lmlab::cli::run(app, argc, argv);
}
