// nn::swiglu and nn::geglu: the MLX primitive (LmlabGated) and the portable
// scalar kernels.
#include "nn/cpu/swiglu.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <variant>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/cpu/compute_pool.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/elementwise_kernels.h"

namespace mx = mlx::core;

namespace lmlab::nn {

void cpu::swiglu_scalar(const float* gate, const float* up, float* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void cpu::geglu_scalar(const float* gate, const float* up, float* out, long n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (long i = 0; i < n; ++i) {
    const float x = gate[i];
    out[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x))) * up[i];
  }
}

cpu::SwigluKernel cpu::swiglu_kernel() {
  static const cpu::SwigluKernel k = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      if (auto avx2 = cpu::avx2_swiglu()) return avx2;
#endif
    return &cpu::swiglu_scalar;
  }();
  return k;
}

namespace {

enum class Gate { silu, gelu_tanh };

array composed(Gate kind, const array& gate, const array& up, const mx::StreamOrDevice& s) {
  if (kind == Gate::silu) return mx::multiply(mx::multiply(gate, mx::sigmoid(gate, s), s), up, s);
  auto c = [&](float v) { return array(v, gate.dtype()); };
  array inner = mx::multiply(c(0.7978845608028654f),
                             mx::add(gate, mx::multiply(c(0.044715f), mx::power(gate, c(3.0f), s), s), s), s);
  array g = mx::multiply(mx::multiply(c(0.5f), gate, s), mx::add(c(1.0f), mx::tanh(inner, s), s), s);
  return mx::multiply(g, up, s);
}

class LmlabGated : public cpu::FusedCpuPrimitive {
 public:
  LmlabGated(mx::Stream stream, Gate kind) : cpu::FusedCpuPrimitive(stream), kind_(kind) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    encode(inputs, out).dispatch([g = mx::array::unsafe_weak_copy(inputs[0]), u = mx::array::unsafe_weak_copy(inputs[1]),
                      out = mx::array::unsafe_weak_copy(out), kind = kind_]() mutable {
      const cpu::RowMajor g_rows(g), u_rows(u);
      const float* gp = g_rows.data<float>();
      const float* up = u_rows.data<float>();
      float* op = out.data<float>();
      const long n = static_cast<long>(out.size());
      const cpu::SwigluKernel kernel = kind == Gate::silu ? cpu::swiglu_kernel() : &cpu::geglu_scalar;
      constexpr long kChunk = 64 * 1024;
      if (n <= kChunk) {
        kernel(gp, up, op, n);
        return;
      }
      const int tasks = static_cast<int>((n + kChunk - 1) / kChunk);
      cpu::parallel_for(tasks, [&](int t) {
        const long i = t * kChunk;
        kernel(gp + i, up + i, op + i, std::min(kChunk, n - i));
      });
    });
  }

  cpu::Composition composition() override {
    return [s = stream(), kind = kind_](const std::vector<mx::array>& in) { return composed(kind, in[0], in[1], s); };
  }

  const char* name() const override { return kind_ == Gate::silu ? "LmlabSwiglu" : "LmlabGeglu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabGated*>(&other);
    return o && o->kind_ == kind_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  Gate kind_;
};

array gated(Gate kind, const array& gate, const array& up, const mx::StreamOrDevice& s) {
  if (!cpu::on_cpu(s) || gate.dtype() != mx::float32 || up.dtype() != mx::float32 || gate.shape() != up.shape())
    return composed(kind, gate, up, s);
  return array(gate.shape(), mx::float32, std::make_shared<LmlabGated>(mx::to_stream(s), kind), {gate, up});
}

}  // namespace

array swiglu(const array& gate, const array& up, mx::StreamOrDevice s) { return gated(Gate::silu, gate, up, s); }

array geglu(const array& gate, const array& up, mx::StreamOrDevice s) { return gated(Gate::gelu_tanh, gate, up, s); }

}  // namespace lmlab::nn
