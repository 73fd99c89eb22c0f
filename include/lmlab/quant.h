// What a model's stored numbers cost in quality, and changing how they are
// stored: perplexity over a text and the KL divergence of next-token
// distributions against a reference model (`lmlab ppl`, as llama.cpp's
// `perplexity --kl-divergence` reports it), and conversion to MLX model
// directories with quantization recipes (`lmlab convert`). MLX-free.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lmlab/context.h"
#include "lmlab/loader.h"
#include "lmlab/progress.h"

namespace lmlab {
class Model;
}

namespace lmlab::quant {

// ---------------------------------------------------------------- windows

// How a long text meets a model of limited context. Window i feeds tokens
// [i·stride, i·stride + context) and scores only the tokens no earlier window
// scored, each predicted from at least context − stride tokens of its past
// (fewer at the start of the text). With stride < context every token after
// the first is scored once; stride == context gives disjoint windows whose
// first tokens have no past and are not scored, as mlx_lm.perplexity does.
struct WindowOptions {
  int context = 512;
  int stride = 256;
  int batch_tokens = 2048;  // windows run as one batch while rows × context ≤ this (≥ 1 row)
};
// Throws std::invalid_argument for context < 2, stride outside [1, context], batch_tokens < 1.
void validate(const WindowOptions& o);

struct Window {
  int64_t begin = 0, end = 0;  // tokens fed: [begin, end)
  int64_t first_target = 0;    // tokens scored: [first_target, end)
};
// Throws std::invalid_argument when there are fewer than 2 tokens.
std::vector<Window> plan_windows(int64_t tokens, const WindowOptions& o);

// Token ids of an evaluation file: JSONL (".jsonl", records in mlx-lm's
// formats read as fine-tuning data is, lmlab/data.h: "text" with EOS appended,
// "prompt" + "completion" or "messages" through the chat template) or plain
// text (anything else, encoded whole). Records are concatenated; max_tokens > 0
// keeps the first max_tokens. Throws naming the file (and line) for unreadable
// or malformed input, and for a text with fewer than 2 tokens.
std::vector<int> tokenize_file(const LoadedModel& m, const std::filesystem::path& file,
                               int64_t max_tokens = 0);

// ---------------------------------------------------------------- statistics

// A per-token sample: mean with its standard error (sd / sqrt(n − 1), as
// llama.cpp reports it) and a normal 95% interval, and quantiles.
struct Summary {
  int64_t count = 0;
  double mean = 0, se = 0, ci95_low = 0, ci95_high = 0;
  double min = 0, p01 = 0, p05 = 0, p10 = 0, median = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0;
};
Summary summarize(std::vector<double> sample);

// ---------------------------------------------------------------- perplexity

struct Perplexity {
  int context = 0, stride = 0;
  int64_t tokens = 0;  // in the text
  int64_t scored = 0;  // tokens predicted
  int windows = 0;
  Summary nll{};         // negative log-likelihood per scored token, nats
  double ppl = 0;      // exp(nll.mean)
  double ppl_se = 0;   // delta method: ppl × nll.se
};

// Perplexity of `m` over `tokens`. progress: unit "tokens" (scored so far).
Perplexity perplexity(const Model& m, std::span<const int> tokens, const WindowOptions& o,
                      const ProgressCallback& progress = {});

// A model against a reference on the same tokens, per scored token:
// KL(reference ‖ model) of the next-token distributions, whether both put the
// same token first, and Δp = p_model(actual) − p_reference(actual).
struct KlComparison {
  Perplexity model, reference{};
  Summary kl{};                    // nats
  double top1 = 0, top1_se = 0;  // fraction of tokens with the same argmax
  double top1_ci95_low = 0, top1_ci95_high = 0;
  Summary ln_ratio{};              // nll_model − nll_reference: mean = ln(PPL(model)/PPL(ref))
  double ln_ppl_correlation = 0;  // Pearson r of the per-token nll of the two models
  Summary delta_p{};
  double rms_delta_p = 0;
};

// Throws std::invalid_argument when the models' vocabularies differ in size.
KlComparison compare(const Model& m, const Model& reference, std::span<const int> tokens,
                     const WindowOptions& o, const ProgressCallback& progress = {});

// ---------------------------------------------------------------- convert

// How one module (a Linear or Embedding, by prefix: "model.layers.0.mlp.down_proj") is stored.
struct QuantChoice {
  int bits = 4;
  int group_size = 64;
  bool operator==(const QuantChoice&) const = default;
};

// What an atlas measured: each module's KL when it alone was perturbed, and
// the perturbation (re-quantization to bits/group_size, or Gaussian noise of
// `level` × the tensor's RMS on a float model).
struct Sensitivity {
  std::map<std::string, double> kl{};  // module prefix → KL (nats/token)
  std::string mode{};                  // "requantize" or "noise"
  int bits = 0, group_size = 0;
  double level = 0;
};

struct ConvertOptions {
  std::string output{};  // a new directory
  // Output float dtype (dense tensors, scales and biases): float16, bfloat16,
  // float32; "" = the source's torch_dtype, else float16 (as mlx_lm.convert).
  std::string dtype{};
  bool quantize = false;    // (re)quantize every quantizable module from its exact values
  bool dequantize = false;  // write every module dense
  int bits = 4, group_size = 64;
  // uniform; mlx-lm's mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6; atlas
  std::string recipe = "uniform";
  Sensitivity sensitivity{};  // atlas
  double target_bpw = 0;      // atlas: bits per weight to spend (mlx-lm's measure)
  std::vector<int> candidate_bits = {2, 3, 4, 5, 6, 8};  // atlas
  std::string tokenizer_dir{};  // tokenizer files for sources without them (a GGUF)
};
// Throws std::invalid_argument for bad combinations and values (before any work).
void validate(const ConvertOptions& o);

struct ConvertResult {
  std::string output{};
  std::string recipe{};
  std::string dtype{};
  int64_t params = 0;   // logical parameters
  int64_t bytes = 0;    // stored bytes, every tensor
  double bits_per_weight = 0;  // bytes × 8 / params, as mlx_lm.convert prints it
  std::map<std::string, QuantChoice> modules{};  // quantized modules
  std::vector<std::string> dense{};              // modules written dense (group size does not divide)
};

// Converts a model (GGUF file, HF float or MLX directory, Hub id) into an MLX
// directory in the mlx-community layout that mlx_lm loads. Quantization is
// MLX's own (mx::quantize), so the packed words equal mx.quantize's. The
// directory appears whole or not at all. progress: unit "modules".
ConvertResult convert(const Context& ctx, const std::string& source, const ConvertOptions& o,
                      const ProgressCallback& progress = {});

// The recipes, on a model's quantizable modules (prefix → logical rows, cols).
struct ModuleShape {
  int64_t rows = 0, cols = 0;
};
// mlx-lm's mixed_2_6 / 3_4 / 3_6 / 4_6 predicate (mixed_quant_predicate_builder):
// low bits everywhere; high bits for v_proj and down_proj in the first and last
// eighth of the layers and every third layer between, and for lm_head.
std::map<std::string, QuantChoice> mixed_recipe(const std::string& recipe, const std::map<std::string, ModuleShape>& modules,
                                                int num_layers, int group_size);
// The atlas recipe: bits per module minimising Σ sensitivity × the module's
// quantization error (measured, relative to the atlas's own perturbation)
// within the byte budget of target_bpw. `mse` gives a module's mean squared
// quantization error at a format; `fixed_bytes`/`params` count the rest.
struct AtlasBudget {
  double target_bpw = 0;
  int64_t params = 0;           // every parameter of the model
  int64_t fixed_bytes = 0;      // stored bytes of what is not chosen here (norms, dense modules)
  int scale_bytes = 2;          // bytes of one scale or bias in the output dtype
};
std::map<std::string, QuantChoice> atlas_recipe(const std::map<std::string, ModuleShape>& modules,
                                                const std::map<std::string, double>& sensitivity_per_mse,
                                                const std::map<std::string, std::map<int, double>>& mse,
                                                const AtlasBudget& budget, int group_size);
// Stored bytes of a module in a format (packed words, scales, biases).
int64_t quantized_bytes(const ModuleShape& s, const QuantChoice& q, int scale_bytes);

void to_json(nlohmann::json& j, const WindowOptions& o);
void to_json(nlohmann::json& j, const Summary& s);
void to_json(nlohmann::json& j, const Perplexity& p);
void to_json(nlohmann::json& j, const KlComparison& k);
void to_json(nlohmann::json& j, const ConvertResult& r);

}  // namespace lmlab::quant
