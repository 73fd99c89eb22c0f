// One decoder block (nn::DecoderBlock's fused CPU path) for a few new tokens,
// as a single MLX primitive: RMSNorm, the q/k/v projections (with optional
// biases and per-head q/k RMSNorm), RoPE, the KV-cache write, attention over the
// cache (optionally a sliding window), the output projection (optionally
// normed: Gemma's sandwich norms) and residual, RMSNorm, the gated MLP (SwiGLU
// or GeGLU, optionally normed) and residual.
//
// Composed from MLX ops, one such block is about 70 graph nodes on the CPU
// (MLX's RMSNorm and RoPE run as their op-by-op fallbacks there), and at decode
// time building, scheduling and allocating for them cost more than the
// arithmetic (docs/benchmarks.md). The fused step computes the same thing with
// the same kernels (lmlab's quantized matmul, CPU attention and SwiGLU) in
// one node, and writes the new keys and values into the cache buffers in place,
// as llama.cpp writes its cache.
//
// Contract: float32 activations and cache, ≤ kDecoderStepMaxRows new rows, every
// projection an affine-quantized matrix lmlab's kernel takes or raw GGML blocks
// (QuantizedLinear::ggml_type; Q6_K through its AVX2 kernel, the other block
// types decoded row by row as nn::ggml_matmul decodes them); runs on MLX's CPU
// stream thread plus lmlab's compute pool; writes its output and the new cache
// positions in place (see decoder_step()); reads everything else.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <mlx/utils.h>

#include "lmlab/nn.h"
#include "nn/fused_step.h"

namespace lmlab::nn::cpu {

using mlx::core::array;

using nn::DecoderLayerArrays;
using nn::DecoderStepShape;
using nn::QuantizedLinear;

// cos and sin of the rotary angles of positions offset .. offset+L-1, each
// (L, rope.dims/2), computed with the MLX ops of fast::rope's own definition.
std::pair<array, array> rope_tables(const RoPE& rope, int offset, int L);

struct DecoderStepResult {
  array h;               // (B, L, D): the block's output (residual stream)
  array keys, values;    // the cache buffers with the L new positions written at offset
};

// h: (B, L, D) float32. keys, values: the layer's cache buffers (B, Hk, capacity,
// Dh), valid up to offset, capacity ≥ offset + L. rope_cos/sin from rope_tables.
//
// The returned keys/values share the input buffers: positions offset..offset+L-1
// are written in place, so that a step costs no copy of the cache even when the
// previous step still holds it. The buffers must therefore be a cache's own
// (nn::KVCache's): no other array may read their positions from offset on.
DecoderStepResult decoder_step(const array& h, const DecoderLayerArrays& w,
                               const DecoderStepShape& shape, const array& rope_cos,
                               const array& rope_sin, const array& keys, const array& values,
                               int offset, mlx::core::StreamOrDevice s = {});

// Whether decoder_step runs these inputs: a CPU stream, float32 activations,
// norms, biases and cache, B·L ≤ kDecoderStepMaxRows, every projection one
// that nn::quantized_matmul computes with lmlab's kernel or raw GGML blocks of
// a type nn::ggml_matmul takes, with float activations.
bool decoder_step_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                            const array& keys, const array& values, int offset,
                            mlx::core::StreamOrDevice s = {});

inline constexpr int kDecoderStepMaxRows = 8;

// Continuous batching: B sequences of one new token each, at their own
// positions, each with its own cache (an nn::KVCache per sequence), in one
// step, so that the projections read each weight once for all B rows.
struct DecoderRowsResult {
  array h;                          // (B, 1, D)
  std::vector<array> keys, values;  // sequence b's buffers with its new position written at offsets[b]
};

// h: (B, 1, D) float32; keys[b], values[b]: sequence b's cache buffers
// (1, Hk, capacity_b, Dh), valid up to offsets[b], with room for one more;
// rope_cos/sin: (B, rope_dims/2), row b the angles of position offsets[b]. The
// buffers are written in place as decoder_step writes them.
DecoderRowsResult decoder_step_rows(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                                    const array& rope_cos, const array& rope_sin, const std::vector<array>& keys,
                                    const std::vector<array>& values, const std::vector<int>& offsets,
                                    mlx::core::StreamOrDevice s = {});

bool decoder_step_rows_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                                 const std::vector<array>& keys, const std::vector<array>& values,
                                 const std::vector<int>& offsets, mlx::core::StreamOrDevice s = {});

inline constexpr int kDecoderStepMaxBatch = 64;

}  // namespace lmlab::nn::cpu
