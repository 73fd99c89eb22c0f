// AVX2 + FMA elementwise kernels (see elementwise_kernels.h). Compiled with
// -mavx2 -mfma and only called after a run-time CPU check.
#include "nn/cpu/elementwise_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define LMLAB_ELEMENTWISE_AVX2 1
#include "nn/cpu/avx2_math.h"
#endif

namespace lmlab::nn::cpu {

#ifdef LMLAB_ELEMENTWISE_AVX2
namespace {

// silu(g)·u for eight lanes. With e = e^-|g| ≤ 1 (never overflows):
// sigmoid(g) = 1/(1+e) for g ≥ 0 and e/(1+e) for g < 0.
inline __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 e = avx2::exp_nonpositive(_mm256_or_ps(g, sign));  // -|g|
  const __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

void swiglu(const float* gate, const float* up, float* out, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    alignas(32) float g[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8] = {0, 0, 0, 0, 0, 0, 0, 0}, o[8];
    for (long t = 0; i + t < n; ++t) {
      g[t] = gate[i + t];
      u[t] = up[i + t];
    }
    _mm256_store_ps(o, swiglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (long t = 0; i + t < n; ++t) out[i + t] = o[t];
  }
}

}  // namespace

SwigluKernel avx2_swiglu() { return &swiglu; }

#else

SwigluKernel avx2_swiglu() { return nullptr; }

#endif

}  // namespace lmlab::nn::cpu
