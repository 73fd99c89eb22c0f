// cpu::dequantize_affine as an MLX primitive, and the dense product built on it.
#include "nn/cpu/dequantize.h"

#include <cstdint>
#include <stdexcept>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/transforms.h>

#include "nn/cpu/compute_pool.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/elementwise_kernels.h"
#include "nn/cpu/quantized_matmul.h"

namespace mx = mlx::core;

namespace lmlab::nn::cpu {

void dequant_group_scalar(const uint32_t* w, int n, int bits, float s, float b, float* out) {
  const uint32_t mask = (1u << bits) - 1;
  const int per_word = 32 / bits;
  for (int i = 0; i < n; ++i) out[i] = s * static_cast<float>((w[i / per_word] >> (bits * (i % per_word))) & mask) + b;
}

DequantGroupKernel dequant_group_kernel() {
  static const DequantGroupKernel k = avx2_fma() && avx2_dequant_group() ? avx2_dequant_group() : &dequant_group_scalar;
  return k;
}

namespace {

// Rows n0..n1 of the float32 (N, K) result, a group at a time.
void dequantize_rows(const uint32_t* w, const void* scales, const void* biases, ScaleType st, float* out, int K,
                     int group_size, int bits, int n0, int n1) {
  const int words = K * bits / 32, groups = K / group_size, words_per_group = group_size * bits / 32;
  const DequantGroupKernel kernel = dequant_group_kernel();
  for (int n = n0; n < n1; ++n) {
    const uint32_t* wr = w + static_cast<long>(n) * words;
    float* o = out + static_cast<long>(n) * K;
    for (int g = 0; g < groups; ++g)
      kernel(wr + g * words_per_group, group_size, bits, param(st, scales, static_cast<long>(n) * groups + g),
             param(st, biases, static_cast<long>(n) * groups + g), o + g * group_size);
  }
}

class LmlabDequantize : public mx::UnaryPrimitive {
 public:
  LmlabDequantize(mx::Stream stream, int group_size, int bits)
      : mx::UnaryPrimitive(stream), group_size_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    encode(stream(), inputs, out).dispatch([w = mx::array::unsafe_weak_copy(inputs[0]), scales = mx::array::unsafe_weak_copy(inputs[1]),
                      biases = mx::array::unsafe_weak_copy(inputs[2]), out = mx::array::unsafe_weak_copy(out),
                      gs = group_size_, bits = bits_]() mutable {
      const RowMajor wr(w), sr(scales), br(biases);
      const int N = out.shape(0), K = out.shape(1);
      // About 64k weights a task: a few tasks per thread, none too small.
      const int rows = std::max(1, (1 << 16) / std::max(K, 1));
      const int tasks = (N + rows - 1) / rows;
      parallel_for(tasks, [&](int t) {
        const int n0 = t * rows, n1 = std::min(N, n0 + rows);
        dequantize_rows(wr.data<uint32_t>(), sr.data<void>(), br.data<void>(), scale_type(scales.dtype()),
                        out.data<float>(), K, gs, bits, n0, n1);
      });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[lmlab::nn::dequantize_affine] CPU only");
  }

  const char* name() const override { return "LmlabDequantize"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabDequantize*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {{inputs[0].shape(0), static_cast<int>(static_cast<long>(inputs[0].shape(1)) * 32 / bits_)}};
  }

 private:
  int group_size_;
  int bits_;
};

}  // namespace

bool dequantize_is_native(int bits) { return bits == 4 || bits == 8; }

bool dense_rows(const array& x, const array& w, const array& scales, const std::optional<array>& biases,
                const QuantSpec& q, mx::StreamOrDevice s) {
  if (!q.activations.empty() || !dequantize_is_native(q.bits) || x.ndim() < 1 || x.shape(-1) <= 0) return false;
  if (x.size() / static_cast<size_t>(x.shape(-1)) < static_cast<size_t>(kDenseRows)) return false;
  if (static_cast<long>(w.shape(0)) * x.shape(-1) > kDenseMaxWeights) return false;
  return quantized_matmul_is_native(x, w, scales, biases, q.group_size, q.bits, q.mode, s);
}

array dequantize_affine(const array& w, const array& scales, const array& biases, int group_size, int bits,
                        mx::StreamOrDevice s) {
  if (!dequantize_is_native(bits))
    throw std::invalid_argument("[lmlab::nn::dequantize_affine] 4 or 8 bits only");
  const mx::Shape shape{w.shape(0), static_cast<int>(static_cast<long>(w.shape(1)) * 32 / bits)};
  return array(shape, mx::float32, std::make_shared<LmlabDequantize>(mx::to_stream(s), group_size, bits),
               {mx::stop_gradient(w), mx::stop_gradient(scales), mx::stop_gradient(biases)});
}

array dense_quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                             int group_size, int bits, mx::StreamOrDevice s) {
  auto forward = [group_size, bits, s](const std::vector<array>& in) {
    const array dense = dequantize_affine(in[1], in[2], in[3], group_size, bits, s);
    return std::vector<array>{mx::matmul(in[0], mx::transpose(dense, s), s)};
  };
  // d(x Wᵀ)/dx applied to g: g W, with W dequantized again rather than kept.
  auto backward = [group_size, bits, s](const std::vector<array>& primals, const std::vector<array>& cotangents,
                                        const std::vector<array>&) {
    const array dense = dequantize_affine(primals[1], primals[2], primals[3], group_size, bits, s);
    return std::vector<array>{mx::matmul(cotangents[0], dense, s), mx::zeros_like(primals[1], s),
                              mx::zeros_like(primals[2], s), mx::zeros_like(primals[3], s)};
  };
  return mx::custom_vjp(forward, backward)({x, w, scales, biases})[0];
}

}  // namespace lmlab::nn::cpu
