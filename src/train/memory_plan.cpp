// The memory plan's arithmetic. Counts are float elements per token (or per
// token and head for attention), from what each op of the composed block keeps
// for its gradient; see docs/finetuning.md for the check against measured peaks.
#include "train/memory_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "nn/linear.h"

namespace lmlab::train {

namespace {

constexpr double kGB = 1e9;

// Elements one block keeps per token for the backward pass.
double kept_per_token(const MemoryInputs& in) {
  const double D = in.hidden, I = in.intermediate;
  const double q = double(in.heads) * in.head_dim, kv = double(in.kv_heads) * in.head_dim;
  // Two RMSNorms (input, normalised output), q/k/v after RoPE, the attention
  // output (o_proj's input), the MLP's gate, up and activation (down's input),
  // and the residual stream between the halves.
  double kept = 4 * D + q + 2 * kv + q + 3 * I + D + (in.lora_rank > 0 ? 7.0 * in.lora_rank : 0.0);
  // Off lmlab's CPU float32 kernels (a GPU, half precision) the block is MLX's
  // composition: its attention keeps the softmax probabilities (MLX's fused
  // attention falls back to the composed one under autodiff; heads × tokens per
  // token), and the gated activation keeps sigmoid(gate) and silu(gate).
  if (in.attention_scores) kept += double(in.heads) * in.tokens + 2 * I;
  return kept;
}

// What the backward pass of one block holds at once on top (recomputed
// attention scores and probabilities where the attention materialises them,
// the block's gradients in flight).
double transient_per_block(const MemoryInputs& in) {
  const double B = in.batch, L = in.tokens;
  const double scores = in.attention_scores ? B * in.heads * L * L * 3 : 0.0;
  return scores + B * L * (2.0 * in.hidden + 2.0 * in.intermediate);
}

}  // namespace

MemoryPlan plan_memory(const MemoryInputs& in, double limit_gb) {
  MemoryPlan p;
  p.batch = in.batch;
  p.tokens = in.tokens;
  const double tokens = double(in.batch) * in.tokens, bytes = in.act_bytes;
  const int kept_layers = std::max(0, in.layers - in.trained_from);
  p.weights_gb = in.weight_bytes / kGB;
  p.trainable_gb = in.trainable_elements * 4.0 * (2 + (in.accumulate ? 1 : 0)) / kGB;
  p.optimizer_gb = in.trainable_elements * 4.0 * in.optimizer_slots / kGB;
  const double per_layer = in.checkpoint ? in.hidden : kept_per_token(in);
  double act = tokens * per_layer * kept_layers + transient_per_block(in);
  if (in.checkpoint) act += tokens * kept_per_token(in);  // the block being recomputed
  p.activations_gb = act * bytes / kGB;
  // The logits and their gradient, only at the positions the loss counts
  // (train::batch_loss); and for a packed output projection, about two float32
  // copies of it that the logits' backward holds: measured on the default
  // model's 4-bit tied embedding, a fixed 0.229 GB at any batch and any number
  // of trained blocks, and nothing on its float copy (tests/train/memory_plan_test.cpp).
  const double rows = in.logit_rows > 0 ? std::min<double>(in.logit_rows, tokens) : tokens;
  const double head = in.quantized_head ? 2.0 * in.vocab * in.hidden * 4 : 0.0;
  p.logits_gb = (rows * in.vocab * 4.0 * 2 + head) / kGB;
  p.total_gb = p.weights_gb + p.trainable_gb + p.optimizer_gb + p.activations_gb + p.logits_gb;
  if (limit_gb > 0 && p.total_gb > limit_gb) {
    const double over = p.total_gb - limit_gb;
    if (!in.checkpoint && p.activations_gb > 0.2 * p.total_gb)
      p.advice.push_back(fmt::format("--grad-checkpoint keeps one block's activations instead of {} ({:.2f} GB less)",
                                     kept_layers, p.activations_gb * (1 - 1.0 / std::max(1, kept_layers))));
    const double per_seq = (p.activations_gb + p.logits_gb) / std::max(1, in.batch);
    if (in.batch > 1) {
      int b = in.batch;
      while (b > 1 && (b - 1) * per_seq + (p.total_gb - p.activations_gb - p.logits_gb) > limit_gb) --b;
      p.advice.push_back(fmt::format("--batch-size {} (with --grad-accumulation-steps {} for the same update)", b,
                                     (in.batch + b - 1) / b));
    }
    p.advice.push_back(fmt::format("--max-seq-length below {} (the longest batch is {} tokens; activations grow with it)",
                                   in.tokens, in.tokens));
    if (in.trained_from > 0 || kept_layers > 4)
      p.advice.push_back(fmt::format("--num-layers {} (fewer blocks keep activations)", std::max(1, kept_layers / 2)));
    (void)over;
  }
  return p;
}

int64_t parameter_count(const Model& m) {
  int64_t n = 0;
  const Weights& w = m.weights();
  for (const auto& [name, a] : w.items()) {
    const auto dot = name.rfind('.');
    const std::string module = name.substr(0, dot), leaf = name.substr(dot + 1);
    if (leaf == "scales" || leaf == "biases") {
      if (w.quant(module)) continue;
    }
    if (leaf == "lora_a" || leaf == "lora_b" || (leaf == "m" && w.adapter(module))) {
      n += a.size();
      continue;
    }
    const QuantSpec* q = w.quant(module);
    n += q && leaf == "weight" ? static_cast<int64_t>(a.size()) * 32 / q->bits : static_cast<int64_t>(a.size());
  }
  return n;
}

}  // namespace lmlab::train
