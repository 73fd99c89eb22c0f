// nn::swiglu: the MLX primitive (LmlabSwiglu) and the portable scalar kernel.
#include "nn/swiglu.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <variant>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/compute_pool.h"
#include "nn/cpu_arrays.h"
#include "nn/elementwise_kernels.h"

namespace mx = mlx::core;

namespace lmlab::nn {

void detail::swiglu_scalar(const float* gate, const float* up, float* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

detail::SwigluKernel detail::swiglu_kernel() {
  static const detail::SwigluKernel k = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      if (auto avx2 = detail::avx2_swiglu()) return avx2;
#endif
    return &detail::swiglu_scalar;
  }();
  return k;
}

namespace {

array composed(const array& gate, const array& up, const mx::StreamOrDevice& s) {
  return mx::multiply(mx::multiply(gate, mx::sigmoid(gate, s), s), up, s);
}

class LmlabSwiglu : public detail::FusedCpuPrimitive {
 public:
  explicit LmlabSwiglu(mx::Stream stream) : detail::FusedCpuPrimitive(stream) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    encode(inputs, out).dispatch([g = mx::array::unsafe_weak_copy(inputs[0]), u = mx::array::unsafe_weak_copy(inputs[1]),
                      out = mx::array::unsafe_weak_copy(out)]() mutable {
      const detail::RowMajor g_rows(g), u_rows(u);
      const float* gp = g_rows.data<float>();
      const float* up = u_rows.data<float>();
      float* op = out.data<float>();
      const long n = static_cast<long>(out.size());
      const detail::SwigluKernel kernel = detail::swiglu_kernel();
      constexpr long kChunk = 64 * 1024;
      if (n <= kChunk) {
        kernel(gp, up, op, n);
        return;
      }
      const int tasks = static_cast<int>((n + kChunk - 1) / kChunk);
      detail::parallel_for(tasks, [&](int t) {
        const long i = t * kChunk;
        kernel(gp + i, up + i, op + i, std::min(kChunk, n - i));
      });
    });
  }

  detail::Composition composition() override {
    return [s = stream()](const std::vector<mx::array>& in) { return composed(in[0], in[1], s); };
  }

  const char* name() const override { return "LmlabSwiglu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const LmlabSwiglu*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }
};

}  // namespace

array swiglu(const array& gate, const array& up, mx::StreamOrDevice s) {
  if (!detail::on_cpu(s) || gate.dtype() != mx::float32 || up.dtype() != mx::float32 || gate.shape() != up.shape())
    return composed(gate, up, s);
  return array(gate.shape(), mx::float32, std::make_shared<LmlabSwiglu>(mx::to_stream(s)), {gate, up});
}

}  // namespace lmlab::nn
