// Several models side by side (`lmlab compare`): the same prompts and the same
// evaluation text through each, with what a user weighs between them — size,
// load time, prompt and generation speed, peak memory, perplexity, and the KL
// divergence and top-1 agreement of each against the first (the reference).
// Also the timed run `lmlab bench` repeats. The library prints nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lmlab/loader.h"
#include "lmlab/progress.h"
#include "lmlab/quant.h"

namespace lmlab {
class Model;
}

namespace lmlab::analysis {

// ---------------------------------------------------------------- throughput

// One timed run on random token ids drawn from `rng`, with an empty KV cache:
//   pp: one forward pass over the (batch, prompt) ids   → batch·prompt / seconds
//   tg: `gen` greedy decode steps of (batch, 1) after it → batch·gen / seconds
// Decode steps are pipelined as generation runs them (mlx-lm's generate_step):
// step n+1's graph is built and scheduled before step n's token is waited
// for. host_build_ms and host_schedule_ms are the host's time per decode step
// building the graph and handing it to the device (MLX's eval of the
// primitives, a GPU's kernel launches); when their sum nears the step's wall
// time, decode is bound by the host, not the device.
// A figure is 0 when its length is 0 (gen > 0 with prompt 0 decodes after one
// untimed token).
struct Throughput {
  double pp_tps = 0, tg_tps = 0;
  double host_build_ms = 0, host_schedule_ms = 0;
};
Throughput measure_throughput(const Model& m, int prompt, int gen, int batch, std::mt19937_64& rng);

// Mean and sample standard deviation (0 for one value).
struct MeanStd {
  double mean = 0, std = 0;
};
MeanStd mean_std(const std::vector<double>& v);

// ---------------------------------------------------------------- compare

struct CompareOptions {
  std::vector<std::string> prompts = {"What is the capital of France?",
                                      "Write a haiku about the sea.",
                                      "Explain in one sentence what a neural network is."};
  std::string system{};           // system prompt (with the chat template)
  bool chat_template = true;
  int max_tokens = 48;            // greedy, per prompt
  std::string text_file{};        // evaluation text (quant::tokenize_file); "": the built-in passage
  int64_t text_tokens = 0;        // keep the first N tokens of it (0: all)
  quant::WindowOptions windows{.context = 512, .stride = 256};
  int speed_prompt = 256;         // random-token prefill timed for prompt tok/s
  int speed_gen = 32;             // decode steps timed for generation tok/s
  int repetitions = 3, warmup = 1;
  uint64_t seed = 0;
};
// Throws std::invalid_argument naming the option (before any model loads).
void validate(const CompareOptions& o);

struct ModelFigures {
  std::string name{};  // as given
  std::string path{}, format{}, architecture{}, quantization{};
  int64_t params = 0;      // logical parameters, tied tensors once
  int64_t file_bytes = 0;  // on disk
  double bits_per_weight = 0;
  double load_seconds = 0;
  double peak_memory_gb = 0;  // MLX's allocator peak over load, speed runs and generations
  MeanStd pp_tps{}, tg_tps{};
  quant::Perplexity perplexity{};  // on the model's own tokens of the text
  double bits_per_byte = 0;        // Σ NLL / ln 2 over the UTF-8 bytes of the scored text
  // Against the first model, when both tokenized the text identically with
  // vocabularies of one size; otherwise `kl_missing` says why.
  std::optional<quant::KlComparison> kl{};
  std::string kl_missing{};
  std::vector<std::string> texts{};  // greedy, one per prompt
  std::vector<int> text_lengths{};   // tokens generated per prompt
};

struct Comparison {
  CompareOptions options{};
  std::string text_source{};  // the file, or "built-in text"
  std::vector<ModelFigures> models{};
};

// Loads a model by the name given (the CLI resolves short names, Hub ids and
// the compute options); it may print.
using ModelLoader = std::function<LoadedModel(const std::string& name)>;

// Each model in turn, the first kept loaded as the reference while the others
// are measured one at a time. progress: unit "models". Throws as the loader,
// the tokenizer and the scorers do; std::invalid_argument for fewer than two
// models.
Comparison compare_models(const std::vector<std::string>& models, const ModelLoader& load,
                          const CompareOptions& o, const ProgressCallback& progress = {});

// Markdown: a table of figures (one column per model), then the greedy texts
// side by side, prompt by prompt.
std::string to_markdown(const Comparison& c);
void to_json(nlohmann::json& j, const Comparison& c);

}  // namespace lmlab::analysis
