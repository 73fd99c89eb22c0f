// What a fused decoder step (one node per block: nn::cpu::decoder_step on the
// CPU, nn::cuda::decoder_step on NVIDIA GPUs) takes: the block's arrays and its
// shape, filled by nn::DecoderBlock from its BlockSpec and the Weights tree.
#pragma once

#include <optional>
#include <string>

#include <mlx/array.h>

namespace lmlab::nn {

using mlx::core::array;

// A linear layer in MLX's affine quantization (x @ dequantize(w)ᵀ + bias), or,
// on the CPU step only, kept as raw GGML blocks (ggml_type ≥ 0: w is the
// (out, in / block · block bytes) uint8 blocks of that io::GgmlType, and
// scales, biases, group_size and bits are not read; nn::ggml_matmul's product).
struct QuantizedLinear {
  array w, scales, biases;
  std::optional<array> bias;
  int group_size = 64;
  int bits = 4;
  std::string activations;  // CPU only: "", "q8_0" or "q8_1", as nn::quantized_matmul takes it
  int ggml_type = -1;
};

// Norm weights as stored; the step multiplies by (norm_offset + weight).
struct DecoderLayerArrays {
  array in_norm, post_norm;  // (D): before attention, before the MLP
  QuantizedLinear q, k, v, o, gate, up, down;
  std::optional<array> q_norm, k_norm;  // (Dh), per-head RMSNorm (Qwen3, Gemma 3)
  std::optional<array> attn_out_norm, mlp_out_norm;  // (D), on the attention and MLP outputs (Gemma 2/3)
};

struct DecoderStepShape {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int rope_dims = 0;
  bool rope_traditional = false;
  float rope_mscale = 1.0f;
  float norm_eps = 1e-6f;
  float attn_scale = 1.0f;
  int window = 0;     // sliding attention window (0: none)
  bool gelu = false;  // GeGLU (gelu_tanh) instead of SwiGLU
  float norm_offset = 0.0f;  // every norm multiplies by (offset + weight): 1 in Gemma
};

}  // namespace lmlab::nn
