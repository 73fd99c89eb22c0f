// Kernels behind nn::quantized_matmul (internal). The AVX2 set lives in
// quantized_matmul_avx2.cpp, compiled with -mavx2 -mfma -mf16c and chosen at
// run time; the portable scalar set in quantized_matmul.cpp. A kernel computes
// a range of output columns [n0, n1) for all M rows, so the caller can split N
// across threads. Keep this header free of templates and inline functions: it
// is included by the AVX2 translation unit (no ODR-merged AVX2 code may leak).
#pragma once

#include <cstdint>

namespace lmlab::nn::cpu {

enum class ScaleType { f32, f16, bf16 };

// Element i of a scales or biases array of that type, as float (exact).
float param(ScaleType t, const void* base, long i);

// How x meets the quantized weights.
//  none: float32 x times the dequantized weights (MLX's arithmetic).
//  q8_0, q8_1: x is first rounded to int8 in blocks of 32 as llama.cpp rounds
//    it for Q4_0/Q8_0 (q8_0) and Q4_1 (q8_1) weights: d = max|x|/127 kept as
//    fp16, q = round-half-even(x · 127/max|x|); the dot products are then exact
//    integer sums per block, y += scale·d·Σ q_w·q + bias·s with s = d·Σq (q8_1:
//    computed from the unrounded d and rounded to fp16, as llama.cpp stores it).
enum class ActQuant { none, q8_0, q8_1 };

// out = x @ dequantize(w)ᵀ with w affine-quantized along K. All row-contiguous.
struct QmmProblem {
  const float* x;        // (M, K)
  const uint32_t* w;     // (N, K·bits/32)
  const void* scales;    // (N, K/group_size), scale_type
  const void* biases;    // (N, K/group_size), scale_type
  ScaleType scale_type;
  float* out;            // (M, N)
  int M, N, K, group_size, bits;
  ActQuant act = ActQuant::none;
  // Every group's bias is exactly −2^(bits−1) times its scale (GGUF's Q4_0,
  // Q5_0 and Q8_0 repacked): the AVX2 kernels then form the bias terms from the
  // scales, which they read anyway, and never read the biases (the same bits:
  // the factor is a power of two). A hint; kernels that read biases stay right.
  bool symmetric = false;
  // ≥ 0: w points at raw GGML blocks of this io::GgmlType instead (N rows of
  // K / block · block bytes; scales, biases, group_size and bits unused), and
  // act is none: out = x · dequantize(w)ᵀ with ggml's dequantized values.
  int ggml_type = -1;
};

// How the kernels decode raw GGML blocks of types they have no decoder of their
// own for: the block shape, and io::ggml_dequantize_row (passed in, so that the
// AVX2 translation unit needs no lmlab headers).
struct RawDecoder {
  int elements, bytes;
  void (*row)(int type, const uint8_t* blocks, float* out, long n);
};

struct QmmKernels {
  // Few rows (decode). prepare: x → xp (M·K floats, kernel's own order) and
  // per-group sums xs (M·K/group_size floats), once per call; gemv then reads them.
  void (*prepare_gemv)(const QmmProblem& p, float* xp, float* xs);
  void (*gemv)(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1);
  // Many rows (prefill): dequantizes panels of w into a local buffer and reuses
  // each one across all M rows. Null when the set has no such kernel.
  void (*gemm)(const QmmProblem& p, int n0, int n1);
  // Int8 activations (act != none), any number of rows. prepare_q8: x → xq
  // (M·K int8 in the kernel's own order), xd (M·K/32 block scales d) and xs
  // (M·K/group_size: per weight group, the sum of its blocks' s); gemv_q8 then reads them.
  void (*prepare_q8)(const QmmProblem& p, int8_t* xq, float* xd, float* xs);
  void (*gemv_q8)(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0, int n1);
  // Raw Q6_K blocks (ggml_type 14), any number of rows: each weight formed as
  // ggml's dequantize_row_q6_K forms it, (d·sc)·(q − 32), times float32 x. Null
  // when the set has none (the caller then decodes rows with io::ggml_dequantize_row).
  void (*gemv_q6_k)(const QmmProblem& p, int n0, int n1);
  // Raw GGML blocks (any type), many rows: panels of w decoded to ggml's float
  // values once and reused across all M rows, as gemm does. Null when absent.
  void (*gemm_raw)(const QmmProblem& p, const RawDecoder& decode, int n0, int n1);
  // Column-chunk granularity the kernels prefer (ranges start at multiples of it).
  int n_align;
};

// A block's s (see ActQuant) from its rounded scale d, the unrounded one and Σq.
float q8_block_sum_term(ActQuant act, float d_rounded, float d_exact, int sum);

// Problems with ggml_type ≥ 0 of a type the set has no kernel for: rows
// [n0, n1) decoded with io::ggml_dequantize_row, then float32 dot products.
void ggml_rows(const QmmProblem& p, int n0, int n1);

// Runs the best kernel set on p, split over lmlab's CPU compute pool. Safe to
// call from several threads at once (a caller that finds the pool busy runs alone).
void run_qmm(const QmmProblem& p);
// Several problems in one pass over the pool (q, k and v of one x, say): their
// column chunks form one task list, so the threads meet once for all of them.
void run_qmm_many(const QmmProblem* problems, int count);

const QmmKernels& scalar_qmm_kernels();
// The AVX2+FMA+F16C set, or nullptr when not compiled in.
const QmmKernels* avx2_qmm_kernels();
// The same set with AVX-512 VNNI dot products for int8 activations (the same
// bits; needs avx512vnni and avx512vl), or nullptr when not compiled in.
const QmmKernels* vnni_qmm_kernels();

}  // namespace lmlab::nn::cpu
