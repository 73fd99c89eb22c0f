// Fine-tuning: LoRA, DoRA and full fine-tuning of the last layers, at parity
// with mlx_lm.lora (same config keys, adapter files, initialisation, batch
// order, optimizers and schedules), on float and quantized bases. MLX-free, so
// frontends may include it; the trainer reports through a callback and never
// prints.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/context.h"
#include "lmlab/data.h"
#include "lmlab/loader.h"
#include "lmlab/weights.h"

namespace lmlab::train {

// ---------------------------------------------------------------- config

struct LoraParameters {
  int rank = 8;
  float scale = 20.0f;  // a plain multiplier of the low-rank update (mlx-lm's, not alpha / rank)
  float dropout = 0.0f;
  // Modules to adapt: names inside a block ("self_attn.q_proj") or full names
  // ("lm_head"); empty: every projection of the adapted blocks.
  std::vector<std::string> keys{};
};

// mlx-lm's lr_schedule: `name` (cosine_decay, linear_schedule, exponential_decay,
// step_decay) called with `arguments`, after `warmup` steps rising linearly from
// warmup_init to arguments[0]. Empty arguments (lmlab): decay from learning_rate
// to 0 over the updates after the warm-up (cosine_decay, linear_schedule only).
struct ScheduleConfig {
  std::string name{};
  std::vector<double> arguments{};
  int warmup = 0;
  double warmup_init = 0.0;
};

// One run's settings under mlx_lm.lora's names and defaults (CONFIG_DEFAULTS),
// then lmlab's own. Precedence: defaults < YAML config < command-line flags.
struct TrainConfig {
  std::string model{};  // "" = the default model
  std::string data{};
  bool train = true;
  std::string fine_tune_type = "lora";  // lora, dora or full (the last num_layers blocks)
  std::string optimizer = "adam";       // adam, adamw or sgd
  // Per-optimizer settings as mlx.optimizers takes them: adam/adamw {betas, eps,
  // bias_correction, weight_decay (adamw)}, sgd {momentum, weight_decay, dampening, nesterov}.
  nlohmann::json optimizer_config = nlohmann::json::object();
  uint64_t seed = 0;
  int num_layers = 16;  // -1: all
  int batch_size = 4;
  int iters = 1000;
  int val_batches = 25;  // -1: the whole validation set
  double learning_rate = 1e-5;
  int steps_per_report = 10;
  int steps_per_eval = 200;
  std::string resume_adapter_file{};  // start from these adapter weights (mlx-lm's resume)
  std::string adapter_path = "adapters";
  int save_every = 100;
  bool test = false;
  int test_batches = 500;  // -1: the whole test set
  int max_seq_length = 2048;
  bool grad_checkpoint = false;
  int grad_accumulation_steps = 1;
  std::optional<ScheduleConfig> lr_schedule{};
  LoraParameters lora_parameters{};
  bool mask_prompt = false;
  std::string prompt_feature = "prompt", completion_feature = "completion";
  std::string chat_feature = "messages", text_feature = "text";

  // lmlab's own.
  double epochs = 0;        // > 0: iterations for this many passes over the training batches
  bool resume = false;      // continue the run saved in adapter_path exactly (schedule, optimizer, data order)
  bool mlx_lm_compat = false;  // mlx-lm's batches (file order) and loss mask (one pad target); see docs/finetuning.md
  double valid_split = 0.1, test_split = 0.0;  // one-file data: held-out shares
  double memory_limit_gb = 0;  // > 0: refuse a plan that will not fit, saying what to change
  std::string dtype{};           // compute dtype ("" = the model's default)

  // Throws std::invalid_argument "[config] key: what is wrong" for unknown keys,
  // wrong types and out-of-range values. Unset keys keep their defaults.
  static TrainConfig from_json(const nlohmann::json& j);
  // Every key, as adapter_config.json records the run (sorted, mlx-lm-loadable).
  nlohmann::json to_json() const;
  DataOptions data_options() const;
};

// A YAML file (mlx-lm's lora_config.yaml) as JSON: scalars typed as YAML 1.1
// plus mlx-lm's float forms (1e-5). Throws std::invalid_argument naming the
// file and line of a syntax error.
nlohmann::json read_config_file(const std::string& path);

// ---------------------------------------------------------------- plan

// The iteration arithmetic and memory plan of a run, before it starts.
struct MemoryPlan {
  double weights_gb = 0;     // the model as loaded (quantized where it is)
  double trainable_gb = 0;   // trained parameters, their gradients and accumulators
  double optimizer_gb = 0;   // optimizer state
  double activations_gb = 0; // kept for the backward pass at the longest batch
  double logits_gb = 0;      // logits and their gradient at the longest batch; a packed output projection's float copies
  double total_gb = 0;       // predicted peak
  int batch = 0, tokens = 0; // the longest batch's shape (B, L)
  std::vector<std::string> advice{};  // what to change when it does not fit the limit
};

struct TrainPlan {
  int records = 0;            // training records
  int batches_per_epoch = 0;  // full batches (mlx-lm drops the last partial one)
  int dropped_records = 0;    // never trained: the last partial batch
  int iters = 0;
  double epochs = 0;          // iters / batches_per_epoch
  int updates = 0;            // optimizer steps (iters / grad_accumulation_steps)
  int truncated = 0;          // training records longer than max_seq_length
  int64_t trainable_params = 0, total_params = 0;
  MemoryPlan memory{};
  std::vector<std::string> lines() const;  // the arithmetic in words, for the run header
};

// ---------------------------------------------------------------- training

struct TrainEvent {
  enum class Kind { val, report, save, test, done } kind = Kind::report;
  int iteration = 0, iters = 0;
  double train_loss = 0, val_loss = 0, test_loss = 0, test_ppl = 0;
  double learning_rate = 0;
  double it_per_sec = 0, tokens_per_sec = 0;
  int64_t trained_tokens = 0;
  double peak_memory_gb = 0;
  double seconds = 0;      // validation/test time, or training time so far
  double eta_seconds = 0;  // remaining training time at the current speed
  std::string path{};        // the file a save wrote
};
// Called on the training thread after every iteration (progress) and event.
struct TrainCallbacks {
  std::function<void(const TrainEvent&)> on_event;
  std::function<void(int iteration, int iters, double eta_seconds)> on_step;
};

struct TrainResult {
  int iterations = 0;
  double final_train_loss = 0, final_val_loss = 0;
  std::optional<double> test_loss{}, test_ppl{};
  double peak_memory_gb = 0;
  double predicted_peak_gb = 0;
  bool planned_batch_trained = false;  // the plan is for the longest batch: did this run train one that long?
  double seconds = 0;
};

struct GradientReducer;  // src/train/reducer.h: combines gradients across processes

// The reducer over the ranks of `lmlab launch` (ctx.group(): one all-sum of the
// gradients per update); null when ctx runs alone.
std::shared_ptr<GradientReducer> launch_reducer(const Context& ctx);

class Trainer {
 public:
  // Attaches adapters (or unfreezes the last layers), tokenizes the data and
  // plans the run; with cfg.resume, restores the saved state. Holds `m` by reference.
  Trainer(LoadedModel& m, TrainConfig cfg);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const TrainPlan& plan() const;
  const TrainConfig& config() const;
  const Dataset& data() const;
  // Trains (and tests when cfg.test), saving adapters under cfg.adapter_path.
  TrainResult run(const TrainCallbacks& cb = {});
  // Data-parallel training: this process trains on its share of every batch
  // (every r.size()-th example from r.rank()), its gradients weighted by its
  // target tokens and summed across processes by `r` before every optimizer
  // update, so the step is the combined batch's; reported losses and token
  // counts are the combined batch's; rank 0 alone writes files. Throws
  // std::invalid_argument when batch_size does not split over r.size().
  void set_reducer(std::shared_ptr<GradientReducer> r);

  struct State;

 private:
  std::unique_ptr<State> s_;
};

// ---------------------------------------------------------------- fuse

// Merges every adapter attached in `w` into its projection, as mlx-lm's fuse:
// W' = W + scale·Bᵀ Aᵀ (DoRA: each row then scaled to m / ‖row‖), computed in
// float32 and stored in the layer's float dtype (a packed layer: its scales'),
// then quantized back to the layer's own bits and group size; with
// `dequantize`, every quantized layer of the model becomes float instead.
// Returns the fused modules. Throws lmlab::Unsupported, changing nothing, when
// a layer's scheme (raw GGUF blocks) cannot be quantized back.
std::vector<std::string> fuse_adapters(Weights& w, bool dequantize);

// What export_gguf wrote: tensors per GGML type, and the base's tensors the
// model does not hold as weights (llama3's rope_freqs.weight), copied over.
struct GgufExport {
  int q4_1 = 0, q8_0 = 0, f16 = 0, f32 = 0;
  int requantized = 0;  // Q4_1 layers whose float32 scales were rounded to float16
  std::vector<std::string> carried;
};
// Writes `model` (typically fused) as a GGUF file that llama.cpp runs, with the
// metadata of `base_gguf` (the GGUF it was loaded from: architecture,
// tokenizer.*, general.*): tensors under the family's GGUF names with llama.cpp's
// q/k row order, matrices as F16 and vectors as F32, except, unless
// `dequantize`, quantized layers that GGML blocks hold exactly (the same
// values): 4-bit with 32-element groups as Q4_1 (a layer whose scales or
// biases are not float16 values, as fuse leaves a float32 model's adapted
// layers, quantized again with float16 ones: counted in `requantized`),
// 8-bit with 32-element groups, float16 scales and biases of −128 × scale as
// Q8_0. Other quantized layers are dequantized to F16. Throws lmlab::Unsupported, writing nothing, for a tensor
// the family has no GGUF name for.
GgufExport export_gguf(const Model& model, const std::filesystem::path& base_gguf, const std::filesystem::path& path,
                       bool dequantize);

}  // namespace lmlab::train
