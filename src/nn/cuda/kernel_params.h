// Parameter blocks of lmlab's CUDA kernels (kernels.cu), shared by the host
// code that fills them and the kernels that take them by value. Plain data
// only: nvcc and the host compiler must lay them out alike.
#pragma once

#include <stdint.h>

namespace lmlab::nn::cuda {

// One quantized matrix of a QGemv launch: (n, K·bits/32) packed words, scales
// and biases (n, K/group) in T, an optional additive bias (n), and its output.
struct QMat {
  const uint32_t* w;
  const void* scales;
  const void* biases;
  const void* bias;  // nullable
  void* out;
  int n;
};

// out_j = W_j · rmsnorm?(x) for up to three matrices sharing the input (q/k/v),
// or out = res + W · x (mode 1), or out = act(W_gate · x) · (W_up · x) (mode 2).
// x: (M, K) rows with stride x_stride; outputs (M, n) rows with stride out_stride
// (nmat == 1) or n (nmat > 1).
struct QGemvParams {
  const void* x;
  const void* norm;  // (K) RMSNorm weight, nullable: no norm
  const void* res;   // mode 1: (M, n) with stride out_stride
  float eps;
  float norm_offset;  // the norm multiplies by (offset + weight)
  int M, K;
  long x_stride, out_stride;
  int nmat;
  int mode;  // 0 plain, 1 residual, 2 gated pair (mat[0] gate, mat[1] up)
  int act;   // mode 2: 0 silu (SwiGLU), 1 gelu_tanh (GeGLU)
  int rows_per_task;  // modes 0 and 1: weight rows a warp task reads together, 1 or 2 (0: 2)
  int prefetch;  // 1: ask L2 for the first task's weights before waiting for the launch before
  QMat mat[3];
};

// q/k per-head norms, RoPE and the cache write for M = B·L new rows.
// q: (M, H·Dh), k and v: (M, Hk·Dh) → q_out (M, H·Dh); keys/values: (B, Hk,
// capacity, Dh), positions offset..offset+L-1 written.
struct RopeCacheParams {
  const void* q;
  const void* k;
  const void* v;
  void* q_out;
  void* keys;
  void* values;
  const void* q_norm;  // (Dh), nullable
  const void* k_norm;  // (Dh), nullable
  const float* inv_freq;  // (rope_dims / 2) angular frequencies
  float eps, norm_offset, mscale, rope_scale;
  int heads, kv_heads, head_dim, rope_dims, traditional;
  int L, offset, capacity;
  const int* step;  // nullable: the device's StepValues, read instead of offset
};

// A replayed step's values that change from step to step, in device memory
// (written by lmlab_set_step at the start of the step), so the launches that
// read them keep the same parameters: {offset, splits, split_len}.
struct StepValues {
  int* dst;
  int offset, splits, split_len;
};

// softmax(scale q kᵀ) v over the cache for M = B·L rows, split over keys.
struct AttentionParams {
  const void* q;  // (M, H·Dh), rotated
  const void* keys;
  const void* values;
  float* partials;  // (M, H, splits, Dh + 2): max, sum, Σ e^(s - max) v
  float scale;
  int heads, kv_heads, head_dim;
  int L, offset, capacity, window;
  int splits, split_len;
  const int* step;  // nullable: offset, splits and split_len from the device (StepValues)
  // Nullable: the last range of a head to finish merges them into `out`
  // (M, H·Dh) instead of a combine launch; (M, H) zeros, left zero.
  unsigned* counters;
  void* out;
};

// out = res + RMSNorm(y) · (norm_offset + norm) for M rows of D: a sandwich
// norm on a sublayer's output and the residual add (Gemma 2/3).
struct NormAddParams {
  const void* y;
  const void* res;
  const void* norm;
  void* out;
  float eps, norm_offset;
  int D;
};

struct CombineParams {
  const float* partials;
  void* out;  // (M, H·Dh)
  int heads, head_dim, splits;
  const int* step;  // nullable: splits from the device (StepValues)
};

}  // namespace lmlab::nn::cuda
