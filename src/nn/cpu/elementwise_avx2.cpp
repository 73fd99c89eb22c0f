// AVX2 + FMA elementwise kernels (see elementwise_kernels.h). Compiled with
// -mavx2 -mfma and only called after a run-time CPU check.
#include "nn/cpu/elementwise_kernels.h"

#include <algorithm>
#include <cmath>

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

// gelu_tanh(g)·u for eight lanes: 0.5·g·(1 + tanh(z)) is g·sigmoid(2z), with
// z = √(2/π)·(g + 0.044715·g³), and the sigmoid formed as in swiglu8 (no
// cancellation near z = 0, where 1 + tanh(z) is about 1).
inline __m256 geglu8(__m256 g, __m256 u) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
  const __m256 t = _mm256_add_ps(z, z);
  const __m256 e = avx2::exp_nonpositive(_mm256_or_ps(t, sign));  // e^-|2z|
  const __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GE_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

// out[i] = F(gate[i], up[i]) eight lanes at a time, the last partial group padded.
template <__m256 (*F)(__m256, __m256)>
void gated(const float* gate, const float* up, float* out, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, F(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    alignas(32) float g[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8] = {0, 0, 0, 0, 0, 0, 0, 0}, o[8];
    for (long t = 0; i + t < n; ++t) {
      g[t] = gate[i + t];
      u[t] = up[i + t];
    }
    _mm256_store_ps(o, F(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (long t = 0; i + t < n; ++t) out[i + t] = o[t];
  }
}

// The first n < 8 floats of p in the low lanes, fill in the others.
inline __m256 load_partial(const float* p, long n, float fill) {
  alignas(32) float t[8];
  for (long i = 0; i < 8; ++i) t[i] = i < n ? p[i] : fill;
  return _mm256_load_ps(t);
}

inline void store_partial(float* p, long n, __m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (long i = 0; i < n; ++i) p[i] = t[i];
}

void swiglu_grad(const float* gate, const float* up, const float* dout, float* dgate, float* dup, long n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  auto step = [&](__m256 g, __m256 u, __m256 d, __m256& dg, __m256& du) {
    const __m256 e = avx2::exp_nonpositive(_mm256_or_ps(g, sign));  // e^-|g|
    const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
    du = _mm256_mul_ps(d, _mm256_mul_ps(g, sig));
    const __m256 slope = _mm256_mul_ps(sig, _mm256_fmadd_ps(g, _mm256_sub_ps(one, sig), one));
    dg = _mm256_mul_ps(_mm256_mul_ps(d, u), slope);
  };
  long i = 0;
  __m256 dg, du;
  for (; i + 8 <= n; i += 8) {
    step(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), _mm256_loadu_ps(dout + i), dg, du);
    _mm256_storeu_ps(dgate + i, dg);
    _mm256_storeu_ps(dup + i, du);
  }
  if (i < n) {
    step(load_partial(gate + i, n - i, 0.0f), load_partial(up + i, n - i, 0.0f), load_partial(dout + i, n - i, 0.0f),
         dg, du);
    store_partial(dgate + i, n - i, dg);
    store_partial(dup + i, n - i, du);
  }
}

float logsumexp(const float* x, long n) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf, nan = _mm256_setzero_ps();
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    nan = _mm256_or_ps(nan, _mm256_or_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q), _mm256_cmp_ps(b, b, _CMP_UNORD_Q)));
  }
  for (; i < n; i += 8) {
    const __m256 a = i + 8 <= n ? _mm256_loadu_ps(x + i) : load_partial(x + i, n - i, -INFINITY);
    m0 = _mm256_max_ps(m0, a);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  if (_mm256_movemask_ps(nan)) return NAN;
  const float m = avx2::hmax(_mm256_max_ps(m0, m1));
  if (!std::isfinite(m)) return m;  // all −inf, or a +inf logit
  const __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    s0 = _mm256_add_ps(s0, avx2::exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
    s1 = _mm256_add_ps(s1, avx2::exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv)));
  }
  for (; i < n; i += 8) {
    const long k = std::min(8L, n - i);
    const __m256 e = avx2::exp_nonpositive(_mm256_sub_ps(k == 8 ? _mm256_loadu_ps(x + i) : load_partial(x + i, k, m), mv));
    // The filled lanes are e^0 = 1: keep only the k real ones.
    s0 = _mm256_add_ps(s0, k == 8 ? e : _mm256_blendv_ps(_mm256_setzero_ps(), e, _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))));
  }
  return m + std::log(avx2::hsum(_mm256_add_ps(s0, s1)));
}

void scaled_softmax(const float* x, long n, float lse, float g, float* out) {
  const __m256 l = _mm256_set1_ps(lse), gv = _mm256_set1_ps(g);
  long i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(gv, avx2::exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), l))));
  if (i < n)
    store_partial(out + i, n - i, _mm256_mul_ps(gv, avx2::exp_nonpositive(_mm256_sub_ps(load_partial(x + i, n - i, lse), l))));
}

// s·q + b as a multiply and an add, the same floats as the scalar loop and
// mx::dequantize: the empty asm keeps the compiler from fusing the two into an
// FMA (this file is built with -mfma, and GCC contracts intrinsics too).
inline __m256 scale_add(__m256 s, __m256i q, __m256 b) {
  __m256 p = _mm256_mul_ps(s, _mm256_cvtepi32_ps(q));
  __asm__("" : "+x"(p));
  return _mm256_add_ps(p, b);
}

void dequant_group(const uint32_t* w, int n, int bits, float s, float b, float* out) {
  const __m256 sv = _mm256_set1_ps(s), bv = _mm256_set1_ps(b);
  if (bits == 4) {
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), mask = _mm256_set1_epi32(0x0F);
    for (int i = 0; i < n; i += 8) {
      const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w[i / 8])), shifts), mask);
      _mm256_storeu_ps(out + i, scale_add(sv, q, bv));
    }
  } else {
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(w);
    for (int i = 0; i < n; i += 8)
      _mm256_storeu_ps(out + i, scale_add(sv, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + i))), bv));
  }
}

}  // namespace

SwigluKernel avx2_swiglu() { return &gated<swiglu8>; }
SwigluKernel avx2_geglu() { return &gated<geglu8>; }
DequantGroupKernel avx2_dequant_group() { return &dequant_group; }
SwigluGradKernel avx2_swiglu_grad() { return &swiglu_grad; }
LogsumexpKernel avx2_logsumexp() { return &logsumexp; }
ScaledSoftmaxKernel avx2_scaled_softmax() { return &scaled_softmax; }

#else

SwigluKernel avx2_swiglu() { return nullptr; }
SwigluKernel avx2_geglu() { return nullptr; }
DequantGroupKernel avx2_dequant_group() { return nullptr; }
SwigluGradKernel avx2_swiglu_grad() { return nullptr; }
LogsumexpKernel avx2_logsumexp() { return nullptr; }
ScaledSoftmaxKernel avx2_scaled_softmax() { return nullptr; }

#endif

}  // namespace lmlab::nn::cpu
