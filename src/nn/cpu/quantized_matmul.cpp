// nn::quantized_matmul: an MLX primitive (LmlabQuantizedMatmul) whose CPU
// evaluation splits the output columns over a small thread pool and runs the
// AVX2 kernels of quantized_matmul_avx2.cpp (or the scalar ones below).
#include "nn/cpu/quantized_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>

#include "lmlab/ggml.h"
#include "nn/cpu/compute_pool.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/quantized_matmul_kernels.h"
#include "nn/linear.h"
#include "nn/cuda/qgemv.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace cpu {

float param(ScaleType t, const void* base, long i) {
  switch (t) {
    case ScaleType::f32: return static_cast<const float*>(base)[i];
    case ScaleType::f16: return static_cast<float>(static_cast<const mx::float16_t*>(base)[i]);
    case ScaleType::bf16: return static_cast<float>(static_cast<const mx::bfloat16_t*>(base)[i]);
  }
  return 0.0f;
}

namespace {

// ---------------------------------------------------------------------------
// Portable scalar kernels (any CPU; also the reference for the AVX2 ones).

void scalar_prepare(const QmmProblem& p, float* xp, float* xs) {
  const long MK = static_cast<long>(p.M) * p.K;
  std::copy(p.x, p.x + MK, xp);
  const int G = p.K / p.group_size;
  for (int m = 0; m < p.M; ++m)
    for (int g = 0; g < G; ++g) {
      const float* x = p.x + static_cast<long>(m) * p.K + g * p.group_size;
      float s = 0.0f;
      for (int k = 0; k < p.group_size; ++k) s += x[k];
      xs[m * G + g] = s;
    }
}

// Field k of a row: MLX packs the fields little-end first as one bit stream
// (4 and 8 bits: whole fields per byte; 5 bits: eight fields in five bytes).
uint32_t field(const uint8_t* row, long k, int bits) {
  const long bit = k * bits;
  const int shift = static_cast<int>(bit & 7);
  uint32_t v = row[bit >> 3];
  if (shift + bits > 8) v |= static_cast<uint32_t>(row[(bit >> 3) + 1]) << 8;
  return (v >> shift) & ((1u << bits) - 1);
}

const uint8_t* weight_row(const QmmProblem& p, int n) {
  return reinterpret_cast<const uint8_t*>(p.w) + static_cast<long>(n) * p.K * p.bits / 8;
}

void scalar_gemv(const QmmProblem& p, const float* xp, const float* xs, int n0, int n1) {
  const int G = p.K / p.group_size;
  for (int m = 0; m < p.M; ++m) {
    const float* x = xp + static_cast<long>(m) * p.K;
    for (int n = n0; n < n1; ++n) {
      const uint8_t* w = weight_row(p, n);
      float acc = 0.0f;
      for (int g = 0; g < G; ++g) {
        float dot = 0.0f;
        for (int k = g * p.group_size; k < (g + 1) * p.group_size; ++k) {
          dot += x[k] * static_cast<float>(field(w, k, p.bits));
        }
        const long gi = static_cast<long>(n) * G + g;
        acc += param(p.scale_type, p.scales, gi) * dot +
               param(p.scale_type, p.biases, gi) * xs[m * G + g];
      }
      p.out[static_cast<long>(m) * p.N + n] = acc;
    }
  }
}

// One block of 32 x values rounded to int8 as llama.cpp's x86 quantize_row_q8_0/q8_1
// round them (× 127/max|x|, half to even). q in natural order; returns Σq.
int quantize_block_q8(const float* x, int8_t* q, float& d_rounded, float& d_exact) {
  float amax = 0.0f;
  for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[k]));
  d_exact = amax / 127.0f;
  d_rounded = static_cast<float>(static_cast<mx::float16_t>(d_exact));
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int k = 0; k < 32; ++k) {
    const int v = static_cast<int>(std::nearbyint(x[k] * id));
    q[k] = static_cast<int8_t>(v);
    sum += v;
  }
  return sum;
}

void scalar_prepare_q8(const QmmProblem& p, int8_t* xq, float* xd, float* xs) {
  const int B = p.K / 32, G = p.K / p.group_size, per_group = p.group_size / 32;
  std::fill(xs, xs + static_cast<long>(p.M) * G, 0.0f);
  for (int m = 0; m < p.M; ++m)
    for (int b = 0; b < B; ++b) {
      const long off = static_cast<long>(m) * p.K + 32 * b;
      float d_exact;
      const int sum = quantize_block_q8(p.x + off, xq + off, xd[m * B + b], d_exact);
      xs[m * G + b / per_group] += q8_block_sum_term(p.act, xd[m * B + b], d_exact, sum);
    }
}

void scalar_gemv_q8(const QmmProblem& p, const int8_t* xq, const float* xd, const float* xs, int n0,
                    int n1) {
  const int G = p.K / p.group_size, B = p.K / 32;
  // 8-bit fields are used as signed q - 128 (their bias term gains 128·scale).
  const int offset = p.bits == 8 ? 128 : 0;
  for (int m = 0; m < p.M; ++m) {
    const int8_t* x = xq + static_cast<long>(m) * p.K;
    for (int n = n0; n < n1; ++n) {
      const uint8_t* w = weight_row(p, n);
      float acc = 0.0f;
      for (int g = 0; g < G; ++g) {
        const long gi = static_cast<long>(n) * G + g;
        const float scale = param(p.scale_type, p.scales, gi);
        for (int b = g * p.group_size / 32; b < (g + 1) * p.group_size / 32; ++b) {
          int isum = 0;
          for (int k = 32 * b; k < 32 * (b + 1); ++k) {
            const int q = static_cast<int>(field(w, k, p.bits));
            isum += (q - offset) * x[k];
          }
          acc += scale * xd[m * B + b] * static_cast<float>(isum);
        }
        acc += (param(p.scale_type, p.biases, gi) + offset * scale) * xs[m * G + g];
      }
      p.out[static_cast<long>(m) * p.N + n] = acc;
    }
  }
}

const QmmKernels kScalarKernels{scalar_prepare, scalar_gemv, nullptr, scalar_prepare_q8, scalar_gemv_q8, nullptr, nullptr,
                                1};

}  // namespace

const QmmKernels& scalar_qmm_kernels() { return kScalarKernels; }

void ggml_rows(const QmmProblem& p, int n0, int n1) {
  const auto type = static_cast<io::GgmlType>(p.ggml_type);
  const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(p.ggml_type));
  const long row_bytes = static_cast<long>(p.K) / b.elements * b.bytes;
  std::vector<float> row(p.K);
  for (int n = n0; n < n1; ++n) {
    io::ggml_dequantize_row(type, reinterpret_cast<const uint8_t*>(p.w) + n * row_bytes, row.data(), p.K);
    for (int m = 0; m < p.M; ++m) {
      const float* x = p.x + static_cast<long>(m) * p.K;
      float acc[8] = {};
      int k = 0;
      for (; k + 8 <= p.K; k += 8)
        for (int j = 0; j < 8; ++j) acc[j] += x[k + j] * row[k + j];
      float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
      for (; k < p.K; ++k) sum += x[k] * row[k];
      p.out[static_cast<long>(m) * p.N + n] = sum;
    }
  }
}

float q8_block_sum_term(ActQuant act, float d_rounded, float d_exact, int sum) {
  if (act == ActQuant::q8_1) return static_cast<float>(static_cast<mx::float16_t>(d_exact * static_cast<float>(sum)));
  return d_rounded * static_cast<float>(sum);
}

}  // namespace cpu

namespace {

using cpu::QmmKernels;
using cpu::QmmProblem;
using cpu::ScaleType;

const QmmKernels& best_kernels() {
  static const QmmKernels* const kernels = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
      // LMLAB_NO_VNNI=1 keeps the AVX2 set (for comparisons).
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && !std::getenv("LMLAB_NO_VNNI"))
        if (const QmmKernels* k = cpu::vnni_qmm_kernels()) return k;
      if (const QmmKernels* k = cpu::avx2_qmm_kernels()) return k;
    }
#endif
    return &cpu::scalar_qmm_kernels();
  }();
  return *kernels;
}

// Rows of x at or below which the gemv kernel is used.
constexpr int kGemvMaxRows = 4;
// Rows of x at or below which raw GGML blocks take the GEMV kernel or row
// decoding rather than decoded panels.
constexpr int kRawGemvMaxRows = 8;
// Below this many weights per call the matmul runs on one thread.
constexpr long kMinParallelWeights = 32 * 1024;

}  // namespace

namespace {

// One problem's activations in the form its kernel reads, and how its output
// columns are cut into tasks.
struct PreparedQmm {
  const QmmProblem* p = nullptr;
  bool int8 = false, use_gemm = false;
  std::vector<float> xp, xs;
  std::vector<int8_t> xq;
  int chunk = 0, tasks = 0;
  cpu::RawDecoder raw{};

  void range(const QmmKernels& k, int n0, int n1) const {
    if (p->ggml_type >= 0) {
      if (use_gemm) k.gemm_raw(*p, raw, n0, n1);
      else if (p->ggml_type == static_cast<int>(io::GgmlType::Q6_K) && k.gemv_q6_k) k.gemv_q6_k(*p, n0, n1);
      else cpu::ggml_rows(*p, n0, n1);
    } else if (int8) k.gemv_q8(*p, xq.data(), xp.data(), xs.data(), n0, n1);
    else if (use_gemm) k.gemm(*p, n0, n1);
    else k.gemv(*p, xp.data(), xs.data(), n0, n1);
  }
};

void prepare(const QmmKernels& k, const QmmProblem& p, int threads, PreparedQmm& out) {
  out.p = &p;
  out.int8 = p.ggml_type < 0 && p.act != cpu::ActQuant::none;
  out.use_gemm = p.ggml_type < 0 && !out.int8 && k.gemm && p.M > kGemvMaxRows;
  if (p.ggml_type >= 0) {
    // Raw GGML blocks read x as it is: a few rows through the GEMV kernels or
    // row decoding, more through decoded panels.
    const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(p.ggml_type));
    out.raw = {b.elements, b.bytes, [](int type, const uint8_t* blocks, float* y, long n) {
                 io::ggml_dequantize_row(static_cast<io::GgmlType>(type), blocks, y, n);
               }};
    out.use_gemm = k.gemm_raw && p.M > kRawGemvMaxRows;
  } else if (out.int8) {
    out.xq.resize(static_cast<size_t>(p.M) * p.K);
    out.xp.resize(static_cast<size_t>(p.M) * (p.K / 32));
    out.xs.resize(static_cast<size_t>(p.M) * (p.K / p.group_size));
    k.prepare_q8(p, out.xq.data(), out.xp.data(), out.xs.data());
  } else if (!out.use_gemm) {
    out.xp.resize(static_cast<size_t>(p.M) * p.K);
    out.xs.resize(static_cast<size_t>(p.M) * (p.K / p.group_size));
    k.prepare_gemv(p, out.xp.data(), out.xs.data());
  }
  // A few chunks per thread so a thread slowed by other work is picked up by the rest.
  const int align = std::max(k.n_align, 4);
  int chunk = (p.N + threads * 4 - 1) / (threads * 4);
  out.chunk = std::max(align, (chunk + align - 1) / align * align);
  out.tasks = (p.N + out.chunk - 1) / out.chunk;
}

}  // namespace

void cpu::run_qmm(const QmmProblem& p) { run_qmm_many(&p, 1); }

void cpu::run_qmm_many(const QmmProblem* problems, int count) {
  const QmmKernels& k = best_kernels();
  long weights = 0;
  for (int i = 0; i < count; ++i)
    if (problems[i].M > 0 && problems[i].N > 0)
      weights += static_cast<long>(problems[i].N) * problems[i].K * std::max(1, std::min(problems[i].M, 16));
  if (weights == 0) return;
  const int threads = weights < kMinParallelWeights ? 1 : pool_threads();
  std::vector<PreparedQmm> prepared(count);
  int total = 0;
  for (int i = 0; i < count; ++i) {
    if (problems[i].M == 0 || problems[i].N == 0) continue;
    prepare(k, problems[i], threads, prepared[i]);
    total += prepared[i].tasks;
  }
  if (threads == 1) {
    for (const PreparedQmm& q : prepared)
      if (q.p) q.range(k, 0, q.p->N);
    return;
  }
  // One task list over all problems: threads meet once, not once per matmul.
  parallel_for(total, [&](int t) {
    for (const PreparedQmm& q : prepared) {
      if (t >= q.tasks) {
        t -= q.tasks;
        continue;
      }
      q.range(k, t * q.chunk, std::min(q.p->N, (t + 1) * q.chunk));
      return;
    }
  });
}

cpu::ActQuant cpu::parse_activations(const std::string& name) {
  if (name.empty()) return ActQuant::none;
  if (name == "q8_0") return ActQuant::q8_0;
  if (name == "q8_1") return ActQuant::q8_1;
  throw std::invalid_argument("[lmlab::nn::quantized_matmul] unknown activations '" + name +
                              "' (expected \"\", q8_0 or q8_1)");
}

cpu::ScaleType cpu::scale_type(mx::Dtype t) {
  if (t == mx::float16) return ScaleType::f16;
  if (t == mx::bfloat16) return ScaleType::bf16;
  return ScaleType::f32;
}

namespace {

using cpu::ActQuant;

class LmlabQuantizedMatmul : public mx::UnaryPrimitive {
 public:
  LmlabQuantizedMatmul(mx::Stream stream, int group_size, int bits, ActQuant act)
      : mx::UnaryPrimitive(stream), group_size_(group_size), bits_(bits), act_(act) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    encoder.set_output_array(out);
    encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                      w = mx::array::unsafe_weak_copy(inputs[1]),
                      scales = mx::array::unsafe_weak_copy(inputs[2]),
                      biases = mx::array::unsafe_weak_copy(inputs[3]),
                      out = mx::array::unsafe_weak_copy(out), gs = group_size_, bits = bits_,
                      act = act_, scales_data = inputs[2].data_shared_ptr(),
                      biases_data = inputs[3].data_shared_ptr()]() mutable {
      // Strided inputs (e.g. a transposed view) are gathered into row-major copies.
      const cpu::RowMajor xr(x), wr(w), sr(scales), br(biases);
      const int K = x.shape(-1), N = out.shape(-1);
      QmmProblem p{
          .x = xr.data<float>(),
          .w = wr.data<uint32_t>(),
          .scales = sr.data<void>(),
          .biases = br.data<void>(),
          .scale_type = cpu::scale_type(scales.dtype()),
          .out = out.data<float>(),
          .M = K == 0 ? 0 : static_cast<int>(x.size() / K),
          .N = N,
          .K = K,
          .group_size = gs,
          .bits = bits,
          .act = act,
          .symmetric = cpu::symmetric_biases(scales, biases, bits, scales_data, biases_data),
      };
      cpu::run_qmm(p);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[lmlab::nn::quantized_matmul] CPU only; GPU streams use mx::quantized_matmul");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents, const std::vector<int>& argnums,
                             const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    for (int arg : argnums) {
      if (arg != 0)
        throw std::invalid_argument(
            "[lmlab::nn::quantized_matmul] gradients only with respect to x, not the quantized weights");
      // d(x Wᵀ)/dx applied to g: g W, with W dequantized to float32 for BLAS's
      // threaded GEMM (MLX's CPU quantized_matmul is scalar and single-threaded).
      const mx::array w = dequantize_exact(primals[1], primals[2], primals[3], group_size_, bits_, "affine",
                                           mx::float32, stream());
      grads.push_back(mx::astype(mx::matmul(mx::astype(cotangents[0], mx::float32, stream()), w, stream()),
                                 cotangents[0].dtype(), stream()));
    }
    return grads;
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>& primals, const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    if (argnums.size() != 1 || argnums[0] != 0)
      throw std::invalid_argument(
          "[lmlab::nn::quantized_matmul] derivatives only with respect to x, not the quantized weights");
    return {quantized_matmul(tangents[0], primals[1], primals[2], primals[3], group_size_, bits_,
                             "affine", "", stream())};
  }

  const char* name() const override { return "LmlabQuantizedMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabQuantizedMatmul*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->act_ == act_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    mx::Shape shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 private:
  int group_size_;
  int bits_;
  ActQuant act_;
};


bool is_float_type(mx::Dtype t) { return t == mx::float32 || t == mx::float16 || t == mx::bfloat16; }

}  // namespace

bool cpu::native_weights(const array& w, const array& scales, const std::optional<array>& biases,
                            int group_size, int bits, const std::string& mode, int K) {
  if (mode != "affine" || !biases || (bits != 4 && bits != 5 && bits != 8)) return false;
  if (group_size != 32 && group_size != 64 && group_size != 128) return false;
  if (w.dtype() != mx::uint32 || w.ndim() != 2) return false;
  if (!is_float_type(scales.dtype()) || biases->dtype() != scales.dtype()) return false;
  const int N = w.shape(0);
  if (K == 0 || K % group_size != 0 || static_cast<long>(w.shape(1)) * 32 / bits != K) return false;
  const mx::Shape params{N, K / group_size};
  return scales.shape() == params && biases->shape() == params;
}

bool cpu::native_activations(int bits, const std::string& activations) {
  return activations.empty() || activations == "q8_0" || activations == "q8_1";
}

bool cpu::symmetric_biases(const array& scales, const array& biases, int bits,
                           const std::shared_ptr<array::Data>& scales_data,
                           const std::shared_ptr<array::Data>& biases_data) {
  if (!scales.flags().row_contiguous || !biases.flags().row_contiguous || scales.dtype() != biases.dtype() ||
      scales.size() != biases.size() || bits < 1 || bits > 8)
    return false;
  struct Seen {
    std::weak_ptr<mx::array::Data> scales, biases;
    bool symmetric;
  };
  using Key = std::tuple<const void*, const void*, size_t>;
  static std::mutex mutex;
  static std::map<Key, Seen> seen;
  const Key key{scales.data<void>(), biases.data<void>(), scales.size()};
  {
    std::lock_guard lock(mutex);
    auto it = seen.find(key);
    if (it != seen.end() && it->second.scales.lock() == scales_data && it->second.biases.lock() == biases_data)
      return it->second.symmetric;
  }
  const ScaleType t = scale_type(scales.dtype());
  const float offset = -static_cast<float>(1 << (bits - 1));
  // Times −2^(bits−1) on the bit patterns: the exponent field up by bits − 1
  // and the sign flipped, exact for a normal scale whose exponent stays in
  // range; anything else (zero, subnormal, the top of the range) is compared
  // as floats.
  const uint32_t* s32 = t == ScaleType::f32 ? scales.data<uint32_t>() : nullptr;
  const uint32_t* b32 = t == ScaleType::f32 ? biases.data<uint32_t>() : nullptr;
  const uint16_t* s16 = t == ScaleType::f32 ? nullptr : scales.data<uint16_t>();
  const uint16_t* b16 = t == ScaleType::f32 ? nullptr : biases.data<uint16_t>();
  const int mantissa = t == ScaleType::f32 ? 23 : t == ScaleType::f16 ? 10 : 7;
  const uint32_t step = static_cast<uint32_t>(bits - 1) << mantissa;
  const uint32_t sign = t == ScaleType::f32 ? 0x80000000u : 0x8000u;
  const uint32_t inf = t == ScaleType::f32 ? 0x7F800000u : t == ScaleType::f16 ? 0x7C00u : 0x7F80u;
  bool symmetric = true;
  for (size_t i = 0; i < scales.size() && symmetric; ++i) {
    const uint32_t sb = s32 ? s32[i] : s16[i], bb = b32 ? b32[i] : b16[i], mag = sb & ~sign;
    if (bb == ((sb + step) ^ sign) && mag >= (1u << mantissa) && mag + step < inf) continue;
    symmetric = param(t, biases.data<void>(), static_cast<long>(i)) == offset * param(t, scales.data<void>(), static_cast<long>(i));
  }
  std::lock_guard lock(mutex);
  if (seen.size() > 4096)  // forget the entries of freed buffers
    std::erase_if(seen, [](const auto& kv) { return kv.second.scales.expired() || kv.second.biases.expired(); });
  seen[key] = {scales_data, biases_data, symmetric};
  return symmetric;
}

bool quantized_matmul_is_native(const array& x, const array& w, const array& scales,
                                const std::optional<array>& biases, int group_size, int bits,
                                const std::string& mode, mx::StreamOrDevice s) {
  if (!cpu::on_cpu(s) || x.dtype() != mx::float32 || x.ndim() < 1) return false;
  return cpu::native_weights(w, scales, biases, group_size, bits, mode, x.shape(-1));
}

namespace {

// Whether a GPU stream multiplies x by the dequantized weights with MLX's dense
// GEMM (cuBLAS) rather than mx::quantized_matmul: a prompt's rows (16 or more;
// LMLAB_GPU_DENSE_ROWS moves it, 0 turns it off, for measurements) on a matrix
// of at least 4M weights. The dequantized copy lives only for this product. On
// an H200, MLX's quantized GEMM took an 8B model's 512-token prompt at 7.8k
// tokens/s and this at 16k (2048 tokens: 8.9k and 32k); on the 135M model's
// small matrices the extra dequantize launches cost more than they save (80k
// and 38k), hence the floor (docs/gpu.md, run 6).
bool gpu_dense(const array& x, const array& w, const mx::StreamOrDevice& s) {
  static const size_t min_rows = [] {
    const char* v = std::getenv("LMLAB_GPU_DENSE_ROWS");
    if (!v || !*v) return size_t{16};
    const long long n = std::atoll(v);
    return n <= 0 ? std::numeric_limits<size_t>::max() : static_cast<size_t>(n);
  }();
  if (cpu::on_cpu(s) || x.ndim() < 1 || x.shape(-1) <= 0 || w.ndim() != 2) return false;
  const size_t K = static_cast<size_t>(x.shape(-1));
  return x.size() / K >= min_rows && static_cast<size_t>(w.shape(0)) * K >= (size_t{1} << 22);
}

}  // namespace

array quantized_matmul(const array& x, const array& w, const array& scales,
                       const std::optional<array>& biases, int group_size, int bits,
                       const std::string& mode, const std::string& activations, mx::StreamOrDevice s) {
  if (cuda::qgemv_is_native(x, w, scales, biases, group_size, bits, mode, s))
    return cuda::qgemv(x, w, scales, *biases, group_size, bits, s);
  if (gpu_dense(x, w, s)) {
    array dense = dequantize_exact(w, scales, biases, group_size, bits, mode, x.dtype(), s);
    return mx::matmul(x, mx::transpose(dense, s), s);
  }
  const ActQuant act = cpu::parse_activations(activations);
  if (!quantized_matmul_is_native(x, w, scales, biases, group_size, bits, mode, s) ||
      !cpu::native_activations(bits, activations))
    return mx::quantized_matmul(x, w, scales, biases, /*transpose=*/true, group_size, bits, mode, s);
  mx::Shape shape = x.shape();
  shape.back() = w.shape(0);
  return array(std::move(shape), mx::float32,
               std::make_shared<LmlabQuantizedMatmul>(mx::to_stream(s), group_size, bits, act),
               {x, w, scales, *biases});
}

}  // namespace lmlab::nn
