// nn::moe_mlp, after mlx-lm's models/mixtral.py, models/qwen3_moe.py and
// models/switch_layers.py (SwitchGLU, SwitchLinear, QuantizedSwitchLinear).
#include "nn/moe.h"

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/core.h"
#include "nn/cpu/quantized_matmul.h"
#include "nn/cpu/swiglu.h"
#include "nn/linear.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace {

// a[..., begin:end] along the last axis.
array last_axis(const array& a, int begin, int end) {
  mx::Shape start(a.ndim(), 0), stop = a.shape();
  start.back() = begin;
  stop.back() = end;
  return mx::slice(a, start, stop);
}

std::string shape_str(const array& a) {
  std::string s = "(";
  for (int i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + ")";
}

// MLX's CPU gather_mm multiplies float32 only: half-precision experts are
// widened there (only the selected ones when they are fewer than all, as in decoding).
array float_gather_mm(const array& x, const array& w, const array& idx, bool sorted) {
  if (x.dtype() == mx::float32 || mx::default_device() != mx::Device::cpu)
    return mx::gather_mm(x, w, std::nullopt, idx, sorted);
  array y = static_cast<int>(idx.size()) < w.shape(0)
                ? mx::matmul(mx::astype(x, mx::float32), mx::astype(mx::take(w, idx, 0), mx::float32))
                : mx::gather_mm(mx::astype(x, mx::float32), mx::astype(w, mx::float32), std::nullopt, idx, sorted);
  return mx::astype(y, x.dtype());
}

// The LoRA adapter of stacked experts (mlx-lm's LoRASwitchLinear): each row's
// expert's low-rank product, scale · (x A_eᵀ) B_eᵀ, in the adapter's dtype.
array expert_lora(const Linear& l, const array& x, const array& idx, bool sorted, bool training) {
  const Adapter& ad = *l.adapter;
  if (ad.spec.kind != "lora")
    throw Unsupported(fmt::format("[moe] {}: stacked experts take LoRA adapters only, not {}", *l.name, ad.spec.kind));
  const array xa = mx::astype(adapter_input(ad, x, training), ad.a.dtype());
  const array z = mx::gather_mm(xa, mx::swapaxes(ad.a, -1, -2), std::nullopt, idx, sorted);
  const array y = mx::gather_mm(z, mx::swapaxes(ad.b, -1, -2), std::nullopt, idx, sorted);
  return mx::astype(mx::multiply(y, array(ad.spec.scale, y.dtype())), x.dtype());
}

// x through the experts `idx` of a stacked projection: x (..., 1, in) with
// idx broadcasting against x's batch dims → (..., 1, out).
array expert_matmul(const Linear& l, const array& x, const array& idx, bool sorted, bool training) {
  if (l.ggml_blocks())
    throw Unsupported(fmt::format("[moe] {}: experts in GGML blocks ({}) are not supported", *l.name, l.quant->mode));
  array y = l.quant ? mx::gather_qmm(x, l.weight, *l.scales, l.biases, std::nullopt, idx, /*transpose=*/true,
                                     l.quant->group_size, l.quant->bits, l.quant->mode, std::nullopt, sorted)
                    : float_gather_mm(x, mx::swapaxes(l.weight, -1, -2), idx, sorted);
  if (l.bias) y = mx::add(y, mx::expand_dims(mx::take(*l.bias, idx, 0), -2));
  return l.adapter ? mx::add(y, expert_lora(l, x, idx, sorted, training)) : y;
}

// An expert projection (E, out, in): its weight and, when quantized, scales.
void check_experts(const Weights& w, const std::string& name, int E, int out, int in) {
  const array* a = w.find(name + ".weight");
  if (!a) throw std::invalid_argument(fmt::format("[model] missing tensor '{}.weight'", name));
  int want_in = in;
  if (const QuantSpec* q = w.quant(name)) {
    if (q->mode != "affine" && q->mode != "mxfp4" && q->mode != "mxfp8" && q->mode != "nvfp4")
      throw Unsupported(fmt::format("[model] '{}': experts quantized as {} are not supported", name, q->mode));
    want_in = in * q->bits / 32;
    const array* s = w.find(name + ".scales");
    if (!s || s->ndim() != 3 || s->shape(0) != E || s->shape(1) != out || in % q->group_size != 0 ||
        s->shape(2) != in / q->group_size)
      throw std::invalid_argument(fmt::format("[model] '{}.scales' has shape {}, expected ({}, {}, {})", name,
                                              s ? shape_str(*s) : "none", E, out, in / q->group_size));
  }
  if (a->ndim() != 3 || a->shape(0) != E || a->shape(1) != out || a->shape(2) != want_in)
    throw std::invalid_argument(fmt::format("[model] '{}.weight' has shape {}, expected ({}, {}, {}) (experts, out, "
                                            "in)",
                                            name, shape_str(*a), E, out, want_in));
  if (const array* b = w.find(name + ".bias"))
    throw std::invalid_argument(
        fmt::format("[model] unexpected tensor '{}.bias' {}: the config gives the experts no bias", name, shape_str(*b)));
}

// Expert e of a stacked projection as a plain Linear (a view of its rows).
Linear expert(const Linear& l, int e) {
  auto one = [e](const array& a) {
    mx::Shape start(a.ndim(), 0), stop = a.shape();
    start[0] = e;
    stop[0] = e + 1;
    return mx::squeeze(mx::slice(a, start, stop), 0);
  };
  Linear out{.name = l.name, .weight = one(l.weight), .quant = l.quant};
  if (l.scales) out.scales = one(*l.scales);
  if (l.biases) out.biases = one(*l.biases);
  return out;
}

// Quantized experts on the CPU: each selected expert's rows go through
// lmlab's quantized-matmul kernel (Linear::base), expert by expert; MLX's CPU
// gather_qmm is a generic loop several times slower. The routing is read on
// the host (one evaluation per layer). x2 (N, D), experts (N, k) → the
// experts' outputs (N, k, D); nullopt when this path does not apply.
std::optional<array> experts_on_cpu(const Linear& gate, const Linear& up, const Linear& down, Activation activation,
                                    const array& x2, const array& experts) {
  const int N = x2.shape(0), k = experts.shape(-1);
  if (mx::default_device() != mx::Device::cpu || x2.dtype() != mx::float32) return std::nullopt;
  for (const Linear* l : {&gate, &up, &down})
    if (!l->quant || l->quant->mode != "affine" || !l->biases || l->bias || l->adapter) return std::nullopt;
  const array flat = mx::astype(mx::reshape(experts, {N * k}), mx::int32);
  mx::eval(flat);
  const int32_t* ids = flat.data<int32_t>();
  std::vector<int> order;  // slots n·k + j grouped by expert
  std::vector<array> outputs;
  for (int e = 0; e < gate.weight.shape(0); ++e) {
    std::vector<int> rows;
    for (int slot = 0; slot < N * k; ++slot)
      if (ids[slot] == e) rows.push_back(slot / k), order.push_back(slot);
    if (rows.empty()) continue;
    const array xe = mx::take(x2, array(rows.begin(), {static_cast<int>(rows.size())}, mx::int32), 0);
    const array g = expert(gate, e).base(xe), u = expert(up, e).base(xe);
    outputs.push_back(expert(down, e).base(activation == Activation::silu ? swiglu(g, u) : geglu(g, u)));
  }
  std::vector<int> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int>(i);
  const array all = mx::concatenate(outputs, 0);  // (N·k, D) in `order`
  const array back = mx::take(all, array(inverse.begin(), {N * k}, mx::int32), 0);
  return mx::reshape(back, {N, k, all.shape(-1)});
}

}  // namespace

Routes route(const array& logits, const MoeSpec& spec) {
  const int E = logits.shape(-1), k = spec.top_k;
  if (spec.routing == Routing::topk_softmax) {
    array experts = mx::stop_gradient(last_axis(mx::argpartition(mx::negative(logits), k - 1, -1), 0, k));
    array weights = mx::softmax(mx::take_along_axis(logits, experts, -1), std::vector<int>{-1}, /*precise=*/true);
    return {experts, weights};
  }
  array probs = mx::softmax(logits, std::vector<int>{-1}, /*precise=*/true);
  array experts = mx::stop_gradient(last_axis(mx::argpartition(probs, E - k, -1), E - k, E));
  array weights = mx::take_along_axis(probs, experts, -1);
  if (spec.norm_topk_prob) weights = mx::divide(weights, mx::sum(weights, -1, /*keepdims=*/true));
  return {experts, weights};
}

array moe_mlp(const Weights& w, const BlockSpec& spec, const BlockNames& names, const array& x, bool training,
              const std::function<array(const array&)>& act) {
  const Routes r = route(Linear::view(w, names.router)(x, training), spec.moe);
  const Linear gate = Linear::view(w, names.gate), up = Linear::view(w, names.up), down = Linear::view(w, names.down);
  if (!act && !training) {
    const int D = x.shape(-1);
    if (auto y = experts_on_cpu(gate, up, down, spec.activation, mx::reshape(x, {-1, D}), r.experts)) {
      mx::Shape shape = r.experts.shape();
      shape.push_back(D);
      return mx::astype(mx::sum(mx::multiply(mx::reshape(*y, shape), mx::expand_dims(r.weights, -1)), -2), x.dtype());
    }
  }
  array h = mx::expand_dims(x, {-2, -3});  // (B, L, 1, 1, D)
  array idx = r.experts;
  // Many tokens: rows sorted by expert, so each expert's weights are read once
  // (mlx-lm sorts from 64 routed rows on). Hooks see the unsorted rows.
  const bool sorted = !act && r.experts.size() >= 64;
  std::optional<array> unsort;
  if (sorted) {
    const int k = spec.moe.top_k;
    array flat = mx::flatten(r.experts);
    array order = mx::argsort(flat);
    unsort = mx::argsort(order);
    h = mx::take(mx::flatten(h, 0, -3), mx::floor_divide(order, array(k, order.dtype())), 0);  // (N, 1, D)
    idx = mx::take(flat, order, 0);
  }
  // up before gate, as mlx-lm's SwitchGLU: adapter dropout draws in its order.
  const array u = expert_matmul(up, h, idx, sorted, training);
  const array g = expert_matmul(gate, h, idx, sorted, training);
  array a = spec.activation == Activation::silu ? swiglu(g, u) : geglu(g, u);
  if (act) a = mx::expand_dims(act(mx::squeeze(a, -2)), -2);  // (B, L, k, 1, I)
  array y = expert_matmul(down, a, idx, sorted, training);
  if (sorted) {
    mx::Shape shape = r.experts.shape();
    shape.insert(shape.end(), {1, y.shape(-1)});
    y = mx::reshape(mx::take(y, *unsort, 0), shape);
  }
  y = mx::squeeze(y, -2);  // (B, L, k, D)
  return mx::astype(mx::sum(mx::multiply(y, mx::expand_dims(r.weights, -1)), -2), y.dtype());
}

void check_moe(const Weights& w, const BlockSpec& spec, const BlockNames& names) {
  const int E = spec.moe.experts, D = spec.hidden;
  if (E < 1 || spec.moe.top_k < 1 || spec.moe.top_k > E)
    throw std::invalid_argument(
        fmt::format("[model] {} experts with {} per token: need 1 <= experts per token <= experts", E, spec.moe.top_k));
  check_linear(w, names.router, E, D);
  const int I = spec.moe.intermediate;
  check_experts(w, names.gate, E, I, D);
  check_experts(w, names.up, E, I, D);
  check_experts(w, names.down, E, D, I);
}

}  // namespace lmlab::nn
