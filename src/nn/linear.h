// nn::Linear: one linear layer as the Weights tree holds it, viewed by module
// name. A view holds array handles (no copies), so it is rebuilt from the tree
// on every forward pass and surgery or adapters edited into the tree take effect
// at once. The adapter slot is where LoRA/DoRA meet the base layer: a fast path
// (the fused CPU step, a GPU kernel) runs only when no adapter is attached.
//
// Shapes: x (..., in) → (..., out). Packed weights are (out, in·bits/32) uint32
// with scales/biases (out, in/group_size), MLX's affine layout, or raw GGML
// blocks (out, in/block·block bytes) uint8 (lmlab/ggml.h).
#pragma once

#include <optional>
#include <string>

#include <mlx/array.h>
#include <mlx/utils.h>

#include "lmlab/weights.h"

namespace lmlab::nn {

using mlx::core::array;

struct Adapter {
  array a;                // lora_a (in, r); stacked experts (E, r, in)
  array b;                // lora_b (r, out); stacked experts (E, out, r)
  std::optional<array> m;  // DoRA magnitude (out)
  AdapterSpec spec;
};

// mx::dequantize into `dtype`, exactly: half-precision scales and biases (a
// GGUF's f16 block scales, kept so under float32 compute) are widened first,
// because mx::dequantize computes in the scales' type before converting.
array dequantize_exact(const array& w, const array& scales, const std::optional<array>& biases, int group_size,
                       int bits, const std::string& mode, mlx::core::Dtype dtype, mlx::core::StreamOrDevice s = {});

// The adapter's input: x, with the adapter's dropout when training.
array adapter_input(const Adapter& a, const array& x, bool training);

struct Linear {
  const std::string* name = nullptr;  // module name, e.g. model.layers.0.self_attn.q_proj
  array weight;
  std::optional<array> scales, biases;  // quantized: scales, and biases in affine mode
  std::optional<array> bias;            // the layer's additive bias (out)
  std::optional<QuantSpec> quant;
  std::optional<Adapter> adapter;

  // The module `name` of w (`name.weight`, optional `name.bias`, its quantization
  // and adapter). `name` must outlive the view. Throws std::invalid_argument
  // naming a missing tensor.
  static Linear view(const Weights& w, const std::string& name);

  // x Wᵀ + b, plus the adapter when one is attached (dropout only when training).
  array operator()(const array& x, bool training = false) const;
  // The base layer alone, x Wᵀ + b.
  array base(const array& x) const;
  // W as a dense matrix (out, in) in `dtype` (dequantized when packed).
  array dense_weight(mlx::core::Dtype dtype) const;

  // Kept as raw GGML blocks (QuantSpec mode q6_k...; no scales or biases arrays).
  bool ggml_blocks() const;
  // A mixture-of-experts layer's experts stacked as (E, out, in) (nn/moe.h).
  bool stacked_experts() const { return weight.ndim() == 3; }
  int out_features() const { return weight.shape(-2); }
  int in_features() const;
};

// Shape checks for loading: module `name` is an (out, in) matrix or its packed
// form; `name` is a vector of n. Throw std::invalid_argument naming the tensor,
// its shape and the expected one.
void check_linear(const Weights& w, const std::string& name, int out, int in);
void check_vector(const Weights& w, const std::string& name, int n);

// The rows `ids` of an embedding table viewed as a Linear (dequantized when
// packed), in `dtype`. ids: (B, L) int → (B, L, D). Evaluated ids outside
// the table throw std::out_of_range naming the table and the id.
array embedding_rows(const Linear& table, const array& ids, mlx::core::Dtype dtype);

}  // namespace lmlab::nn
