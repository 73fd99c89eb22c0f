#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/nn.h"
#include "nn/cpu_attention.h"
#include "nn/quantized_matmul.h"
#include "nn/swiglu.h"

namespace mx = mlx::core;

namespace lmlab::nn {

array linear(const Weights& w, const std::string& prefix, const array& x) {
  const array& weight = w.at(prefix + ".weight");
  array y = [&] {
    if (const QuantSpec* q = w.quant(prefix)) {
      std::optional<array> biases;
      if (auto* b = w.find(prefix + ".biases")) biases = *b;
      return quantized_matmul(x, weight, w.at(prefix + ".scales"), biases, q->group_size, q->bits,
                              q->mode, q->activations);
    }
    return mx::matmul(x, mx::transpose(weight));
  }();
  if (auto* b = w.find(prefix + ".bias")) y = mx::add(y, *b);
  return y;
}

array embedding(const Weights& w, const std::string& prefix, const array& ids, mx::Dtype dtype) {
  const array& table = w.at(prefix + ".weight");
  if (const QuantSpec* q = w.quant(prefix)) {
    auto rows = [&](const array& a) { return mx::take(a, ids, 0); };
    std::optional<array> biases;
    if (auto* b = w.find(prefix + ".biases")) biases = rows(*b);
    return mx::dequantize(rows(table), rows(w.at(prefix + ".scales")), biases, q->group_size,
                          q->bits, q->mode, std::nullopt, dtype);
  }
  return mx::astype(mx::take(table, ids, 0), dtype);
}

array embedding_as_linear(const Weights& w, const std::string& prefix, const array& x) {
  return linear(w, prefix, x);
}

array rms_norm(const Weights& w, const std::string& prefix, const array& x, float eps) {
  return mx::fast::rms_norm(x, w.at(prefix + ".weight"), eps);
}

array swiglu_mlp(const Weights& w, const std::string& prefix, const array& x, Hooks* hooks,
                 int layer, const std::string& hook_name) {
  array gate = linear(w, prefix + ".gate_proj", x);
  array act = swiglu(gate, linear(w, prefix + ".up_proj", x));
  if (hooks && hooks->wants(layer)) {
    act = hooks->apply(hook_name, act);
    if (hooks->mlp) hooks->capture(hook_name, act);
  }
  return linear(w, prefix + ".down_proj", act);
}

bool Hooks::wants(int layer) const {
  return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}

void Hooks::capture(const std::string& name, const array& value) {
  captured.insert_or_assign(name, value);
}

array Hooks::apply(const std::string& name, const array& value) const {
  return edit ? edit(name, value) : value;
}

array attention(const array& q, const array& k, const array& v, float scale, Hooks* hooks,
                int layer, const std::string& prefix) {
  const bool explicit_probs = hooks && hooks->attention && hooks->wants(layer);
  const int L = q.shape(2);
  if (!explicit_probs) {
    if (cpu_attention_is_native(q, k, v)) return cpu_attention(q, k, v, scale);
    return mx::fast::scaled_dot_product_attention(q, k, v, scale, L > 1 ? "causal" : "");
  }
  // Plain composition: expand kv heads for GQA, mask, softmax in float32.
  const int H = q.shape(1), Hk = k.shape(1), Lk = k.shape(2);
  array kk = k, vv = v;
  if (H != Hk) {
    kk = mx::repeat(k, H / Hk, 1);
    vv = mx::repeat(v, H / Hk, 1);
  }
  array scores = mx::multiply(mx::matmul(q, mx::swapaxes(kk, -1, -2)), array(scale, q.dtype()));
  if (L > 1) {
    // Query i (absolute position Lk-L+i) sees keys j <= Lk-L+i.
    array qi = mx::add(mx::arange(L, mx::int32), array(Lk - L, mx::int32));
    array kj = mx::arange(Lk, mx::int32);
    array allowed = mx::less_equal(mx::expand_dims(kj, 0), mx::expand_dims(qi, 1));
    scores = mx::where(allowed, scores, array(-std::numeric_limits<float>::infinity(), scores.dtype()));
  }
  array probs = mx::softmax(mx::astype(scores, mx::float32), {-1}, /*precise=*/true);
  hooks->capture(prefix + ".probs", probs);
  return mx::matmul(mx::astype(probs, v.dtype()), vv);
}

}  // namespace lmlab::nn
