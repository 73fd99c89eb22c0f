// nn::cpu_attention: the MLX primitive (LmlabCpuAttention), the portable
// scalar kernel, and the choice of kernel (attention_avx2.cpp when the CPU has AVX2).
#include "nn/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <variant>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/cpu/attention_kernels.h"
#include "nn/cpu/compute_pool.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/elementwise_kernels.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace cpu {

int first_key(const AttnProblem& p, int i) {
  return p.window > 0 ? std::max(0, p.Lk - p.L + i - p.window + 1) : 0;
}

void attend_scalar(const AttnProblem& p, int b, int h, int j0_range, int j1, float* scores, float* m_out,
                   float* s_out, float* o_out) {
  const int kv = h / (p.H / p.Hk);
  const float* kbase = p.k + b * p.ks[0] + kv * p.ks[1];
  const float* vbase = p.v + b * p.vs[0] + kv * p.vs[1];
  for (int i = 0; i < p.L; ++i) {
    const float* q = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
    const int end = std::min(j1, p.Lk - p.L + i + 1);
    const int j0 = std::max(j0_range, first_key(p, i));
    float mx = -INFINITY;
    for (int j = j0; j < end; ++j) {
      float s = 0.0f;
      for (int d = 0; d < p.D; ++d) s += p.scale * q[d * p.qs[3]] * kbase[j * p.ks[2] + d * p.ks[3]];
      scores[j - j0] = s;
      mx = std::max(mx, s);
    }
    float sum = 0.0f;
    for (int j = j0; j < end; ++j) sum += scores[j - j0] = std::exp(scores[j - j0] - mx);
    float* out = o_out + static_cast<long>(i) * p.D;
    for (int d = 0; d < p.D; ++d) {
      float acc = 0.0f;
      for (int j = j0; j < end; ++j) acc += scores[j - j0] * vbase[j * p.vs[2] + d * p.vs[3]];
      out[d] = acc;
    }
    m_out[i] = mx;
    s_out[i] = sum;
  }
}

AttnGradRows grad_rows(const AttnProblem& p, const AttnGrad& g, int b, int h) {
  const int kv = h / (p.H / p.Hk);
  const long kv_rows = (static_cast<long>(b) * p.Hk + kv) * p.Lk * p.D;
  return {p.k + b * p.ks[0] + kv * p.ks[1], p.v + b * p.vs[0] + kv * p.vs[1], g.dk + kv_rows, g.dv + kv_rows};
}

void attend_grad_scalar(const AttnProblem& p, const AttnGrad& g, int b, int h, float* scratch) {
  const int D = p.D;
  const auto [kbase, vbase, dk, dv] = grad_rows(p, g, b, h);
  float *prob = scratch, *dprob = scratch + p.Lk;
  for (int i = 0; i < p.L; ++i) {
    const float* q = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
    const float* dout = g.dout + b * g.dos[0] + h * g.dos[1] + i * g.dos[2];
    float* dq = g.dq + ((static_cast<long>(b) * p.H + h) * p.L + i) * D;
    for (int d = 0; d < D; ++d) dq[d] = 0.0f;
    const int j0 = first_key(p, i), end = p.Lk - p.L + i + 1;
    if (end <= j0) continue;
    float mx = -INFINITY;
    for (int j = j0; j < end; ++j) {
      float s = 0.0f;
      for (int d = 0; d < D; ++d) s += p.scale * q[d * p.qs[3]] * kbase[j * p.ks[2] + d * p.ks[3]];
      prob[j] = s;
      mx = std::max(mx, s);
    }
    float sum = 0.0f;
    for (int j = j0; j < end; ++j) sum += prob[j] = std::exp(prob[j] - mx);
    float delta = 0.0f;  // Σ_j P_j dP_j = dout · out
    for (int j = j0; j < end; ++j) {
      prob[j] /= sum;
      float dp = 0.0f;
      for (int d = 0; d < D; ++d) dp += dout[d * g.dos[3]] * vbase[j * p.vs[2] + d * p.vs[3]];
      dprob[j] = dp;
      delta += prob[j] * dp;
    }
    for (int j = j0; j < end; ++j) {
      const float ds = p.scale * prob[j] * (dprob[j] - delta);
      for (int d = 0; d < D; ++d) {
        dv[j * D + d] += prob[j] * dout[d * g.dos[3]];
        dq[d] += ds * kbase[j * p.ks[2] + d * p.ks[3]];
        dk[j * D + d] += ds * q[d * p.qs[3]];
      }
    }
  }
}

}  // namespace cpu

namespace {

using cpu::AttnKernel;
using cpu::AttnProblem;

AttnKernel choose_kernel(const AttnProblem& p) {
  static const AttnKernel avx2 = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return cpu::avx2_attend();
#endif
    return AttnKernel{nullptr};
  }();
  const bool unit_d = p.qs[3] == 1 && p.ks[3] == 1 && p.vs[3] == 1;
  if (avx2 && unit_d && p.D % 8 == 0 && p.D <= 256) return avx2;
  return &cpu::attend_scalar;
}

}  // namespace

void cpu::run_attention_grad(const AttnProblem& p, const AttnGrad& g) {
  static const cpu::AttnGradKernel avx2 = cpu::avx2_fma() ? cpu::avx2_attend_grad() : nullptr;
  const bool unit_d = p.qs[3] == 1 && p.ks[3] == 1 && p.vs[3] == 1 && g.dos[3] == 1;
  const cpu::AttnGradKernel kernel = avx2 && unit_d && p.D % 8 == 0 && p.D <= 256 ? avx2 : &cpu::attend_grad_scalar;
  const int G = p.H / p.Hk;
  const long kv_rows = static_cast<long>(p.B) * p.Hk * p.Lk * p.D;
  std::fill(g.dk, g.dk + kv_rows, 0.0f);
  std::fill(g.dv, g.dv + kv_rows, 0.0f);
  auto run = [&](int t) {
    std::vector<float> scratch(2 * static_cast<size_t>(p.Lk));
    const int b = t / p.Hk, kv = t % p.Hk;
    for (int h = kv * G; h < (kv + 1) * G; ++h) kernel(p, g, b, h, scratch.data());
  };
  const long work = static_cast<long>(p.B) * p.H * p.L * p.Lk * p.D;
  if (work < 64 * 1024 || p.B * p.Hk == 1) {
    for (int t = 0; t < p.B * p.Hk; ++t) run(t);
  } else {
    parallel_for(p.B * p.Hk, run);
  }
}

void cpu::run_attention(const AttnProblem& p) {
  const AttnKernel kernel = choose_kernel(p);
  const int G = p.H / p.Hk;
  const long work = static_cast<long>(p.B) * p.H * p.L * p.Lk * p.D;
  const int threads = work < 64 * 1024 ? 1 : pool_threads();
  // Key ranges: enough (B, kv head, range) tasks for about four per thread, of
  // at least 64 keys; one range when running alone.
  int chunk = p.Lk;
  if (threads > 1) {
    const int ranges = std::max(1, threads * 4 / (p.B * p.Hk));
    chunk = std::max(64, (p.Lk + ranges - 1) / ranges);
  }
  const int R = (p.Lk + chunk - 1) / chunk;
  const long rows = static_cast<long>(p.B) * p.H * R * p.L;  // partial results, (b, h, range, i)
  std::vector<float> m(rows), s(rows), o(rows * p.D);
  auto run = [&](int t) {
    const int b = t / (p.Hk * R), g = (t / R) % p.Hk, r = t % R;
    const int j0 = r * chunk, j1 = std::min(p.Lk, j0 + chunk);
    std::vector<float> scratch(j1 - j0);
    for (int h = g * G; h < (g + 1) * G; ++h) {
      const long at = ((static_cast<long>(b) * p.H + h) * R + r) * p.L;
      kernel(p, b, h, j0, j1, scratch.data(), m.data() + at, s.data() + at, o.data() + at * p.D);
    }
  };
  const int tasks = p.B * p.Hk * R;
  if (threads == 1) {
    for (int t = 0; t < tasks; ++t) run(t);
  } else {
    parallel_for(tasks, run);
  }
  // out = Σ_r e^(m_r - M) o_r / Σ_r e^(m_r - M) s_r, M = max_r m_r (finite: each row sees at least its own key).
  for (int bh = 0; bh < p.B * p.H; ++bh)
    for (int i = 0; i < p.L; ++i) {
      float M = -INFINITY;
      for (int r = 0; r < R; ++r) M = std::max(M, m[(static_cast<long>(bh) * R + r) * p.L + i]);
      float* out = p.out + (static_cast<long>(bh) * p.L + i) * p.D;
      float S = 0.0f;
      for (int d = 0; d < p.D; ++d) out[d] = 0.0f;
      for (int r = 0; r < R; ++r) {
        const long at = (static_cast<long>(bh) * R + r) * p.L + i;
        if (s[at] == 0.0f) continue;
        const float f = m[at] == M ? 1.0f : std::exp(m[at] - M);
        S += f * s[at];
        const float* part = o.data() + at * p.D;
        for (int d = 0; d < p.D; ++d) out[d] += f * part[d];
      }
      const float inv = 1.0f / S;
      for (int d = 0; d < p.D; ++d) out[d] *= inv;
    }
}

namespace {

// The composition MLX's CPU attention uses, for derivatives.
array reference_attention(const array& q, const array& k, const array& v, float scale, int window,
                          const mx::Stream& s) {
  const int H = q.shape(1), Hk = k.shape(1), L = q.shape(2), Lk = k.shape(2);
  array kk = H == Hk ? k : mx::repeat(k, H / Hk, 1, s);
  array vv = H == Hk ? v : mx::repeat(v, H / Hk, 1, s);
  array scores = mx::matmul(mx::multiply(q, array(scale), s), mx::swapaxes(kk, -1, -2, s), s);
  if (auto allowed = attention_mask(L, Lk, window, s)) scores = mx::where(*allowed, scores, array(-INFINITY), s);
  return mx::matmul(mx::softmax(scores, {-1}, /*precise=*/true, s), vv, s);
}

// The problem's pointers, strides and sizes for evaluated q, k, v.
AttnProblem problem(const mx::array& q, const mx::array& k, const mx::array& v, float scale, int window) {
  AttnProblem p{};
  p.q = q.data<float>();
  p.k = k.data<float>();
  p.v = v.data<float>();
  for (int i = 0; i < 4; ++i) {
    p.qs[i] = q.strides()[i];
    p.ks[i] = k.strides()[i];
    p.vs[i] = v.strides()[i];
  }
  p.B = q.shape(0), p.H = q.shape(1), p.L = q.shape(2), p.D = q.shape(3);
  p.Hk = k.shape(1), p.Lk = k.shape(2);
  p.scale = scale;
  p.window = window;
  return p;
}

// (q, k, v, dout) → (dq, dk, dv): the derivatives in one pass over the rows,
// recomputing each row's softmax (run_attention_grad).
class LmlabCpuAttentionGrad : public mx::Primitive {
 public:
  LmlabCpuAttentionGrad(mx::Stream stream, float scale, int window)
      : mx::Primitive(stream), scale_(scale), window_(window) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    cpu::encode(stream(), inputs, outputs).dispatch([q = mx::array::unsafe_weak_copy(inputs[0]), k = mx::array::unsafe_weak_copy(inputs[1]),
                      v = mx::array::unsafe_weak_copy(inputs[2]), d = mx::array::unsafe_weak_copy(inputs[3]),
                      dq = mx::array::unsafe_weak_copy(outputs[0]), dk = mx::array::unsafe_weak_copy(outputs[1]),
                      dv = mx::array::unsafe_weak_copy(outputs[2]), scale = scale_, window = window_]() mutable {
      cpu::AttnGrad g{};
      g.dout = d.data<float>();
      for (int i = 0; i < 4; ++i) g.dos[i] = d.strides()[i];
      g.dq = dq.data<float>();
      g.dk = dk.data<float>();
      g.dv = dv.data<float>();
      cpu::run_attention_grad(problem(q, k, v, scale, window), g);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn] LmlabCpuAttentionGrad runs on CPU streams only");
  }

  const char* name() const override { return "LmlabCpuAttentionGrad"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabCpuAttentionGrad*>(&other);
    return o && o->scale_ == scale_ && o->window_ == window_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape(), inputs[1].shape(), inputs[2].shape()};
  }

 private:
  float scale_;
  int window_;
};

class LmlabCpuAttention : public cpu::FusedCpuPrimitive {
 public:
  LmlabCpuAttention(mx::Stream stream, float scale, int window)
      : cpu::FusedCpuPrimitive(stream), scale_(scale), window_(window) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    encode(inputs, out).dispatch([q = mx::array::unsafe_weak_copy(inputs[0]), k = mx::array::unsafe_weak_copy(inputs[1]),
                      v = mx::array::unsafe_weak_copy(inputs[2]), out = mx::array::unsafe_weak_copy(out),
                      scale = scale_, window = window_]() mutable {
      AttnProblem p = problem(q, k, v, scale, window);
      p.out = out.data<float>();
      cpu::run_attention(p);
    });
  }

  const char* name() const override { return "LmlabCpuAttention"; }

  // The derivatives from lmlab's kernel (LmlabCpuAttentionGrad), not the composition.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads = mx::array::make_arrays(
        {primals[0].shape(), primals[1].shape(), primals[2].shape()}, {mx::float32, mx::float32, mx::float32},
        std::make_shared<LmlabCpuAttentionGrad>(stream(), scale_, window_),
        {primals[0], primals[1], primals[2], mx::astype(cotangents[0], mx::float32, stream())});
    std::vector<mx::array> out;
    for (int a : argnums) out.push_back(grads[a]);
    return out;
  }

  cpu::Composition composition() override {
    return [scale = scale_, window = window_, s = stream()](const std::vector<mx::array>& in) {
      return reference_attention(in[0], in[1], in[2], scale, window, s);
    };
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabCpuAttention*>(&other);
    return o && o->scale_ == scale_ && o->window_ == window_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  float scale_;
  int window_;
};

}  // namespace

std::optional<array> attention_mask(int L, int Lk, int window, mx::StreamOrDevice s) {
  if (L <= 1 && (window <= 0 || Lk <= window)) return std::nullopt;
  // Query i sits at position Lk - L + i: keys j ≤ it, and with a window j > it - window.
  array qi = mx::expand_dims(mx::add(mx::arange(L, mx::int32, s), array(Lk - L, mx::int32), s), 1, s);
  array kj = mx::expand_dims(mx::arange(Lk, mx::int32, s), 0, s);
  array allowed = mx::less_equal(kj, qi, s);
  if (window > 0) allowed = mx::logical_and(allowed, mx::greater(kj, mx::subtract(qi, array(window, mx::int32), s), s), s);
  return allowed;
}

bool cpu_attention_is_native(const array& q, const array& k, const array& v, mx::StreamOrDevice s) {
  if (!cpu::on_cpu(s)) return false;
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return false;
  if (q.dtype() != mx::float32 || k.dtype() != mx::float32 || v.dtype() != mx::float32) return false;
  const int B = q.shape(0), H = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int Hk = k.shape(1), Lk = k.shape(2);
  if (L < 1 || Lk < L || Hk < 1 || H % Hk != 0) return false;
  return k.shape() == mx::Shape{B, Hk, Lk, D} && v.shape() == k.shape();
}

array cpu_attention(const array& q, const array& k, const array& v, float scale, int window, mx::StreamOrDevice s) {
  if (!cpu_attention_is_native(q, k, v, s))
    throw std::invalid_argument("[lmlab::nn::cpu_attention] unsupported inputs (see cpu_attention_is_native)");
  return array(q.shape(), mx::float32, std::make_shared<LmlabCpuAttention>(mx::to_stream(s), scale, window), {q, k, v});
}

}  // namespace lmlab::nn
