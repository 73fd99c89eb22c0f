// AVX2 + FMA + F16C kernels for nn::quantized_matmul (see quantized_matmul_kernels.h).
// This file is compiled with -mavx2 -mfma -mf16c and only called after a
// run-time CPU check, so everything here has internal linkage and uses no
// standard-library templates (an AVX2 instantiation could otherwise be merged
// into code that runs on any x86-64).
//
// Affine layout (MLX): w[n, k] = scale[n, g] · q[n, k] + bias[n, g], g = k / group_size,
// q packed little-end first into uint32 words (4-bit: element 2i is the low
// nibble of byte i, 2i+1 the high one; 8-bit: element i is byte i).
//
// gemv (few rows): per group, y += scale · Σ x·q + bias · Σ x. x is stored in
// the order the nibbles come out of the bytes, so no shuffles are needed.
// gemm (many rows): dequantize a 16 × 256 panel of w into floats once and
// multiply it with every row of x by a 3 × 4 register-blocked dot-product kernel.
#include "nn/quantized_matmul_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LMLAB_QMM_AVX2 1
#include <immintrin.h>
#endif

namespace lmlab::nn::detail {

#ifdef LMLAB_QMM_AVX2
namespace {

inline int min_int(int a, int b) { return a < b ? a : b; }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Four horizontal sums at once: {Σa, Σb, Σc, Σd}.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 ab = _mm256_hadd_ps(a, b);
  __m256 cd = _mm256_hadd_ps(c, d);
  __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// count scales/biases starting at element `offset`, as float.
void load_params(ScaleType t, const void* base, long offset, int count, float* dst) {
  int i = 0;
  switch (t) {
    case ScaleType::f32: {
      const float* s = static_cast<const float*>(base) + offset;
      for (; i < count; ++i) dst[i] = s[i];
      break;
    }
    case ScaleType::f16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
      for (; i < count; ++i) dst[i] = _cvtsh_ss(s[i]);
      break;
    }
    case ScaleType::bf16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      for (; i < count; ++i) {
        uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
        float f;
        __builtin_memcpy(&f, &bits, 4);
        dst[i] = f;
      }
      break;
    }
  }
}

// 32 quantized values starting at byte p, as four float vectors.
// 4-bit: {q0,q2,..,q14}, {q1,q3,..,q15}, {q16,q18,..,q30}, {q17,..,q31} (nibble order);
// 8-bit: q0..7, q8..15, q16..23, q24..31.
template <int Bits>
inline void unpack32(const uint8_t* p, __m256* q) {
  if constexpr (Bits == 4) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8));
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(a, mask)));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(a, 4), mask)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(b, mask)));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), mask)));
  } else {
    for (int i = 0; i < 4; ++i)
      q[i] = _mm256_cvtepi32_ps(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * i))));
  }
}

// 32 quantized values starting at byte p, in natural order.
template <int Bits>
inline void unpack32_natural(const uint8_t* p, __m256* q) {
  if constexpr (Bits == 4) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i lo = _mm_and_si128(v, mask);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    __m128i a = _mm_unpacklo_epi8(lo, hi);  // q0..q15
    __m128i b = _mm_unpackhi_epi8(lo, hi);  // q16..q31
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
  } else {
    unpack32<8>(p, q);
  }
}

// Position, within a 32-element chunk, of the x value that meets lane j of unpack32.
template <int Bits>
inline int chunk_source(int j) {
  if constexpr (Bits == 4) {
    const int v = j / 8, lane = j % 8;  // v: 0 even low half, 1 odd low, 2 even high, 3 odd high
    return (v / 2) * 16 + 2 * lane + (v % 2);
  } else {
    return j;
  }
}

template <int Bits>
void prepare_gemv(const QmmProblem& p, float* xp, float* xs) {
  const int K = p.K, gs = p.group_size, G = K / gs;
  for (int m = 0; m < p.M; ++m) {
    const float* x = p.x + static_cast<long>(m) * K;
    float* dst = xp + static_cast<long>(m) * K;
    for (int c = 0; c < K; c += 32)
      for (int j = 0; j < 32; ++j) dst[c + j] = x[c + chunk_source<Bits>(j)];
    for (int g = 0; g < G; ++g) {
      __m256 s = _mm256_setzero_ps();
      for (int k = g * gs; k < (g + 1) * gs; k += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + k));
      xs[static_cast<long>(m) * G + g] = hsum(s);
    }
  }
}

constexpr int kGroupChunk = 64;  // groups whose scales are converted at once

// R output columns n..n+R-1 of row m.
template <int Bits, int GS, int R>
inline void gemv_rows(const QmmProblem& p, const float* xp, const float* xs, int m, int n) {
  const int K = p.K, G = K / GS;
  const long row_bytes = static_cast<long>(K) * Bits / 8;
  const uint8_t* wbase = reinterpret_cast<const uint8_t*>(p.w);
  const float* xm = xp + static_cast<long>(m) * K;
  const float* xsm = xs + static_cast<long>(m) * G;
  alignas(32) float sc[R][kGroupChunk];
  alignas(32) float bi[R][kGroupChunk];
  __m256 acc[R];
  __m256 bacc[R];
  for (int r = 0; r < R; ++r) acc[r] = bacc[r] = _mm256_setzero_ps();
  // Rows are short (288 bytes for K = 576 at 4 bits): fetch the next block's
  // weights while this one is computed (past the end of w is harmless: prefetches never fault).
  if (m == 0) {
    const char* next = reinterpret_cast<const char*>(wbase + (n + R) * row_bytes);
    for (long b = 0; b < R * row_bytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
  }

  for (int g0 = 0; g0 < G; g0 += kGroupChunk) {
    const int gc = min_int(kGroupChunk, G - g0);
    for (int r = 0; r < R; ++r) {
      const long off = static_cast<long>(n + r) * G + g0;
      load_params(p.scale_type, p.scales, off, gc, sc[r]);
      load_params(p.scale_type, p.biases, off, gc, bi[r]);
      for (int g = gc; g < ((gc + 7) & ~7); ++g) sc[r][g] = bi[r][g] = 0.0f;
    }
    // Σ bias · Σx, eight groups at a time (padding groups have bias 0).
    for (int g = 0; g < gc; g += 8) {
      alignas(32) float xsv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int i = 0; i < 8 && g + i < gc; ++i) xsv[i] = xsm[g0 + g + i];
      const __m256 v = _mm256_load_ps(xsv);
      for (int r = 0; r < R; ++r) bacc[r] = _mm256_fmadd_ps(_mm256_load_ps(bi[r] + g), v, bacc[r]);
    }
    for (int g = 0; g < gc; ++g) {
      const int k0 = (g0 + g) * GS;
      __m256 dot[R];
      for (int r = 0; r < R; ++r) dot[r] = _mm256_setzero_ps();
      for (int c = 0; c < GS; c += 32) {
        const float* xc = xm + k0 + c;
        const __m256 x0 = _mm256_loadu_ps(xc), x1 = _mm256_loadu_ps(xc + 8);
        const __m256 x2 = _mm256_loadu_ps(xc + 16), x3 = _mm256_loadu_ps(xc + 24);
        for (int r = 0; r < R; ++r) {
          __m256 q[4];
          unpack32<Bits>(wbase + (n + r) * row_bytes + (k0 + c) * Bits / 8, q);
          dot[r] = _mm256_fmadd_ps(q[0], x0, dot[r]);
          dot[r] = _mm256_fmadd_ps(q[1], x1, dot[r]);
          dot[r] = _mm256_fmadd_ps(q[2], x2, dot[r]);
          dot[r] = _mm256_fmadd_ps(q[3], x3, dot[r]);
        }
      }
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(dot[r], _mm256_broadcast_ss(sc[r] + g), acc[r]);
    }
  }
  float* out = p.out + static_cast<long>(m) * p.N + n;
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) + hsum(bacc[r]);
}

template <int Bits, int GS>
void gemv(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  int n = n0;
  for (; n + 4 <= n1; n += 4)
    for (int m = 0; m < p.M; ++m) gemv_rows<Bits, GS, 4>(p, xp, xs, m, n);
  for (; n < n1; ++n)
    for (int m = 0; m < p.M; ++m) gemv_rows<Bits, GS, 1>(p, xp, xs, m, n);
}

constexpr int kPanelRows = 16;   // rows of w dequantized together
constexpr int kPanelCols = 256;  // K block (a multiple of every group size)

// Rows n..n+rows-1, columns k0..k0+kc-1 of w as floats into panel (kPanelRows × kPanelCols).
template <int Bits>
void dequantize_panel(const QmmProblem& p, int n, int rows, int k0, int kc, float* panel) {
  const int gs = p.group_size, G = p.K / gs;
  const long row_bytes = static_cast<long>(p.K) * Bits / 8;
  const uint8_t* wbase = reinterpret_cast<const uint8_t*>(p.w);
  float sc[kPanelCols / 32], bi[kPanelCols / 32];
  for (int r = 0; r < rows; ++r) {
    const int ng = kc / gs;
    load_params(p.scale_type, p.scales, static_cast<long>(n + r) * G + k0 / gs, ng, sc);
    load_params(p.scale_type, p.biases, static_cast<long>(n + r) * G + k0 / gs, ng, bi);
    float* dst = panel + r * kPanelCols;
    for (int c = 0; c < kc; c += 32) {
      const __m256 s = _mm256_set1_ps(sc[c / gs]), b = _mm256_set1_ps(bi[c / gs]);
      __m256 q[4];
      unpack32_natural<Bits>(wbase + (n + r) * row_bytes + static_cast<long>(k0 + c) * Bits / 8, q);
      for (int i = 0; i < 4; ++i) _mm256_store_ps(dst + c + 8 * i, _mm256_fmadd_ps(q[i], s, b));
    }
  }
  for (int r = rows; r < kPanelRows; ++r)
    for (int c = 0; c < kc; ++c) panel[r * kPanelCols + c] = 0.0f;
}

// res[i][j] = x[i, 0:kc] · w[j, 0:kc] for R rows of x and 4 panel rows.
template <int R>
inline void dot_tile(const float* x, long ldx, const float* w, int kc, __m128* res) {
  __m256 acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k += 8) {
    __m256 xv[R];
    for (int i = 0; i < R; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + k);
    for (int j = 0; j < 4; ++j) {
      const __m256 wv = _mm256_load_ps(w + j * kPanelCols + k);
      for (int i = 0; i < R; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i) res[i] = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
}

template <int R>
inline void gemm_tile(const QmmProblem& p, const float* panel, int m, int n, int rows, int k0,
                      int kc) {
  const float* x = p.x + static_cast<long>(m) * p.K + k0;
  for (int j = 0; j < rows; j += 4) {
    __m128 res[R];
    dot_tile<R>(x, p.K, panel + j * kPanelCols, kc, res);
    for (int i = 0; i < R; ++i) {
      float* out = p.out + static_cast<long>(m + i) * p.N + n + j;
      alignas(16) float v[4];
      _mm_store_ps(v, res[i]);
      const int cols = min_int(4, rows - j);
      if (k0 == 0) {
        for (int c = 0; c < cols; ++c) out[c] = v[c];
      } else {
        for (int c = 0; c < cols; ++c) out[c] += v[c];
      }
    }
  }
}

template <int Bits>
void gemm(const QmmProblem& p, int n0, int n1) {
  alignas(32) float panel[kPanelRows * kPanelCols];
  for (int n = n0; n < n1; n += kPanelRows) {
    const int rows = min_int(kPanelRows, n1 - n);
    for (int k0 = 0; k0 < p.K; k0 += kPanelCols) {
      const int kc = min_int(kPanelCols, p.K - k0);
      dequantize_panel<Bits>(p, n, rows, k0, kc, panel);
      int m = 0;
      for (; m + 3 <= p.M; m += 3) gemm_tile<3>(p, panel, m, n, rows, k0, kc);
      if (p.M - m == 2) gemm_tile<2>(p, panel, m, n, rows, k0, kc);
      if (p.M - m == 1) gemm_tile<1>(p, panel, m, n, rows, k0, kc);
    }
  }
}

void prepare_dispatch(const QmmProblem& p, float* xp, float* xs) {
  if (p.bits == 4) prepare_gemv<4>(p, xp, xs);
  else prepare_gemv<8>(p, xp, xs);
}

template <int Bits>
void gemv_bits(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  switch (p.group_size) {
    case 32: gemv<Bits, 32>(p, xp, xs, n0, n1); break;
    case 64: gemv<Bits, 64>(p, xp, xs, n0, n1); break;
    default: gemv<Bits, 128>(p, xp, xs, n0, n1); break;
  }
}

void gemv_dispatch(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  if (p.bits == 4) gemv_bits<4>(p, xp, xs, n0, n1);
  else gemv_bits<8>(p, xp, xs, n0, n1);
}

void gemm_dispatch(const QmmProblem& p, int n0, int n1) {
  if (p.bits == 4) gemm<4>(p, n0, n1);
  else gemm<8>(p, n0, n1);
}

const QmmKernels kAvx2Kernels{prepare_dispatch, gemv_dispatch, gemm_dispatch, kPanelRows};

}  // namespace

const QmmKernels* avx2_qmm_kernels() { return &kAvx2Kernels; }

#else

const QmmKernels* avx2_qmm_kernels() { return nullptr; }

#endif

}  // namespace lmlab::nn::detail
