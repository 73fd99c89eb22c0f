// lmlab's CUDA kernels for the fused decoder block (nn::cuda::decoder_step):
// the quantized matrix-vector product with RMSNorm, bias, residual and gated
// activation fused in, the per-head q/k norms with RoPE and the KV-cache write,
// and split-key attention over the cache with its combine step.
//
// Compiled by nvcc into a fatbin (sm_80 and sm_90 code, compute_80 PTX for
// newer GPUs) that the host side loads with the driver API (device.cpp),
// so no kernel is compiled at run time. Entry points are extern "C" and named
// lmlab_<kernel>_<dtype>[_b<bits>_g<group>_m<rows>].
//
// Layouts: activations are row-major (M, features) in T (half or bfloat16);
// quantized weights are MLX's affine layout: (N, K·bits/32) uint32, element k
// of a row in word k·bits/32 at bit (k mod 32/bits)·bits, scales and biases
// (N, K/group) in T; the cache is (B, Hk, capacity, Dh) in T.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "nn/cuda/kernel_params.h"

namespace {

using lmlab::nn::cuda::AttentionParams;
using lmlab::nn::cuda::CombineParams;
using lmlab::nn::cuda::NormAddParams;
using lmlab::nn::cuda::QGemvParams;
using lmlab::nn::cuda::RopeCacheParams;

constexpr int kWarp = 32;

__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
// x rounded to T and back: what a composed op that outputs T would hand on.
template <class T>
__device__ __forceinline__ float round_t(float x) {
  return to_f(from_f<T>(x));
}

// Every entry point waits here first for the launch it depends on. A replayed
// decode stack (StepGraph) lets a launch start while the one before it runs
// (programmatic dependencies: its blocks are placed and wait here, which
// hides the gap between launches); anywhere else this returns at once. Once
// its wait is over, a launch lets the next one be placed: at most two are in
// flight, the running one and the next, waiting (a trigger before the wait
// would let every launch of the step be placed at once, each holding room
// on the multiprocessors while it waits).
__device__ __forceinline__ void wait_for_prior_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets it.
__device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

// Weights are read once per step: through the read-only path, not kept in L1.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// ---------------------------------------------------------------------------
// Quantized matrix-vector products.
//
// The block stages its M input rows in shared memory (normalized first when
// the launch fuses an RMSNorm), rounded to T as the composed ops would hand
// them on, and the sum of each 32-element (4-bit) or 16-element (8-bit) chunk.
// A chunk of weights is one 16-byte load; its dot product with x is taken on
// the integer levels q (exact in T), and the affine map applied per chunk:
//   Σ_k x_k (q_k s + b) = s Σ_k q_k x_k + b Σ_k x_k.
// Each warp computes one output row (or the gate and up rows of one output in
// the gated mode) for all M inputs, reading each weight once.

template <int BITS>
struct Chunk {
  static constexpr int kElems = 128 / BITS;  // weights in one 16-byte load
  static constexpr int kPieces = kElems / 8;  // 16-byte pieces of x (8 values of T)
  // Pieces one staged input row takes: its chunks rounded up to a whole warp's.
  __device__ static int row_pieces(int chunks) { return (chunks + kWarp - 1) / kWarp * kWarp * kPieces; }
};

// Shared-memory index (in 16-byte pieces) of piece p of chunk c of one row:
// lanes reading consecutive chunks read consecutive pieces (no bank conflicts).
template <int BITS>
__device__ __forceinline__ int piece_index(int c, int p) {
  return ((c / kWarp) * Chunk<BITS>::kPieces + p) * kWarp + (c % kWarp);
}

// Position within a piece at which element e (0..7) of the piece is stored,
// so that the pairs the dequantization produces meet their x pair: 4-bit words
// yield (q0,q4), (q1,q5), (q2,q6), (q3,q7); 8-bit words (q0,q2), (q1,q3).
template <int BITS>
__device__ __forceinline__ int slot_in_piece(int e) {
  if constexpr (BITS == 4) return (e % 4) * 2 + e / 4;
  else return (e / 4) * 4 + (e % 2) * 2 + (e % 4) / 2;
}

// Σ q·x over one chunk for T = half: integer levels put in half2 registers
// with the 1024-exponent trick, products accumulated per 32-bit word in half2
// (at most 8 products), then summed in float.
template <int BITS>
__device__ __forceinline__ float chunk_dot(const uint4& w, const uint4* xs, __half) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
  const __half2 magic = __half2half2(__ushort_as_half(0x6400));  // 1024
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t q = words[i];
    __half2 acc = __float2half2_rn(0.0f);
    if constexpr (BITS == 4) {
      const uint4 xv = xs[i * kWarp];  // piece i holds this word's 8 values
      const __half2* xp = reinterpret_cast<const __half2*>(&xv);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t bits = ((q >> (4 * j)) & 0x000F000Fu) | 0x64006400u;
        const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&bits), magic);
        acc = __hfma2(v, xp[j], acc);
      }
    } else {
      const uint4 xv = xs[(i / 2) * kWarp];  // two words share a piece
      const __half2* xp = reinterpret_cast<const __half2*>(&xv) + (i % 2) * 2;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const uint32_t bits = ((q >> (8 * j)) & 0x00FF00FFu) | 0x64006400u;
        const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&bits), magic);
        acc = __hfma2(v, xp[j], acc);
      }
    }
    const float2 f = __half22float2(acc);
    sum += f.x + f.y;
  }
  return sum;
}

// The same for T = bfloat16, in float (bfloat16's 8-bit mantissa is too short
// to accumulate in).
template <int BITS>
__device__ __forceinline__ float chunk_dot(const uint4& w, const uint4* xs, __nv_bfloat16) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t q = words[i];
    if constexpr (BITS == 4) {
      const uint4 xv = xs[i * kWarp];
      const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 x2 = __bfloat1622float2(xp[j]);
        sum += static_cast<float>((q >> (4 * j)) & 0xFu) * x2.x + static_cast<float>((q >> (4 * j + 16)) & 0xFu) * x2.y;
      }
    } else {
      const uint4 xv = xs[(i / 2) * kWarp];
      const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv) + (i % 2) * 2;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const float2 x2 = __bfloat1622float2(xp[j]);
        sum += static_cast<float>((q >> (8 * j)) & 0xFFu) * x2.x + static_cast<float>((q >> (8 * j + 16)) & 0xFFu) * x2.y;
      }
    }
  }
  return sum;
}

template <class T>
__device__ __forceinline__ float activate(float gate, int act) {
  if (act == 0) return gate / (1.0f + __expf(-gate));  // silu
  const float inner = 0.7978845608028654f * (gate + 0.044715f * gate * gate * gate);
  return 0.5f * gate * (1.0f + tanhf(inner));  // gelu, tanh approximation
}

// Stages the block's input rows: optional RMSNorm, rounding to T, the
// permuted piece layout, and chunk sums. smem: M rows of row_pieces(chunks)
// 16-byte pieces, then M·chunks float sums (the host sizes it: qgemv_smem).
// A thread takes whole 16-byte pieces of x (8 elements, one staged piece), so
// its loads are few and issued together: element by element, a 14k-feature
// row was 56 dependent round trips to L2 per thread before any weight was
// read. A chunk's pieces belong to 2 or 4 neighbouring lanes, whose shuffle
// reduction gives the chunk sum.
template <class T, int BITS, int MR>
__device__ void stage_inputs(const QGemvParams& p, uint4* xs, float* sums, float* red) {
  using C = Chunk<BITS>;
  const int K = p.K, chunks = K / C::kElems, pieces = K / 8;
  const int lane = threadIdx.x % kWarp;
  const uint4* norm = static_cast<const uint4*>(p.norm);
  for (int m = 0; m < p.M; ++m) {
    const uint4* row = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + static_cast<long>(m) * p.x_stride);
    float scale = 1.0f;
    if (norm) {
      float ss = 0.0f;
#pragma unroll 4
      for (int i = threadIdx.x; i < pieces; i += blockDim.x) {
        const uint4 v = row[i];
        const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
        for (int j = 0; j < 8; ++j) ss += to_f(e[j]) * to_f(e[j]);
      }
      ss = block_sum(ss, red);
      scale = rsqrtf(ss / static_cast<float>(K) + p.eps);
    }
    uint4* staged = xs + static_cast<long>(m) * C::row_pieces(chunks);
    // The bound is the warp's first piece, so every lane runs the shuffles.
#pragma unroll 4
    for (int base = threadIdx.x - lane; base < pieces; base += blockDim.x) {
      const int i = base + lane;
      float s = 0.0f;
      if (i < pieces) {
        const uint4 v = row[i];
        uint4 w = {}, out;
        if (norm) w = norm[i];
        const T* e = reinterpret_cast<const T*>(&v);
        const T* we = reinterpret_cast<const T*>(&w);
        T* o = reinterpret_cast<T*>(&out);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float f = to_f(e[j]);
          if (norm) f = round_t<T>(f * scale * round_t<T>(to_f(we[j]) + p.norm_offset));
          const T t = from_f<T>(f);
          s += to_f(t);
          o[slot_in_piece<BITS>(j)] = t;
        }
        staged[piece_index<BITS>(i / C::kPieces, i % C::kPieces)] = out;
      }
#pragma unroll
      for (int o = C::kPieces / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (i < pieces && i % C::kPieces == 0) sums[m * chunks + i / C::kPieces] = s;
    }
  }
  __syncthreads();
}

// One weight row a warp reads: its packed words, scales and biases.
template <class T>
struct RowRef {
  const uint4* w = nullptr;  // null: no row (past the end)
  const T* scales;
  const T* biases;
};

template <class T, int BITS, int GS>
__device__ __forceinline__ RowRef<T> row_ref(const lmlab::nn::cuda::QMat& mat, int n, int K) {
  const int chunks = K / Chunk<BITS>::kElems;
  return {reinterpret_cast<const uint4*>(mat.w) + static_cast<long>(n) * chunks,
          static_cast<const T*>(mat.scales) + static_cast<long>(n) * (K / GS),
          static_cast<const T*>(mat.biases) + static_cast<long>(n) * (K / GS)};
}

// acc[r][m] = Σ_k W_r[k] x_m[k] for R rows of weights, warp-reduced (every
// lane gets the sums). Each round first issues all of its loads (U chunks of
// each of the R rows per lane, four in all) and then does the arithmetic.
template <class T, int BITS, int GS, int MR, int R>
__device__ __forceinline__ void rows_dot(const QGemvParams& p, const RowRef<T> (&rows)[R], const uint4* xs,
                                         const float* sums, float (&acc)[R][MR]) {
  using C = Chunk<BITS>;
  constexpr int U = 4 / R;
  const int lane = threadIdx.x % kWarp;
  const int chunks = p.K / C::kElems;
  const int row_pieces = C::row_pieces(chunks);
  for (int c0 = lane; c0 < chunks; c0 += kWarp * U) {
    uint4 wv[R][U];
    float s[R][U], b[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + u * kWarp;
        if (rows[r].w && c < chunks) {
          const int g = c * C::kElems / GS;
          wv[r][u] = load_stream(rows[r].w + c);
          s[r][u] = to_f(rows[r].scales[g]);
          b[r][u] = to_f(rows[r].biases[g]);
        }
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * kWarp;
      if (c >= chunks) break;
#pragma unroll
      for (int m = 0; m < MR; ++m)
        if (m < p.M) {
          const uint4* xm = xs + static_cast<long>(m) * row_pieces + piece_index<BITS>(c, 0);
          const float xsum = sums[m * chunks + c];
#pragma unroll
          for (int r = 0; r < R; ++r)
            if (rows[r].w) acc[r][m] += s[r][u] * chunk_dot<BITS>(wv[r][u], xm, T()) + b[r][u] * xsum;
        }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MR; ++m) acc[r][m] = warp_sum(acc[r][m]);
}

// Writes row n of matrix mat for every input row: the bias, then the
// residual (mode 1), each rounded to T as the composed ops would.
template <class T>
__device__ __forceinline__ void store_row(const QGemvParams& p, const lmlab::nn::cuda::QMat& mat, int n,
                                          const float* acc) {
  T* out = static_cast<T*>(mat.out);
  const T* res = static_cast<const T*>(p.res);
  const long stride = p.nmat == 1 ? p.out_stride : mat.n;
  for (int m = 0; m < p.M; ++m) {
    float y = round_t<T>(acc[m]);
    if (mat.bias) y = round_t<T>(y + to_f(static_cast<const T*>(mat.bias)[n]));
    if (p.mode == 1) y += to_f(res[static_cast<long>(m) * p.out_stride + n]);
    out[static_cast<long>(m) * stride + n] = from_f<T>(y);
  }
}

// Output row `slot` of the launch's matrices laid end to end: (matrix, row).
__device__ __forceinline__ int find_matrix(const QGemvParams& p, int& n) {
  int j = 0;
  while (j < p.nmat - 1 && n >= p.mat[j].n) n -= p.mat[j++].n;
  return j;
}

// The R weight rows of warp task `task`: the gate and up rows of one output
// (gated mode, R = 2), or R consecutive output rows (j: their matrices, n:
// their rows within them; rows past the end are null).
template <class T, int BITS, int GS, int R>
__device__ __forceinline__ void task_rows(const QGemvParams& p, int task, int slots, RowRef<T> (&rows)[R], int (&n)[R],
                                          int (&j)[R]) {
  if (p.mode == 2) {
    rows[0] = row_ref<T, BITS, GS>(p.mat[0], task, p.K);
    rows[R - 1] = row_ref<T, BITS, GS>(p.mat[1], task, p.K);
    return;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    n[r] = R * task + r;
    rows[r] = RowRef<T>{};
    if (n[r] < slots) {
      j[r] = find_matrix(p, n[r]);
      rows[r] = row_ref<T, BITS, GS>(p.mat[j[r]], n[r], p.K);
    }
  }
}

// Warps take tasks of R rows grid-stride, so a block stages its inputs once
// for several tasks.
template <class T, int BITS, int GS, int MR, int R>
__device__ void qgemv_tasks(const QGemvParams& p, const uint4* xs, const float* sums, int slots) {
  const int warps = blockDim.x / kWarp, lane = threadIdx.x % kWarp;
  const int tasks = p.mode == 2 ? slots : (slots + R - 1) / R;
  for (int task = blockIdx.x * warps + threadIdx.x / kWarp; task < tasks; task += gridDim.x * warps) {
    RowRef<T> rows[R];
    int n[R], j[R];
    task_rows<T, BITS, GS, R>(p, task, slots, rows, n, j);
    float acc[R][MR] = {};
    rows_dot<T, BITS, GS, MR, R>(p, rows, xs, sums, acc);
    if (lane != 0) continue;
    if (p.mode == 2) {  // gated pair: out0 = act(gate) · up
      T* out = static_cast<T*>(p.mat[0].out);
      for (int m = 0; m < p.M; ++m) {
        float gv = round_t<T>(acc[0][m]), uv = round_t<T>(acc[R - 1][m]);
        if (p.mat[0].bias) gv = round_t<T>(gv + to_f(static_cast<const T*>(p.mat[0].bias)[task]));
        if (p.mat[1].bias) uv = round_t<T>(uv + to_f(static_cast<const T*>(p.mat[1].bias)[task]));
        out[static_cast<long>(m) * p.out_stride + task] = from_f<T>(activate<T>(gv, p.act) * uv);
      }
      continue;
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (rows[r].w) store_row<T>(p, p.mat[j[r]], n[r], acc[r]);
  }
}

// Asks L2 for the weights of this warp's first task (its rows, scales and
// biases), which depend on no earlier launch: in a replayed step the launch
// starts while the one before it runs (wait_for_prior_launch), and the bytes
// are on their way by the time its input is.
template <class T, int BITS, int GS, int R>
__device__ void prefetch_first_task(const QGemvParams& p, int slots) {
  const int warps = blockDim.x / kWarp, lane = threadIdx.x % kWarp;
  const int task = blockIdx.x * warps + threadIdx.x / kWarp;
  if (task >= (p.mode == 2 ? slots : (slots + R - 1) / R)) return;
  RowRef<T> rows[R];
  int n[R], j[R];
  task_rows<T, BITS, GS, R>(p, task, slots, rows, n, j);
  const int chunks = p.K / Chunk<BITS>::kElems, group_bytes = p.K / GS * static_cast<int>(sizeof(T));
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (!rows[r].w) continue;
    for (int c = lane * 8; c < chunks; c += kWarp * 8)  // 128-byte lines
      asm volatile("prefetch.global.L2 [%0];" ::"l"(rows[r].w + c));
    for (int b = lane * 128; b < group_bytes; b += kWarp * 128) {
      asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(rows[r].scales) + b));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(rows[r].biases) + b));
    }
  }
}

// Output rows of a launch: its matrices' rows laid end to end (gated: the pairs).
__device__ __forceinline__ int gemv_slots(const QGemvParams& p) {
  int slots = p.mat[0].n;
  if (p.mode != 2)
    for (int j = 1; j < p.nmat; ++j) slots += p.mat[j].n;
  return slots;
}

template <class T, int BITS, int GS, int MR>
__device__ void qgemv(const QGemvParams& p) {
  using C = Chunk<BITS>;
  extern __shared__ uint4 smem[];
  __shared__ float red[32];
  // A task is one row (rows_per_task 1: more warps share a small matrix) or
  // two read together; the gate and up rows of one output always pair.
  if (p.prefetch) {
    if (p.mode != 2 && p.rows_per_task == 1) prefetch_first_task<T, BITS, GS, 1>(p, gemv_slots(p));
    else prefetch_first_task<T, BITS, GS, 2>(p, gemv_slots(p));
  }
  wait_for_prior_launch();
  const int chunks = p.K / C::kElems;
  uint4* xs = smem;
  float* sums = reinterpret_cast<float*>(smem + static_cast<long>(p.M) * C::row_pieces(chunks));
  stage_inputs<T, BITS, MR>(p, xs, sums, red);
  const int slots = gemv_slots(p);
  if (p.mode != 2 && p.rows_per_task == 1) qgemv_tasks<T, BITS, GS, MR, 1>(p, xs, sums, slots);
  else qgemv_tasks<T, BITS, GS, MR, 2>(p, xs, sums, slots);
}

// ---------------------------------------------------------------------------
// A sandwich norm and the residual add, one block per row: the normalized row
// rounded to T as the composed RMSNorm hands it on, then added in float and
// rounded (the composed add).

template <class T>
__device__ void norm_add(const NormAddParams& p) {
  __shared__ float red[32];
  const long at = static_cast<long>(blockIdx.x) * p.D;
  const T* y = static_cast<const T*>(p.y) + at;
  const T* res = static_cast<const T*>(p.res) + at;
  const T* norm = static_cast<const T*>(p.norm);
  T* out = static_cast<T*>(p.out) + at;
  float ss = 0.0f;
  for (int d = threadIdx.x; d < p.D; d += blockDim.x) {
    const float v = to_f(y[d]);
    ss += v * v;
  }
  const float scale = rsqrtf(block_sum(ss, red) / static_cast<float>(p.D) + p.eps);
  for (int d = threadIdx.x; d < p.D; d += blockDim.x) {
    const float n = round_t<T>(to_f(y[d]) * scale * round_t<T>(to_f(norm[d]) + p.norm_offset));
    out[d] = from_f<T>(to_f(res[d]) + n);
  }
}

// ---------------------------------------------------------------------------
// q/k norms, RoPE and the cache write. One warp per (row, head slot): slots
// [0, H) rotate q heads into q_out, [H, H + Hk) normalize and rotate k heads
// into the cache, [H + Hk, H + 2Hk) copy v heads into the cache.

template <class T>
__device__ void rope_cache(const RopeCacheParams& p) {
  const int lane = threadIdx.x % kWarp;
  const int slot = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int m = blockIdx.y;
  const int H = p.heads, Hk = p.kv_heads, Dh = p.head_dim;
  if (slot >= H + 2 * Hk) return;
  const int b = m / p.L, l = m % p.L, pos = (p.step ? p.step[0] : p.offset) + l;
  const T* src;
  T* dst;
  const T* norm = nullptr;
  bool rotate = true;
  if (slot < H) {
    src = static_cast<const T*>(p.q) + static_cast<long>(m) * H * Dh + slot * Dh;
    dst = static_cast<T*>(p.q_out) + static_cast<long>(m) * H * Dh + slot * Dh;
    norm = static_cast<const T*>(p.q_norm);
  } else {
    const bool is_k = slot < H + Hk;
    const int j = is_k ? slot - H : slot - H - Hk;
    src = static_cast<const T*>(is_k ? p.k : p.v) + static_cast<long>(m) * Hk * Dh + j * Dh;
    dst = static_cast<T*>(is_k ? p.keys : p.values) + ((static_cast<long>(b) * Hk + j) * p.capacity + pos) * Dh;
    norm = is_k ? static_cast<const T*>(p.k_norm) : nullptr;
    rotate = is_k;
  }
  float scale = 1.0f;
  if (norm) {
    float ss = 0.0f;
    for (int d = lane; d < Dh; d += kWarp) {
      const float v = to_f(src[d]);
      ss += v * v;
    }
    scale = rsqrtf(warp_sum(ss) / static_cast<float>(Dh) + p.eps);
  }
  // The value a composed pass hands to RoPE: normed and rounded, times mscale.
  auto in = [&](int d) {
    float v = to_f(src[d]);
    if (norm) v = round_t<T>(v * scale * round_t<T>(to_f(norm[d]) + p.norm_offset));
    if (rotate && p.mscale != 1.0f) v = round_t<T>(v * p.mscale);
    return v;
  };
  if (!rotate) {
    for (int d = lane; d < Dh; d += kWarp) dst[d] = src[d];
    return;
  }
  const int half = p.rope_dims / 2;
  for (int i = lane; i < half; i += kWarp) {
    const int a = p.traditional ? 2 * i : i, c = p.traditional ? 2 * i + 1 : i + half;
    const float theta = static_cast<float>(pos) * p.rope_scale * p.inv_freq[i];
    float sn, cs;
    sincosf(theta, &sn, &cs);
    const float x1 = in(a), x2 = in(c);
    dst[a] = from_f<T>(x1 * cs - x2 * sn);
    dst[c] = from_f<T>(x1 * sn + x2 * cs);
  }
  for (int d = p.rope_dims + lane; d < Dh; d += kWarp) dst[d] = from_f<T>(in(d));
}

// ---------------------------------------------------------------------------
// Attention over the cache, split over the key range (flash-decoding): one
// warp per (row, head, split) keeps an online softmax of its keys and writes
// (max, sum, Σ p v) to the partials; combine merges the splits.

// Merges one head's key ranges (one warp): out = Σ_s w_s o_s / Σ_s w_s sum_s
// with w_s = e^(max_s - M), M the largest max; a range without keys (sum 0)
// has weight 0. Each lane reads the (max, sum) of up to four ranges at once
// (kMaxSplits = 128), then the Σ p v rows eight ranges a round. The stack's
// attention merges in its last range, the per-layer step in a launch of its
// own: both through this, so they give the same bits.
template <class T, int DPL>
__device__ void merge_splits(const float* parts, int splits, int Dh, T* out, int lane) {
  constexpr int kPer = 4;
  const int row = Dh + 2;
  float mxs[kPer], w[kPer];
  float M = -INFINITY;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int s = lane + k * kWarp;
    mxs[k] = s < splits ? __ldcg(parts + static_cast<long>(s) * row) : -INFINITY;
    w[k] = s < splits ? __ldcg(parts + static_cast<long>(s) * row + 1) : 0.0f;  // the range's sum for now
    M = fmaxf(M, mxs[k]);
  }
  M = warp_max(M);
  float S = 0.0f;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const float sum = w[k];
    w[k] = sum != 0.0f ? __expf(mxs[k] - M) : 0.0f;
    S += w[k] * sum;
  }
  S = warp_sum(S);
  float o[DPL] = {};
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int base = k * kWarp;
    if (base >= splits) break;
    const int n = min(kWarp, splits - base);
#pragma unroll 8
    for (int t = 0; t < n; ++t) {
      const float wt = __shfl_sync(0xffffffffu, w[k], t);
      const float* part = parts + static_cast<long>(base + t) * row + 2;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const int d = lane + i * kWarp;
        if (d < Dh) o[i] += wt * __ldcg(part + d);
      }
    }
  }
  const float inv = 1.0f / S;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int d = lane + i * kWarp;
    if (d < Dh) out[d] = from_f<T>(o[i] * inv);
  }
}

template <class T, int DPL>  // DPL: head-dim elements per lane, ⌈Dh / 32⌉
__device__ void attention_partial(const AttentionParams& p) {
  const int lane = threadIdx.x;
  const int split = blockIdx.x, h = blockIdx.y, m = blockIdx.z;
  const int H = p.heads, Dh = p.head_dim;
  // A replayed step's grid covers the cache's capacity: ranges past this
  // step's splits have nothing to do (and combine reads none of them).
  const int splits = p.step ? p.step[1] : p.splits, split_len = p.step ? p.step[2] : p.split_len;
  if (split >= splits) return;
  const int b = m / p.L, l = m % p.L, pos = (p.step ? p.step[0] : p.offset) + l;
  const int kv = h / (H / p.kv_heads);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const int j0 = max(first, split * split_len), j1 = min(pos + 1, (split + 1) * split_len);
  float q[DPL], o[DPL];
  const T* qrow = static_cast<const T*>(p.q) + (static_cast<long>(m) * H + h) * Dh;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int d = lane + i * kWarp;
    q[i] = d < Dh ? to_f(qrow[d]) * p.scale : 0.0f;
    o[i] = 0.0f;
  }
  float mx = -INFINITY, sum = 0.0f;
  const long base = (static_cast<long>(b) * p.kv_heads + kv) * p.capacity;
  const T* keys = static_cast<const T*>(p.keys) + base * Dh;
  const T* values = static_cast<const T*>(p.values) + base * Dh;
  // Keys in groups of kKeys: the group's keys and values are all loaded
  // before the first score is reduced (one memory round trip per group, not
  // one per key, nor a second one for the values).
  constexpr int kKeys = 8;
  for (int j = j0; j < j1; j += kKeys) {
    T kv[kKeys][DPL], vv[kKeys][DPL];
#pragma unroll
    for (int g = 0; g < kKeys; ++g) {
      const T* kr = keys + static_cast<long>(j + g) * Dh;
      const T* vr = values + static_cast<long>(j + g) * Dh;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const int d = lane + i * kWarp;
        const bool in = j + g < j1 && d < Dh;
        kv[g][i] = in ? kr[d] : from_f<T>(0.0f);
        vv[g][i] = in ? vr[d] : from_f<T>(0.0f);
      }
    }
    float s[kKeys];
#pragma unroll
    for (int g = 0; g < kKeys; ++g) {
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc += q[i] * to_f(kv[g][i]);
      s[g] = acc;
    }
    float mnew = mx;
#pragma unroll
    for (int g = 0; g < kKeys; ++g) {
      s[g] = warp_sum(s[g]);
      if (j + g < j1) mnew = fmaxf(mnew, s[g]);
    }
    const float corr = __expf(mx - mnew);
    sum *= corr;
#pragma unroll
    for (int i = 0; i < DPL; ++i) o[i] *= corr;
#pragma unroll
    for (int g = 0; g < kKeys; ++g) {
      const float e = j + g < j1 ? __expf(s[g] - mnew) : 0.0f;
      sum += e;
#pragma unroll
      for (int i = 0; i < DPL; ++i) o[i] += e * to_f(vv[g][i]);
    }
    mx = mnew;
  }
  const long at = (static_cast<long>(m) * H + h) * splits + split;
  float* part = p.partials + at * (Dh + 2);
  if (lane == 0) {
    part[0] = mx;
    part[1] = sum;
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int d = lane + i * kWarp;
    if (d < Dh) part[2 + d] = o[i];
  }
  if (!p.counters) return;  // a combine launch merges the ranges
  // The last of the head's ranges to finish merges them all (their partials
  // are in L2 by then: each range fences its writes before it counts itself).
  const float* head = p.partials + (static_cast<long>(m) * H + h) * splits * (Dh + 2);
  T* out = static_cast<T*>(p.out) + (static_cast<long>(m) * H + h) * Dh;
  if (splits == 1) {
    __syncwarp();
    merge_splits<T, DPL>(head, 1, Dh, out, lane);
    return;
  }
  // The warp's writes, then lane 0's fence (cumulative: it orders them all)
  // before it counts the range; the last range's lane 0 fences again before
  // the warp reads the others'.
  __syncwarp();
  unsigned* counter = p.counters + static_cast<long>(m) * H + h;
  unsigned done = 0;
  if (lane == 0) {
    __threadfence();
    done = atomicAdd(counter, 1u);
    __threadfence();
  }
  done = __shfl_sync(0xffffffffu, done, 0);
  if (done != static_cast<unsigned>(splits - 1)) return;
  __syncwarp();
  merge_splits<T, DPL>(head, splits, Dh, out, lane);
  if (lane == 0) *counter = 0;  // ready for the next layer's ranges
}

template <class T, int DPL>
__device__ void attention_combine(const CombineParams& p) {
  const int h = blockIdx.x, m = blockIdx.y;
  const int H = p.heads, Dh = p.head_dim;
  const int splits = p.step ? p.step[1] : p.splits;
  merge_splits<T, DPL>(p.partials + (static_cast<long>(m) * H + h) * splits * (Dh + 2), splits, Dh,
                       static_cast<T*>(p.out) + (static_cast<long>(m) * H + h) * Dh, threadIdx.x);
}

}  // namespace

// Entry points. The host picks one by name (device.cpp, kernel). A one-row
// launch is held to 64 registers, four blocks a multiprocessor: with both task
// sizes in one kernel it would take 79 and three blocks, and decode's long
// launches (the gated pair) ran 15% slower for the lost warps.
#define LMLAB_QGEMV(T, NAME, BITS, GS, MR)                                                 \
  extern "C" __global__ void __launch_bounds__(256, MR == 1 ? 4 : 1)                      \
      lmlab_qgemv_##NAME##_b##BITS##_g##GS##_m##MR(const QGemvParams p) {                 \
    qgemv<T, BITS, GS, MR>(p);                                                            \
  }
#define LMLAB_QGEMV_ROWS(T, NAME, BITS, GS) \
  LMLAB_QGEMV(T, NAME, BITS, GS, 1)         \
  LMLAB_QGEMV(T, NAME, BITS, GS, 4)         \
  LMLAB_QGEMV(T, NAME, BITS, GS, 8)
#define LMLAB_QGEMV_GROUPS(T, NAME, BITS) \
  LMLAB_QGEMV_ROWS(T, NAME, BITS, 32)     \
  LMLAB_QGEMV_ROWS(T, NAME, BITS, 64)     \
  LMLAB_QGEMV_ROWS(T, NAME, BITS, 128)
// Attention kernels by head-dim elements per lane (_p1: Dh ≤ 32, _p2: ≤ 64, ...).
#define LMLAB_ATTENTION(T, NAME, DPL)                                                               \
  extern "C" __global__ void lmlab_attention_##NAME##_p##DPL(const AttentionParams p) {             \
    wait_for_prior_launch();                                                                        \
    attention_partial<T, DPL>(p);                                                                   \
  }                                                                                                 \
  extern "C" __global__ void lmlab_combine_##NAME##_p##DPL(const CombineParams p) {                 \
    wait_for_prior_launch();                                                                        \
    attention_combine<T, DPL>(p);                                                                   \
  }
// 8-bit levels also in groups of 16 (the K-quants' sub-blocks, nn/cuda/gemv_form.h):
// an 8-bit chunk is 16 weights, so each chunk is one group.
#define LMLAB_TYPE_KERNELS(T, NAME)                                               \
  LMLAB_QGEMV_GROUPS(T, NAME, 4)                                                  \
  LMLAB_QGEMV_GROUPS(T, NAME, 8)                                                  \
  LMLAB_QGEMV_ROWS(T, NAME, 8, 16)                                                \
  extern "C" __global__ void lmlab_rope_cache_##NAME(const RopeCacheParams p) {   \
    wait_for_prior_launch();                                                      \
    rope_cache<T>(p);                                                             \
  }                                                                               \
  extern "C" __global__ void lmlab_norm_add_##NAME(const NormAddParams p) {       \
    wait_for_prior_launch();                                                      \
    norm_add<T>(p);                                                               \
  }                                                                               \
  LMLAB_ATTENTION(T, NAME, 1)                                                     \
  LMLAB_ATTENTION(T, NAME, 2)                                                     \
  LMLAB_ATTENTION(T, NAME, 4)                                                     \
  LMLAB_ATTENTION(T, NAME, 8)

LMLAB_TYPE_KERNELS(__half, f16)
LMLAB_TYPE_KERNELS(__nv_bfloat16, bf16)

// A replayed step's changing values into device memory (StepValues), first
// in its graph: the launches after it read them.
extern "C" __global__ void lmlab_set_step(const lmlab::nn::cuda::StepValues p) {
  wait_for_prior_launch();
  if (threadIdx.x == 0) {
    p.dst[0] = p.offset;
    p.dst[1] = p.splits;
    p.dst[2] = p.split_len;
  }
}
