// nn::swiglu and nn::geglu: the MLX primitive (LmlabGated) and the portable
// scalar kernels.
#include "nn/cpu/swiglu.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <variant>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
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

void cpu::swiglu_grad_scalar(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                             long n) {
  for (long i = 0; i < n; ++i) {
    const float g = gate[i], s = 1.0f / (1.0f + std::exp(-g));
    dup[i] = dout[i] * (g * s);
    dgate[i] = dout[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
  }
}

bool cpu::avx2_fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

cpu::SwigluKernel cpu::swiglu_kernel() {
  static const cpu::SwigluKernel k = cpu::avx2_fma() && cpu::avx2_swiglu() ? cpu::avx2_swiglu() : &cpu::swiglu_scalar;
  return k;
}

cpu::SwigluKernel cpu::geglu_kernel() {
  static const cpu::SwigluKernel k = cpu::avx2_fma() && cpu::avx2_geglu() ? cpu::avx2_geglu() : &cpu::geglu_scalar;
  return k;
}

cpu::SwigluGradKernel cpu::swiglu_grad_kernel() {
  static const cpu::SwigluGradKernel k =
      cpu::avx2_fma() && cpu::avx2_swiglu_grad() ? cpu::avx2_swiglu_grad() : &cpu::swiglu_grad_scalar;
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

// Over n elements in chunks on the compute pool (one call when small).
void chunked(long n, const std::function<void(long, long)>& fn) {
  constexpr long kChunk = 64 * 1024;
  if (n <= kChunk) return fn(0, n);
  const int tasks = static_cast<int>((n + kChunk - 1) / kChunk);
  cpu::parallel_for(tasks, [&](int t) { fn(t * kChunk, std::min(kChunk, n - t * kChunk)); });
}

// (gate, up, dout) → (dgate, dup) of silu(gate) · up, float32, one shape.
class LmlabSwigluGrad : public mx::Primitive {
 public:
  explicit LmlabSwigluGrad(mx::Stream stream) : mx::Primitive(stream) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    cpu::encode(stream(), inputs, outputs).dispatch([g = mx::array::unsafe_weak_copy(inputs[0]), u = mx::array::unsafe_weak_copy(inputs[1]),
                      d = mx::array::unsafe_weak_copy(inputs[2]), dg = mx::array::unsafe_weak_copy(outputs[0]),
                      du = mx::array::unsafe_weak_copy(outputs[1])]() mutable {
      const cpu::RowMajor g_rows(g), u_rows(u), d_rows(d);
      const float *gp = g_rows.data<float>(), *up = u_rows.data<float>(), *dp = d_rows.data<float>();
      float *dgp = dg.data<float>(), *dup = du.data<float>();
      const cpu::SwigluGradKernel kernel = cpu::swiglu_grad_kernel();
      chunked(static_cast<long>(dg.size()),
              [&](long i, long n) { kernel(gp + i, up + i, dp + i, dgp + i, dup + i, n); });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn] LmlabSwigluGrad runs on CPU streams only");
  }

  const char* name() const override { return "LmlabSwigluGrad"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const LmlabSwigluGrad*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape(), inputs[0].shape()};
  }
};

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
      const cpu::SwigluKernel kernel = kind == Gate::silu ? cpu::swiglu_kernel() : cpu::geglu_kernel();
      chunked(n, [&](long i, long m) { kernel(gp + i, up + i, op + i, m); });
    });
  }

  cpu::Composition composition() override {
    return [s = stream(), kind = kind_](const std::vector<mx::array>& in) { return composed(kind, in[0], in[1], s); };
  }

  // SwiGLU's derivatives in one threaded pass (LmlabSwigluGrad); GeGLU's through the composition.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>& outputs) override {
    if (kind_ != Gate::silu) return cpu::FusedCpuPrimitive::vjp(primals, cotangents, argnums, outputs);
    const mx::Shape& shape = primals[0].shape();
    std::vector<mx::array> grads = mx::array::make_arrays(
        {shape, shape}, {mx::float32, mx::float32}, std::make_shared<LmlabSwigluGrad>(stream()),
        {primals[0], primals[1], mx::astype(cotangents[0], mx::float32, stream())});
    std::vector<mx::array> out;
    for (int a : argnums) out.push_back(grads[a]);
    return out;
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
