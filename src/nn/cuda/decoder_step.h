// One decoder block on an NVIDIA GPU (nn::DecoderBlock's fused GPU path), as a
// single MLX primitive whose eval_gpu adds seven precompiled kernel launches
// (more below) to MLX's CUDA graph instead of the ~30 nodes of the composed block:
//   1. RMSNorm + the q, k and v projections (one quantized GEMV launch),
//   2. per-head q/k norms + RoPE + the KV-cache write, in place,
//   3. attention over the cache split over key ranges, 4. their combine,
//   5. the output projection + residual,
//   6. RMSNorm + gate and up projections + SwiGLU/GeGLU, 7. down + residual;
// with sandwich norms (Gemma 3) 5 and 7 write the sublayer's output and a
// norm-and-add launch follows each; q/k/v in different formats take a launch
// per run of one format.
// The kernels (kernels.cu) are compiled for sm_80/sm_90 with PTX for newer
// GPUs and loaded with the driver API: nothing is compiled at run time.
//
// Contract: float16 or bfloat16 activations and cache on a GPU stream, at most
// kMaxRows new rows (B·L: decode steps and short prompts, so a chat's first
// token needs no kernel compiled at run time; longer prompts take the composed
// block and MLX's GEMMs),
// affine 4- or 8-bit projections with group size 32/64/128 (8-bit also 16:
// nn::cuda::gemv_form brings 5-bit and K-quant weights to these), gate and up
// in one format, head_dim up to 256; writes its output and the new cache
// positions in place (like nn::cpu::decoder_step); reads the rest.
// In a build without CUDA, decoder_step_is_native() is false.
//
// decoder_stack runs every layer of a decode step (one new token a row) in one
// primitive: the launches are the same, replayed from a graph lmlab keeps.
#pragma once

#include <mlx/array.h>
#include <mlx/utils.h>

#include <vector>

#include "nn/fused_step.h"

namespace lmlab::nn::cuda {

inline constexpr int kMaxRows = 64;

struct DecoderStepResult {
  array h;  // (B, L, D)
  array keys, values;
};

// Whether the GPU step runs these inputs (see the contract above).
bool decoder_step_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                            const array& keys, const array& values, int offset, mlx::core::StreamOrDevice s = {});

// h: (B, L, D); inv_freq: float32 (rope_dims / 2) angular frequencies; keys,
// values: the layer's cache buffers (B, Hk, capacity, Dh), valid up to offset.
DecoderStepResult decoder_step(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                               const array& inv_freq, float rope_scale, const array& keys, const array& values,
                               int offset, mlx::core::StreamOrDevice s = {});

// One layer of a decode stack: its arrays and shape, its rotation, and its
// cache buffers (B, Hk, capacity, Dh), valid up to the step's offset.
struct StackLayer {
  DecoderLayerArrays w;
  DecoderStepShape shape;
  array inv_freq;
  float rope_scale = 1.0f;
  array keys, values;
};

struct DecoderStackResult {
  array h;  // (B, 1, D)
  std::vector<array> keys, values;
};

// Whether the GPU runs a decode step of these layers as one stack: rows of one
// new token each (B ≤ kMaxStackRows), and every layer a native step.
inline constexpr int kMaxStackRows = 8;
bool decoder_stack_is_native(const array& h, const std::vector<StackLayer>& layers, int offset,
                             mlx::core::StreamOrDevice s = {});

// All layers of a decode step as one primitive whose launches are recorded
// into a CUDA graph of lmlab's own (nn/cuda/step_graph.h) and replayed each
// step with the position updated in place: the same kernels as decoder_step,
// layer after layer, without MLX's per-node cost of building its graph.
DecoderStackResult decoder_stack(const array& h, const std::vector<StackLayer>& layers, int offset,
                                 mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn::cuda
