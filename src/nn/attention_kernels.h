// Kernels behind nn::decode_attention (internal). The AVX2 set lives in
// attention_avx2.cpp, compiled with -mavx2 -mfma and chosen at run time; the
// portable scalar one in decode_attention.cpp. Like quantized_matmul_kernels.h,
// this header holds no templates or inline functions.
#pragma once

namespace lmlab::nn::detail {

// softmax(scale · q kᵀ + causal mask) v for float32 arrays addressed by element
// strides: q (B, H, L, D), k and v (B, Hk, Lk, D), out (B, H, L, D) row-contiguous.
// Query row i sits at absolute position Lk - L + i and sees keys 0..Lk - L + i.
// Query head h reads key/value head h / (H / Hk).
struct AttnProblem {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  long qs[4], ks[4], vs[4];  // strides of b, head, position, d
  int B, H, Hk, L, Lk, D;
  float scale;
};

// One (b, h) pair, all L query rows; scratch holds Lk floats.
using AttnKernel = void (*)(const AttnProblem& p, int b, int h, float* scratch);

void attend_scalar(const AttnProblem& p, int b, int h, float* scratch);
// All (b, h) pairs of p with the best kernel for it, split over lmlab's CPU compute pool.
void run_attention(const AttnProblem& p);

// The AVX2+FMA kernel (D a multiple of 8 up to 256, unit d strides), or nullptr when not compiled in.
AttnKernel avx2_attend();

}  // namespace lmlab::nn::detail
