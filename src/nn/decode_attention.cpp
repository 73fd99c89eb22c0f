// nn::decode_attention: the MLX primitive (LmlabDecodeAttention), the portable
// scalar kernel, and the choice of kernel (attention_avx2.cpp when the CPU has AVX2).
#include "nn/decode_attention.h"

#include <cmath>
#include <stdexcept>
#include <variant>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/attention_kernels.h"
#include "nn/compute_pool.h"
#include "nn/cpu_arrays.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace detail {

void attend_scalar(const AttnProblem& p, int b, int h, float* scores) {
  const int kv = h / (p.H / p.Hk);
  const float* kbase = p.k + b * p.ks[0] + kv * p.ks[1];
  const float* vbase = p.v + b * p.vs[0] + kv * p.vs[1];
  for (int i = 0; i < p.L; ++i) {
    const float* q = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
    const int n = p.Lk - p.L + i + 1;
    float mx = -INFINITY;
    for (int j = 0; j < n; ++j) {
      float s = 0.0f;
      for (int d = 0; d < p.D; ++d) s += p.scale * q[d * p.qs[3]] * kbase[j * p.ks[2] + d * p.ks[3]];
      scores[j] = s;
      mx = std::max(mx, s);
    }
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) sum += scores[j] = std::exp(scores[j] - mx);
    float* out = p.out + ((static_cast<long>(b) * p.H + h) * p.L + i) * p.D;
    for (int d = 0; d < p.D; ++d) {
      float acc = 0.0f;
      for (int j = 0; j < n; ++j) acc += scores[j] * vbase[j * p.vs[2] + d * p.vs[3]];
      out[d] = acc / sum;
    }
  }
}

}  // namespace detail

namespace {

using detail::AttnKernel;
using detail::AttnProblem;

AttnKernel choose_kernel(const AttnProblem& p) {
  static const AttnKernel avx2 = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return detail::avx2_attend();
#endif
    return AttnKernel{nullptr};
  }();
  const bool unit_d = p.qs[3] == 1 && p.ks[3] == 1 && p.vs[3] == 1;
  if (avx2 && unit_d && p.D % 8 == 0 && p.D <= 256) return avx2;
  return &detail::attend_scalar;
}

}  // namespace

void detail::run_attention(const AttnProblem& p) {
  const AttnKernel kernel = choose_kernel(p);
  const int tasks = p.B * p.H;
  const long work = static_cast<long>(tasks) * p.L * p.Lk * p.D;
  auto run = [&](int t) {
    std::vector<float> scratch(p.Lk);
    kernel(p, t / p.H, t % p.H, scratch.data());
  };
  if (work < 64 * 1024) {
    for (int t = 0; t < tasks; ++t) run(t);
  } else {
    detail::parallel_for(tasks, run);
  }
}

namespace {

// The composition MLX's CPU attention uses, for derivatives.
array reference_attention(const array& q, const array& k, const array& v, float scale, const mx::Stream& s) {
  const int H = q.shape(1), Hk = k.shape(1), L = q.shape(2), Lk = k.shape(2);
  array kk = H == Hk ? k : mx::repeat(k, H / Hk, 1, s);
  array vv = H == Hk ? v : mx::repeat(v, H / Hk, 1, s);
  array scores = mx::matmul(mx::multiply(q, array(scale), s), mx::swapaxes(kk, -1, -2, s), s);
  if (L > 1) {
    array qi = mx::add(mx::arange(L, mx::int32, s), array(Lk - L, mx::int32), s);
    array allowed = mx::less_equal(mx::expand_dims(mx::arange(Lk, mx::int32, s), 0, s), mx::expand_dims(qi, 1, s), s);
    scores = mx::where(allowed, scores, array(-INFINITY), s);
  }
  return mx::matmul(mx::softmax(scores, {-1}, /*precise=*/true, s), vv, s);
}

class LmlabDecodeAttention : public detail::FusedCpuPrimitive {
 public:
  LmlabDecodeAttention(mx::Stream stream, float scale) : detail::FusedCpuPrimitive(stream), scale_(scale) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    encode(inputs, out).dispatch([q = mx::array::unsafe_weak_copy(inputs[0]), k = mx::array::unsafe_weak_copy(inputs[1]),
                      v = mx::array::unsafe_weak_copy(inputs[2]), out = mx::array::unsafe_weak_copy(out),
                      scale = scale_]() mutable {
      AttnProblem p{};
      p.q = q.data<float>();
      p.k = k.data<float>();
      p.v = v.data<float>();
      p.out = out.data<float>();
      for (int i = 0; i < 4; ++i) {
        p.qs[i] = q.strides()[i];
        p.ks[i] = k.strides()[i];
        p.vs[i] = v.strides()[i];
      }
      p.B = q.shape(0), p.H = q.shape(1), p.L = q.shape(2), p.D = q.shape(3);
      p.Hk = k.shape(1), p.Lk = k.shape(2);
      p.scale = scale;
      detail::run_attention(p);
    });
  }

  const char* name() const override { return "LmlabDecodeAttention"; }

  detail::Composition composition() override {
    return [scale = scale_, s = stream()](const std::vector<mx::array>& in) {
      return reference_attention(in[0], in[1], in[2], scale, s);
    };
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabDecodeAttention*>(&other);
    return o && o->scale_ == scale_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  float scale_;
};

}  // namespace

bool decode_attention_is_native(const array& q, const array& k, const array& v, mx::StreamOrDevice s) {
  if (!detail::on_cpu(s)) return false;
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return false;
  if (q.dtype() != mx::float32 || k.dtype() != mx::float32 || v.dtype() != mx::float32) return false;
  const int B = q.shape(0), H = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int Hk = k.shape(1), Lk = k.shape(2);
  if (L < 1 || L > kDecodeAttentionMaxRows || Lk < L || Hk < 1 || H % Hk != 0) return false;
  return k.shape() == mx::Shape{B, Hk, Lk, D} && v.shape() == k.shape();
}

array decode_attention(const array& q, const array& k, const array& v, float scale, mx::StreamOrDevice s) {
  if (!decode_attention_is_native(q, k, v, s))
    throw std::invalid_argument("[lmlab::nn::decode_attention] unsupported inputs (see decode_attention_is_native)");
  return array(q.shape(), mx::float32, std::make_shared<LmlabDecodeAttention>(mx::to_stream(s), scale), {q, k, v});
}

}  // namespace lmlab::nn
