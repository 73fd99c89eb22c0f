// AVX2 + FMA + F16C kernels for nn::quantized_matmul (see quantized_matmul_kernels.h).
// This file is compiled with -mavx2 -mfma -mf16c and only called after a
// run-time CPU check, so everything here has internal linkage and uses no
// standard-library templates (an AVX2 instantiation could otherwise be merged
// into code that runs on any x86-64).
//
// Affine layout (MLX): w[n, k] = scale[n, g] · q[n, k] + bias[n, g], g = k / group_size,
// q packed little-end first into uint32 words (4-bit: element 2i is the low
// nibble of byte i, 2i+1 the high one; 8-bit: element i is byte i; 5-bit: one
// little-endian bit stream, eight elements in five bytes).
//
// gemv (few rows): per group, y += scale · Σ x·q + bias · Σ x. x is stored in
// the order the nibbles come out of the bytes, so no shuffles are needed.
// gemm (many rows): dequantize a 16 × 256 panel of w into floats once and
// multiply it with every row of x by a 3 × 4 register-blocked dot-product kernel.
//
// quantized_matmul_vnni.cpp compiles this file a second time with AVX-512 VNNI
// (LMLAB_QMM_VNNI): the int8 block dot products there are one vpdpbusd each.
#include "nn/cpu/quantized_matmul_kernels.h"

#include <cmath>

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LMLAB_QMM_AVX2 1
#include <immintrin.h>
#endif
#if defined(LMLAB_QMM_VNNI) && !(defined(LMLAB_QMM_AVX2) && defined(__AVX512VNNI__) && defined(__AVX512VL__))
#undef LMLAB_QMM_VNNI  // not compiled with VNNI: the set below is then absent
#define LMLAB_QMM_NO_VNNI 1
#undef LMLAB_QMM_AVX2
#endif

namespace lmlab::nn::cpu {

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

// Scales and biases read in place by the gemv kernels (no staging copies).
template <ScaleType T>
inline float param_at(const void* base, long i) {
  if constexpr (T == ScaleType::f32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (T == ScaleType::f16) {
    return _cvtsh_ss(static_cast<const uint16_t*>(base)[i]);
  } else {
    uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
}

// Eight consecutive parameters from element i.
template <ScaleType T>
inline __m256 params8_at(const void* base, long i) {
  if constexpr (T == ScaleType::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    if constexpr (T == ScaleType::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Σ_g bias[g]·xs[g] over G groups for R rows (bias rows start at row_off[r]).
template <ScaleType T, int R>
inline void bias_terms(const void* biases, const long* row_off, const float* xs, int G, float* out) {
  __m256 acc[R];
  float tail[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    tail[r] = 0.0f;
  }
  int g = 0;
  for (; g + 8 <= G; g += 8) {
    const __m256 v = _mm256_loadu_ps(xs + g);
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(params8_at<T>(biases, row_off[r] + g), v, acc[r]);
  }
  for (; g < G; ++g)
    for (int r = 0; r < R; ++r) tail[r] = std::fma(param_at<T>(biases, row_off[r] + g), xs[g], tail[r]);
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) + tail[r];
}

// A symmetric layer's bias over its scale: b_g = −2^(bits−1)·s_g in every group.
inline float symmetric_bias_factor(int bits) { return -static_cast<float>(1 << (bits - 1)); }

// Σ_g b_g·xs_g for R rows: from the biases, or for symmetric weights from the
// scales times that power of two, which gives the same bits without reading the biases.
template <ScaleType T, int R>
inline void bias_sums(const QmmProblem& p, const long* row_off, const float* xs, int G, float* out) {
  if (!p.symmetric) return bias_terms<T, R>(p.biases, row_off, xs, G, out);
  bias_terms<T, R>(p.scales, row_off, xs, G, out);
  for (int r = 0; r < R; ++r) out[r] *= symmetric_bias_factor(p.bits);
}

// Sixteen 5-bit fields from ten bytes of a 16-byte register, in natural
// order: each 32-bit lane takes the two bytes holding its field (byte 5j/8 on,
// plus `at`, where the ten bytes start) and shifts it down by 5j mod 8. The
// last field never straddles a byte, so its second byte is not read (-1): with
// at = 6 the register may end with the group's last byte.
template <int At>
inline void unpack16_5bit(__m128i src, __m256* q) {
  static_assert(At == 0 || At == 6);
  constexpr char a = At;
  const __m256i bytes = _mm256_broadcastsi128_si256(src);
  const __m256i lo = _mm256_setr_epi8(a, a + 1, -1, -1, a, a + 1, -1, -1, a + 1, a + 2, -1, -1, a + 1, a + 2, -1, -1,  //
                                      a + 2, a + 3, -1, -1, a + 3, a + 4, -1, -1, a + 3, a + 4, -1, -1, a + 4, a + 5,
                                      -1, -1);
  const __m256i hi = _mm256_setr_epi8(a + 5, a + 6, -1, -1, a + 5, a + 6, -1, -1, a + 6, a + 7, -1, -1, a + 6, a + 7,
                                      -1, -1,  //
                                      a + 7, a + 8, -1, -1, a + 8, a + 9, -1, -1, a + 8, a + 9, -1, -1, a + 9, -1, -1,
                                      -1);
  const __m256i shifts = _mm256_setr_epi32(0, 5, 2, 7, 4, 1, 6, 3);
  const __m256i mask = _mm256_set1_epi32(0x1F);
  q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(bytes, lo), shifts), mask));
  q[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(bytes, hi), shifts), mask));
}

// 32 quantized values starting at byte p, as four float vectors.
// 4-bit: {q0,q2,..,q14}, {q1,q3,..,q15}, {q16,q18,..,q30}, {q17,..,q31} (nibble order);
// 8-bit and 5-bit: q0..7, q8..15, q16..23, q24..31.
template <int Bits>
inline void unpack32(const uint8_t* p, __m256* q) {
  if constexpr (Bits == 5) {
    // 20 bytes, read as bytes 0-15 and 4-19 so that no load reaches past the
    // group (a copy into a stack buffer instead stalled on store forwarding).
    unpack16_5bit<0>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), q);
    unpack16_5bit<6>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4)), q + 2);
  } else if constexpr (Bits == 4) {
    // Widen each byte to 32 bits first (the load folds into vpmovzxbd), then
    // split it: low nibble by a mask, high nibble by a shift alone.
    const __m256i mask = _mm256_set1_epi32(0x0F);
    const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
    q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(a, mask));
    q[1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(a, 4));
    q[2] = _mm256_cvtepi32_ps(_mm256_and_si256(b, mask));
    q[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
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
    unpack32<Bits>(p, q);
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

// R output columns n..n+R-1 of row m.
template <int Bits, int GS, int R, ScaleType T>
inline void gemv_rows(const QmmProblem& p, const float* xp, const float* xs, int m, int n) {
  const int K = p.K, G = K / GS;
  const long row_bytes = static_cast<long>(K) * Bits / 8;
  const uint8_t* wbase = reinterpret_cast<const uint8_t*>(p.w);
  const float* xm = xp + static_cast<long>(m) * K;
  long row_off[R];
  for (int r = 0; r < R; ++r) row_off[r] = static_cast<long>(n + r) * G;
  // Rows are short (288 bytes for K = 576 at 4 bits): fetch the next block's
  // weights while this one is computed (past the end of w is harmless: prefetches never fault).
  if (m == 0) {
    const char* next = reinterpret_cast<const char*>(wbase + (n + R) * row_bytes);
    for (long b = 0; b < R * row_bytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
  }
  float bias[R];
  bias_sums<T, R>(p, row_off, xs + static_cast<long>(m) * G, G, bias);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int g = 0; g < G; ++g) {
    const int k0 = g * GS;
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
    for (int r = 0; r < R; ++r)
      acc[r] = _mm256_fmadd_ps(dot[r], _mm256_set1_ps(param_at<T>(p.scales, row_off[r] + g)), acc[r]);
  }
  float* out = p.out + static_cast<long>(m) * p.N + n;
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) + bias[r];
}

template <int Bits, int GS, ScaleType T>
void gemv(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  int n = n0;
  for (; n + 4 <= n1; n += 4)
    for (int m = 0; m < p.M; ++m) gemv_rows<Bits, GS, 4, T>(p, xp, xs, m, n);
  for (; n < n1; ++n)
    for (int m = 0; m < p.M; ++m) gemv_rows<Bits, GS, 1, T>(p, xp, xs, m, n);
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
    if (p.symmetric)
      for (int i = 0; i < ng; ++i) bi[i] = symmetric_bias_factor(p.bits) * sc[i];
    else
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

// ---------------------------------------------------------------------------
// Int8 activations (ActQuant q8_0 / q8_1): integer dot products per block of
// 32, y += (scale·d)·Σ q_w·q + bias·s.
//
// xq order. 8- and 5-bit weights: natural. 4-bit weights, per pair of blocks (b, b+1):
// the 16 even elements of b, the 16 even of b+1, the odd of b, the odd of b+1,
// which is how the low and high nibbles of the pair's 32 weight bytes come out;
// a last unpaired block: its even elements, then its odd ones.
// 8-bit fields are used signed (q - 128, with 128·scale added to the bias) so
// that maddubs cannot saturate.

// Rounds 32 x values to int8 in natural order, exactly as quantize_block_q8
// (quantized_matmul.cpp) does; returns Σq.
inline int quantize_block(const float* x, int8_t* q, float& d_rounded, float& d_exact) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
  }
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float max_abs = _mm_cvtss_f32(m4);
  d_exact = max_abs / 127.0f;
  d_rounded = _cvtsh_ss(_cvtss_sh(d_exact, _MM_FROUND_TO_NEAREST_INT));
  const __m256 id = _mm256_set1_ps(max_abs != 0.0f ? 127.0f / max_abs : 0.0f);
  __m256i iv[4];
  for (int i = 0; i < 4; ++i)
    iv[i] = _mm256_cvtps_epi32(
        _mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3])));
  int sum = 0;
  for (int i = 0; i < 8; ++i) sum += lanes[i];
  // Narrow to bytes; the packs interleave 128-bit lanes, the permute restores order.
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return sum;
}

template <int Bits>
void prepare_q8(const QmmProblem& p, int8_t* xq, float* xd, float* xs) {
  const int K = p.K, B = K / 32, G = K / p.group_size, per_group = p.group_size / 32;
  int8_t tmp[64];
  for (int m = 0; m < p.M; ++m) {
    int8_t* row = xq + static_cast<long>(m) * K;
    float* dm = xd + static_cast<long>(m) * B;
    float* sm = xs + static_cast<long>(m) * G;
    for (int g = 0; g < G; ++g) sm[g] = 0.0f;
    for (int b = 0; b < B; ++b) {
      float d_exact;
      const int sum = quantize_block(p.x + static_cast<long>(m) * K + 32 * b, row + 32 * b, dm[b], d_exact);
      sm[b / per_group] += q8_block_sum_term(p.act, dm[b], d_exact, sum);
    }
    if constexpr (Bits == 4) {
      for (int b = 0; b < B; b += 2) {
        const int nb = min_int(2, B - b);
        int8_t* src = row + 32 * b;
        for (int i = 0; i < 32 * nb; ++i) tmp[i] = src[i];
        for (int j = 0; j < nb; ++j)
          for (int i = 0; i < 16; ++i) {
            src[16 * j + i] = tmp[32 * j + 2 * i];
            src[16 * nb + 16 * j + i] = tmp[32 * j + 2 * i + 1];
          }
      }
    }
  }
}

// One 8-bit block's fields as signed bytes (q − 128).
inline __m256i fields_8bit(const uint8_t* w) {
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)),
                          _mm256_set1_epi8(static_cast<char>(0x80)));
}

// Sixteen 5-bit fields from ten bytes of a 16-byte register (from byte `At`), as
// 16-bit lanes in natural order: each lane takes the two bytes holding its
// field, and a multiply by 2^(11 − shift) and a shift right by 11 keep the
// field's five bits (the last field never straddles a byte: -1).
template <int At>
inline __m256i fields16_5bit(__m128i src) {
  static_assert(At == 0 || At == 6);
  constexpr char a = At;
  const __m256i bytes = _mm256_broadcastsi128_si256(src);
  const __m256i idx = _mm256_setr_epi8(a, a + 1, a, a + 1, a + 1, a + 2, a + 1, a + 2, a + 2, a + 3, a + 3, a + 4,
                                       a + 3, a + 4, a + 4, a + 5,  //
                                       a + 5, a + 6, a + 5, a + 6, a + 6, a + 7, a + 6, a + 7, a + 7, a + 8, a + 8,
                                       a + 9, a + 8, a + 9, a + 9, -1);
  const __m256i mul = _mm256_setr_epi16(2048, 64, 512, 16, 128, 1024, 32, 256, 2048, 64, 512, 16, 128, 1024, 32, 256);
  return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(bytes, idx), mul), 11);
}

// One 5-bit block (20 bytes at w, read as bytes 0-15 and 4-19): its fields as
// unsigned bytes in natural order (≤ 31, so maddubs cannot saturate).
inline __m256i fields_5bit(const uint8_t* w) {
  const __m256i lo = fields16_5bit<0>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  const __m256i hi = fields16_5bit<6>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 4)));
  // packus interleaves the 128-bit lanes (fields 0-7, 16-23, 8-15, 24-31); the permute restores order.
  return _mm256_permute4x64_epi64(_mm256_packus_epi16(lo, hi), 0xD8);
}

// Σ q·a over four consecutive bytes of q (unsigned) and a (signed), added to
// the int32 lanes of acc. The products never saturate vpmaddubsw's int16 pairs
// here (|q·a| ≤ 128·127, two a pair), so both forms give the same sums.
inline __m256i dot4_add(__m256i acc, __m256i q, __m256i a) {
#ifdef LMLAB_QMM_VNNI
  return _mm256_dpbusd_epi32(acc, q, a);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1)));
#endif
}

// Σ q·a over one block of unsigned fields q, as 8 int32 partial sums in float.
inline __m256 dot_unsigned(__m256i q, __m256i a) { return _mm256_cvtepi32_ps(dot4_add(_mm256_setzero_si256(), q, a)); }

// The same for signed fields q (8-bit weights used as q − 128).
inline __m256 dot_signed(__m256i q, __m256i a) {
  return dot_unsigned(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q));
}

// A pair of 4-bit blocks (32 bytes at w): lanes 0-3 hold block b's partial sums, 4-7 block b+1's.
inline __m256 dot_pair_4bit(const uint8_t* w, __m256i a_even, __m256i a_odd) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
#ifdef LMLAB_QMM_VNNI
  const __m256i lo = dot4_add(_mm256_setzero_si256(), _mm256_and_si256(u, low4), a_even);
  return _mm256_cvtepi32_ps(dot4_add(lo, _mm256_and_si256(_mm256_srli_epi16(u, 4), low4), a_odd));
#else
  const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(u, low4), a_even),
                                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(u, 4), low4), a_odd));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
#endif
}

// One unpaired 4-bit block (16 bytes at w).
inline __m256 dot_single_4bit(const uint8_t* w, __m256i a) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  const __m256i uw = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(u, 4), low4), _mm_and_si128(u, low4));
  return dot_unsigned(uw, a);
}

// The bias terms of R weight rows for one row of x: Σ_g b_g·s_g (s_g: the
// group's sum term, xs), and for 8-bit weights, used as signed fields q − 128,
// the 128·scale·Σx they need back. For symmetric 8-bit weights the two cancel
// exactly (the signed fields are the weights themselves): 0.
template <int Bits, ScaleType T, int R>
inline void q8_bias(const QmmProblem& p, const long* row_off, const float* xs, int G, float* bias) {
  if (Bits == 8 && p.symmetric) {
    for (int r = 0; r < R; ++r) bias[r] = 0.0f;
    return;
  }
  bias_sums<T, R>(p, row_off, xs, G, bias);
  if constexpr (Bits == 8) {
    float extra[R];
    bias_terms<T, R>(p.scales, row_off, xs, G, extra);
    for (int r = 0; r < R; ++r) bias[r] += 128.0f * extra[r];
  }
}

// Rows m0..m0+MT−1 of x against weight rows n, n+1 (8- and 5-bit, float32
// parameters): each weight block's fields are formed once for the MT rows of x
// (the 5-bit fields cost more to form than to multiply). The same sums in the
// same order as q8_tile's, row by row.
template <int Bits, int GS, int MT>
void q8_rows(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n, int m0,
             int param_row0) {
  constexpr int R = 2, kBlocksPerGroup = GS / 32;
  const int K = p.K, G = K / GS, B = K / 32;
  const long row_bytes = static_cast<long>(K) * Bits / 8;
  const uint8_t* w = reinterpret_cast<const uint8_t*>(p.w) + n * row_bytes;
  const float* scales = static_cast<const float*>(p.scales);
  long row_off[R];
  for (int r = 0; r < R; ++r) row_off[r] = static_cast<long>(n - param_row0 + r) * G;
  __m256 acc[MT][R];
  for (int i = 0; i < MT; ++i)
    for (int r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
  for (int b = 0; b < B; ++b) {
    const int g = b / kBlocksPerGroup;
    __m256i q[R];
    for (int r = 0; r < R; ++r)
      q[r] = Bits == 8 ? fields_8bit(w + r * row_bytes + 32 * b) : fields_5bit(w + r * row_bytes + 20 * b);
    for (int i = 0; i < MT; ++i) {
      const long m = m0 + i;
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + 32 * b));
      const float d = xd[m * B + b];
      for (int r = 0; r < R; ++r) {
        const __m256 f = Bits == 8 ? dot_signed(q[r], a) : dot_unsigned(q[r], a);
        acc[i][r] = _mm256_fmadd_ps(f, _mm256_set1_ps(scales[row_off[r] + g] * d), acc[i][r]);
      }
    }
  }
  for (int i = 0; i < MT; ++i) {
    const long m = m0 + i;
    float bias[R];
    q8_bias<Bits, ScaleType::f32, R>(p, row_off, xs + m * G, G, bias);
    float* out = p.out + m * p.N + n;
    for (int r = 0; r < R; ++r) out[r] = hsum(acc[i][r]) + bias[r];
  }
}

// Output columns n..n+R-1 for every row of x.
template <int Bits, int GS, int R, ScaleType T>
void q8_tile(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n, int param_row0 = 0) {
  constexpr int kBlocksPerGroup = GS / 32;
  const int K = p.K, G = K / GS, B = K / 32;
  if constexpr (T != ScaleType::f32) {
    // Several rows of x (a prompt): this tile's half-precision scales and
    // biases widened once, not once per row of x.
    constexpr int kTileGroups = 256;
    if (p.M > 1 && G <= kTileGroups) {
      float scales[R * kTileGroups], biases[R * kTileGroups];
      load_params(T, p.scales, static_cast<long>(n) * G, R * G, scales);
      if (!p.symmetric) load_params(T, p.biases, static_cast<long>(n) * G, R * G, biases);
      QmmProblem local = p;
      local.scales = scales;
      local.biases = biases;
      local.scale_type = ScaleType::f32;
      q8_tile<Bits, GS, R, ScaleType::f32>(local, xq, xd, xs, n, n);
      return;
    }
  }
  if constexpr (T == ScaleType::f32 && Bits != 4 && R % 2 == 0) {
    if (p.M > 1) {  // a prompt: blocks of 4 rows of x, two weight rows at a time
      for (int c = 0; c < R; c += 2) {
        int m = 0;
        for (; m + 4 <= p.M; m += 4) q8_rows<Bits, GS, 4>(p, xq, xd, xs, n + c, m, param_row0);
        for (; m < p.M; ++m) q8_rows<Bits, GS, 1>(p, xq, xd, xs, n + c, m, param_row0);
      }
      return;
    }
  }
  const long row_bytes = static_cast<long>(K) * Bits / 8;
  const uint8_t* w = reinterpret_cast<const uint8_t*>(p.w) + n * row_bytes;
  {
    const char* next = reinterpret_cast<const char*>(w + R * row_bytes);
    for (long b = 0; b < R * row_bytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
  }
  long row_off[R];
  for (int r = 0; r < R; ++r) row_off[r] = static_cast<long>(n - param_row0 + r) * G;
  for (int m = 0; m < p.M; ++m) {
    const int8_t* xm = xq + static_cast<long>(m) * K;
    const float* dm = xd + static_cast<long>(m) * B;
    float bias[R];
    q8_bias<Bits, T, R>(p, row_off, xs + static_cast<long>(m) * G, G, bias);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    int b = 0;
    if constexpr (Bits == 4) {
      for (; b + 2 <= B; b += 2) {
        const __m256i a_even = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32 * b));
        const __m256i a_odd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32 * b + 32));
        const __m256 dv = _mm256_set_m128(_mm_set1_ps(dm[b + 1]), _mm_set1_ps(dm[b]));
        const int ga = b / kBlocksPerGroup, gb = (b + 1) / kBlocksPerGroup;
        for (int r = 0; r < R; ++r) {
          const __m256 f = dot_pair_4bit(w + r * row_bytes + 16 * b, a_even, a_odd);
          const __m256 sv = ga == gb ? _mm256_set1_ps(param_at<T>(p.scales, row_off[r] + ga))
                                     : _mm256_set_m128(_mm_set1_ps(param_at<T>(p.scales, row_off[r] + gb)),
                                                       _mm_set1_ps(param_at<T>(p.scales, row_off[r] + ga)));
          acc[r] = _mm256_fmadd_ps(f, _mm256_mul_ps(sv, dv), acc[r]);
        }
      }
    }
    for (; b < B; ++b) {  // 8- and 5-bit blocks, or the last unpaired 4-bit one
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32 * b));
      const int g = b / kBlocksPerGroup;
      for (int r = 0; r < R; ++r) {
        const __m256 f = Bits == 8   ? dot_signed(fields_8bit(w + r * row_bytes + 32 * b), a)
                         : Bits == 5 ? dot_unsigned(fields_5bit(w + r * row_bytes + 20 * b), a)
                                     : dot_single_4bit(w + r * row_bytes + 16 * b, a);
        acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(param_at<T>(p.scales, row_off[r] + g) * dm[b]), acc[r]);
      }
    }
    float* out = p.out + static_cast<long>(m) * p.N + n;
    for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) + bias[r];
  }
}

template <int Bits, int GS, ScaleType T>
void gemv_q8(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0, int n1) {
  int n = n0;
  for (; n + 4 <= n1; n += 4) q8_tile<Bits, GS, 4, T>(p, xq, xd, xs, n);
  for (; n < n1; ++n) q8_tile<Bits, GS, 1, T>(p, xq, xd, xs, n);
}

template <int Bits, int GS>
void gemv_q8_scales(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0, int n1) {
  switch (p.scale_type) {
    case ScaleType::f16: gemv_q8<Bits, GS, ScaleType::f16>(p, xq, xd, xs, n0, n1); break;
    case ScaleType::bf16: gemv_q8<Bits, GS, ScaleType::bf16>(p, xq, xd, xs, n0, n1); break;
    default: gemv_q8<Bits, GS, ScaleType::f32>(p, xq, xd, xs, n0, n1); break;
  }
}

template <int Bits>
void gemv_q8_bits(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0, int n1) {
  switch (p.group_size) {
    case 32: gemv_q8_scales<Bits, 32>(p, xq, xd, xs, n0, n1); break;
    case 64: gemv_q8_scales<Bits, 64>(p, xq, xd, xs, n0, n1); break;
    default: gemv_q8_scales<Bits, 128>(p, xq, xd, xs, n0, n1); break;
  }
}

// ---------------------------------------------------------------------------
// Raw Q6_K blocks (256 elements in 210 bytes: ql[128], qh[64], int8 scales[16],
// fp16 d). Element e of a block is (d·sc[e/16])·(q_e − 32), q_e six bits: the
// low four from ql, the high two from qh (ggml's dequantize_row_q6_K).

constexpr int kQ6kBytes = 210;
constexpr int kQ6kType = 14;  // io::GgmlType::Q6_K

// A block's fields minus 32 as int8 in natural order, and dsc[j] = d·sc[j].
inline void decode_q6_k(const uint8_t* b, int8_t* q, float* dsc) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    // Elements 128h + l, +32, +64, +96 (l < 32): the low and high nibbles of
    // ql[64h + l] and ql[64h + 32 + l], with bits 0-1, 2-3, 4-5, 6-7 of qh[32h + l].
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * h));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
    const __m256i q1 = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
    const __m256i q2 = _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
    const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(hb, m2));
    const __m256i q4 =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
    __m256i* dst = reinterpret_cast<__m256i*>(q + 128 * h);
    _mm256_store_si256(dst, _mm256_sub_epi8(q1, k32));
    _mm256_store_si256(dst + 1, _mm256_sub_epi8(q2, k32));
    _mm256_store_si256(dst + 2, _mm256_sub_epi8(q3, k32));
    _mm256_store_si256(dst + 3, _mm256_sub_epi8(q4, k32));
  }
  uint16_t dh;
  __builtin_memcpy(&dh, b + 208, 2);
  const float d = _cvtsh_ss(dh);
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int j = 0; j < 16; ++j) dsc[j] = d * static_cast<float>(sc[j]);
}

// Column n for R rows of x from row m0: Σ_e ((d·sc)·q_e)·x_e, the weight
// rounded as ggml rounds it, two accumulators per row.
template <int R>
inline void q6_k_column(const QmmProblem& p, const uint8_t* row, int n, int m0) {
  const int K = p.K, blocks = K / 256;
  alignas(32) int8_t q[256];
  float dsc[16];
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int b = 0; b < blocks; ++b) {
    decode_q6_k(row + static_cast<long>(b) * kQ6kBytes, q, dsc);
    const float* x = p.x + static_cast<long>(m0) * K + 256 * b;
    for (int j = 0; j < 16; ++j) {
      const __m256 s = _mm256_set1_ps(dsc[j]);
      const __m256 w0 = _mm256_mul_ps(
          s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 16 * j)))));
      const __m256 w1 = _mm256_mul_ps(
          s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 16 * j + 8)))));
      for (int r = 0; r < R; ++r) {
        const float* xr = x + static_cast<long>(r) * K + 16 * j;
        acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) p.out[static_cast<long>(m0 + r) * p.N + n] = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
}

// Rows n..n+rows-1, elements k0..k0+kc-1 of raw GGML blocks as floats into a
// panel, with ggml's dequantized values (Q6_K decoded here, other types by
// io::ggml_dequantize_row); k0 and kc are multiples of the block size.
void dequantize_raw_panel(const QmmProblem& p, const RawDecoder& decode, int n, int rows, int k0, int kc,
                          float* panel) {
  const long row_bytes = static_cast<long>(p.K) / decode.elements * decode.bytes;
  const uint8_t* base = reinterpret_cast<const uint8_t*>(p.w);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* blocks = base + (n + r) * row_bytes + static_cast<long>(k0) / decode.elements * decode.bytes;
    float* dst = panel + r * kPanelCols;
    if (p.ggml_type == kQ6kType) {
      alignas(32) int8_t q[256];
      float dsc[16];
      for (int c = 0; c < kc; c += 256) {
        decode_q6_k(blocks + static_cast<long>(c / 256) * kQ6kBytes, q, dsc);
        for (int i = 0; i < 256; i += 8)
          _mm256_store_ps(dst + c + i, _mm256_mul_ps(_mm256_set1_ps(dsc[i / 16]),
                                                     _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                                         reinterpret_cast<const __m128i*>(q + i))))));
      }
    } else {
      decode.row(p.ggml_type, blocks, dst, kc);
    }
  }
  for (int r = rows; r < kPanelRows; ++r)
    for (int c = 0; c < kc; ++c) panel[r * kPanelCols + c] = 0.0f;
}

void gemm_raw(const QmmProblem& p, const RawDecoder& decode, int n0, int n1) {
  alignas(32) float panel[kPanelRows * kPanelCols];
  for (int n = n0; n < n1; n += kPanelRows) {
    const int rows = min_int(kPanelRows, n1 - n);
    for (int k0 = 0; k0 < p.K; k0 += kPanelCols) {
      const int kc = min_int(kPanelCols, p.K - k0);
      dequantize_raw_panel(p, decode, n, rows, k0, kc, panel);
      int m = 0;
      for (; m + 3 <= p.M; m += 3) gemm_tile<3>(p, panel, m, n, rows, k0, kc);
      if (p.M - m == 2) gemm_tile<2>(p, panel, m, n, rows, k0, kc);
      if (p.M - m == 1) gemm_tile<1>(p, panel, m, n, rows, k0, kc);
    }
  }
}

void gemv_q6_k(const QmmProblem& p, int n0, int n1) {
  const long row_bytes = static_cast<long>(p.K / 256) * kQ6kBytes;
  const uint8_t* base = reinterpret_cast<const uint8_t*>(p.w);
  for (int n = n0; n < n1; ++n) {
    const uint8_t* row = base + n * row_bytes;
    int m = 0;
    for (; m + 4 <= p.M; m += 4) q6_k_column<4>(p, row, n, m);
    switch (p.M - m) {
      case 3: q6_k_column<3>(p, row, n, m); break;
      case 2: q6_k_column<2>(p, row, n, m); break;
      case 1: q6_k_column<1>(p, row, n, m); break;
      default: break;
    }
  }
}

void prepare_q8_dispatch(const QmmProblem& p, int8_t* xq, float* xd, float* xs) {
  if (p.bits == 4) prepare_q8<4>(p, xq, xd, xs);
  else prepare_q8<8>(p, xq, xd, xs);  // natural order, as 5-bit blocks read it too
}

void gemv_q8_dispatch(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0, int n1) {
  if (p.bits == 4) gemv_q8_bits<4>(p, xq, xd, xs, n0, n1);
  else if (p.bits == 5) gemv_q8_bits<5>(p, xq, xd, xs, n0, n1);
  else gemv_q8_bits<8>(p, xq, xd, xs, n0, n1);
}

void prepare_dispatch(const QmmProblem& p, float* xp, float* xs) {
  if (p.bits == 4) prepare_gemv<4>(p, xp, xs);
  else if (p.bits == 5) prepare_gemv<5>(p, xp, xs);
  else prepare_gemv<8>(p, xp, xs);
}

template <int Bits, int GS>
void gemv_scales(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  switch (p.scale_type) {
    case ScaleType::f16: gemv<Bits, GS, ScaleType::f16>(p, xp, xs, n0, n1); break;
    case ScaleType::bf16: gemv<Bits, GS, ScaleType::bf16>(p, xp, xs, n0, n1); break;
    default: gemv<Bits, GS, ScaleType::f32>(p, xp, xs, n0, n1); break;
  }
}

template <int Bits>
void gemv_bits(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  switch (p.group_size) {
    case 32: gemv_scales<Bits, 32>(p, xp, xs, n0, n1); break;
    case 64: gemv_scales<Bits, 64>(p, xp, xs, n0, n1); break;
    default: gemv_scales<Bits, 128>(p, xp, xs, n0, n1); break;
  }
}

void gemv_dispatch(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  if (p.bits == 4) gemv_bits<4>(p, xp, xs, n0, n1);
  else if (p.bits == 5) gemv_bits<5>(p, xp, xs, n0, n1);
  else gemv_bits<8>(p, xp, xs, n0, n1);
}

void gemm_dispatch(const QmmProblem& p, int n0, int n1) {
  if (p.bits == 4) gemm<4>(p, n0, n1);
  else if (p.bits == 5) gemm<5>(p, n0, n1);
  else gemm<8>(p, n0, n1);
}

const QmmKernels kAvx2Kernels{prepare_dispatch, gemv_dispatch, gemm_dispatch, prepare_q8_dispatch, gemv_q8_dispatch,
                              gemv_q6_k,        gemm_raw,      kPanelRows};

}  // namespace

#ifdef LMLAB_QMM_VNNI
const QmmKernels* vnni_qmm_kernels() { return &kAvx2Kernels; }
#else
const QmmKernels* avx2_qmm_kernels() { return &kAvx2Kernels; }
#endif

#elif defined(LMLAB_QMM_NO_VNNI)

const QmmKernels* vnni_qmm_kernels() { return nullptr; }

#else

const QmmKernels* avx2_qmm_kernels() { return nullptr; }

#endif

}  // namespace lmlab::nn::cpu
