// nn::cross_entropy: the CPU primitives (LmlabCrossEntropy and its derivative)
// and the portable scalar row kernels.
#include "nn/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/transforms.h>

#include "nn/cpu/compute_pool.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/elementwise_kernels.h"

namespace mx = mlx::core;

namespace lmlab::nn {

float cpu::logsumexp_scalar(const float* x, long n) {
  float m = -INFINITY;
  for (long i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return NAN;
    m = std::max(m, x[i]);
  }
  if (!std::isfinite(m)) return m;
  float s = 0.0f;
  for (long i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

void cpu::scaled_softmax_scalar(const float* x, long n, float lse, float g, float* out) {
  for (long i = 0; i < n; ++i) out[i] = g * std::exp(x[i] - lse);
}

cpu::LogsumexpKernel cpu::logsumexp_kernel() {
  static const cpu::LogsumexpKernel k =
      cpu::avx2_fma() && cpu::avx2_logsumexp() ? cpu::avx2_logsumexp() : &cpu::logsumexp_scalar;
  return k;
}

cpu::ScaledSoftmaxKernel cpu::scaled_softmax_kernel() {
  static const cpu::ScaledSoftmaxKernel k =
      cpu::avx2_fma() && cpu::avx2_scaled_softmax() ? cpu::avx2_scaled_softmax() : &cpu::scaled_softmax_scalar;
  return k;
}

namespace {

// The composition mlx.nn.losses.cross_entropy is: logsumexp of the max-shifted
// logits minus the target's shifted logit.
array composed(const array& logits, const array& targets, const mx::StreamOrDevice& s) {
  array shifted = mx::subtract(logits, mx::stop_gradient(mx::max(logits, -1, /*keepdims=*/true, s), s), s);
  array score = mx::squeeze(mx::take_along_axis(shifted, mx::expand_dims(targets, -1, s), -1, s), -1, s);
  return mx::astype(mx::subtract(mx::logsumexp(shifted, -1, false, s), score, s), mx::float32, s);
}

// fn(row) for every row, a row per task on the compute pool when there is
// enough work to share.
void for_rows(long rows, long width, const std::function<void(long)>& fn) {
  if (rows * width < (1 << 16) || rows == 1) {
    for (long r = 0; r < rows; ++r) fn(r);
    return;
  }
  cpu::parallel_for(static_cast<int>(rows), [&](int r) { fn(r); });
}

// Base of the two primitives: CPU only, no derivatives of their own (the
// loss's comes from custom_vjp; the derivative's second derivative is not needed).
class RowPrimitive : public mx::UnaryPrimitive {
 public:
  using mx::UnaryPrimitive::UnaryPrimitive;
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error(std::string("[lmlab::nn] ") + name() + " runs on CPU streams only");
  }
};

// (logits (N, V) float32, targets (N) int32) → loss (N) float32.
class LmlabCrossEntropy : public RowPrimitive {
 public:
  using RowPrimitive::RowPrimitive;

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    cpu::encode(stream(), inputs, out).dispatch([z = mx::array::unsafe_weak_copy(inputs[0]),
                                            t = mx::array::unsafe_weak_copy(inputs[1]),
                                            out = mx::array::unsafe_weak_copy(out)]() mutable {
      const cpu::RowMajor z_rows(z), t_rows(t);
      const float* zp = z_rows.data<float>();
      const int32_t* tp = t_rows.data<int32_t>();
      float* op = out.data<float>();
      const long V = z.shape(-1), N = static_cast<long>(out.size());
      const cpu::LogsumexpKernel lse = cpu::logsumexp_kernel();
      for_rows(N, V, [&](long r) {
        const float* row = zp + r * V;
        op[r] = tp[r] >= 0 && tp[r] < V ? lse(row, V) - row[tp[r]] : NAN;
      });
    });
  }

  const char* name() const override { return "LmlabCrossEntropy"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const LmlabCrossEntropy*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {mx::Shape{inputs[0].shape(0)}};
  }
};

// (logits (N, V), targets (N), cotangent (N)) → g · (softmax(z) − onehot(t)), (N, V).
class LmlabCrossEntropyGrad : public RowPrimitive {
 public:
  using RowPrimitive::RowPrimitive;

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    cpu::encode(stream(), inputs, out).dispatch([z = mx::array::unsafe_weak_copy(inputs[0]),
                                            t = mx::array::unsafe_weak_copy(inputs[1]),
                                            g = mx::array::unsafe_weak_copy(inputs[2]),
                                            out = mx::array::unsafe_weak_copy(out)]() mutable {
      const cpu::RowMajor z_rows(z), t_rows(t), g_rows(g);
      const float* zp = z_rows.data<float>();
      const int32_t* tp = t_rows.data<int32_t>();
      const float* gp = g_rows.data<float>();
      float* op = out.data<float>();
      const long V = z.shape(-1), N = z.shape(0);
      const cpu::LogsumexpKernel lse = cpu::logsumexp_kernel();
      const cpu::ScaledSoftmaxKernel softmax = cpu::scaled_softmax_kernel();
      for_rows(N, V, [&](long r) {
        const float* row = zp + r * V;
        float* o = op + r * V;
        if (tp[r] < 0 || tp[r] >= V) {
          std::fill(o, o + V, NAN);
          return;
        }
        softmax(row, V, lse(row, V), gp[r], o);
        o[tp[r]] -= gp[r];
      });
    });
  }

  const char* name() const override { return "LmlabCrossEntropyGrad"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const LmlabCrossEntropyGrad*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }
};

}  // namespace

array cross_entropy(const array& logits, const array& targets, mx::StreamOrDevice s) {
  if (!cpu::on_cpu(s) || logits.dtype() != mx::float32 || logits.ndim() < 1 || logits.shape(-1) < 1 ||
      targets.ndim() != logits.ndim() - 1 || !mx::issubdtype(targets.dtype(), mx::integer))
    return composed(logits, targets, s);
  for (int d = 0; d < targets.ndim(); ++d)
    if (targets.shape(d) != logits.shape(d)) return composed(logits, targets, s);
  const mx::Stream stream = mx::to_stream(s);
  const int V = logits.shape(-1);
  const mx::Shape rows_shape = targets.shape();
  const int N = static_cast<int>(targets.size());
  const array t = mx::stop_gradient(mx::reshape(mx::astype(targets, mx::int32, stream), {N}, stream), stream);
  auto forward = [stream, t](const std::vector<array>& in) {
    return std::vector<array>{array(mx::Shape{in[0].shape(0)}, mx::float32,
                                    std::make_shared<LmlabCrossEntropy>(stream), {in[0], t})};
  };
  auto backward = [stream, t](const std::vector<array>& primals, const std::vector<array>& cotangents,
                              const std::vector<array>&) {
    const array g = mx::astype(cotangents[0], mx::float32, stream);
    return std::vector<array>{
        array(primals[0].shape(), mx::float32, std::make_shared<LmlabCrossEntropyGrad>(stream), {primals[0], t, g})};
  };
  const array flat = mx::reshape(logits, {N, V}, stream);
  return mx::reshape(mx::custom_vjp(forward, backward)({flat})[0], rows_shape, stream);
}

}  // namespace lmlab::nn
