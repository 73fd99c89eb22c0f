// nn::DecoderBlock: the composed block (after mlx-lm's llama.py, qwen3.py and
// gemma3_text.py) and the choice of the fused CPU step.
#include "nn/block.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <mutex>
#include <string_view>

#include <fmt/format.h>
#include <mlx/distributed/ops.h>
#include <mlx/mlx.h>

#include "lmlab/core.h"
#include "lmlab/ggml.h"
#include "nn/cpu/cpu_attention.h"
#include "nn/cpu/decoder_step.h"
#include "nn/cuda/decoder_step.h"
#include "nn/cuda/gemv_form.h"
#include "nn/cpu/swiglu.h"
#include "nn/linear.h"
#include "nn/moe.h"

namespace mx = mlx::core;

namespace lmlab::nn {

float BlockSpec::scale() const {
  return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

BlockNames BlockNames::llama(int layer) {
  const std::string p = fmt::format("model.layers.{}.", layer);
  BlockNames n;
  n.in_norm = p + "input_layernorm";
  n.mlp_norm = p + "post_attention_layernorm";
  n.q = p + "self_attn.q_proj";
  n.k = p + "self_attn.k_proj";
  n.v = p + "self_attn.v_proj";
  n.o = p + "self_attn.o_proj";
  n.q_norm = p + "self_attn.q_norm";
  n.k_norm = p + "self_attn.k_norm";
  n.gate = p + "mlp.gate_proj";
  n.up = p + "mlp.up_proj";
  n.down = p + "mlp.down_proj";
  n.hook_attn = fmt::format("layers.{}.self_attn", layer);
  n.hook_mlp = fmt::format("layers.{}.mlp.act", layer);
  n.hook_residual = fmt::format("layers.{}.residual", layer);
  return n;
}

std::vector<const std::string*> BlockNames::projections() const { return {&q, &k, &v, &o, &gate, &up, &down}; }

array rms_norm(const Weights& w, const std::string& name, const array& x, float eps, float offset) {
  const array& weight = w.at(name + ".weight");
  return mx::fast::rms_norm(x, offset == 0.0f ? weight : mx::add(weight, array(offset, weight.dtype())), eps);
}

namespace {

// Attention with the probabilities computed explicitly, for hooks that capture them.
array explicit_attention(const array& q, const array& k, const array& v, float scale, int window, Hooks& hooks,
                         const std::string& name) {
  const int H = q.shape(1), Hk = k.shape(1), L = q.shape(2), Lk = k.shape(2);
  array kk = H == Hk ? k : mx::repeat(k, H / Hk, 1);
  array vv = H == Hk ? v : mx::repeat(v, H / Hk, 1);
  array scores = mx::multiply(mx::matmul(q, mx::swapaxes(kk, -1, -2)), array(scale, q.dtype()));
  if (auto allowed = attention_mask(L, Lk, window))
    scores = mx::where(*allowed, scores, array(-std::numeric_limits<float>::infinity(), scores.dtype()));
  array probs = mx::softmax(mx::astype(scores, mx::float32), {-1}, /*precise=*/true);
  hooks.capture(name + ".probs", probs);
  return mx::matmul(mx::astype(probs, v.dtype()), vv);
}

// softmax(scale q kᵀ + mask) v: lmlab's CPU kernel, MLX's fused attention, or
// the explicit form when hooks capture the probabilities.
array attend(const array& q, const array& k, const array& v, float scale, int window, Hooks* hooks, bool hooked,
             const std::string& name) {
  if (hooked && hooks->attention) return explicit_attention(q, k, v, scale, window, *hooks, name);
  if (cpu_attention_is_native(q, k, v)) return cpu_attention(q, k, v, scale, window);
  const int L = q.shape(2), Lk = k.shape(2);
  if (window <= 0) return mx::fast::scaled_dot_product_attention(q, k, v, scale, L > 1 ? "causal" : "");
  std::optional<array> mask = attention_mask(L, Lk, window);
  return mx::fast::scaled_dot_product_attention(q, k, v, scale, mask ? "array" : "", mask);
}

// raw_blocks: whether the step takes GGML block modes (the CPU step does).
std::optional<QuantizedLinear> fusable(const Linear& l, bool raw_blocks) {
  if (l.quant && !l.adapter && raw_blocks && l.ggml_blocks()) {
    const io::GgmlType type = io::ggml_mode_type(l.quant->mode);
    return QuantizedLinear{l.weight, l.weight, l.weight, l.bias, l.quant->group_size, l.quant->bits, "",
                           static_cast<int>(type)};
  }
  if (!l.quant || l.adapter || l.quant->mode != "affine" || !l.biases) return std::nullopt;
  return QuantizedLinear{l.weight, *l.scales, *l.biases, l.bias, l.quant->group_size, l.quant->bits,
                         l.quant->activations};
}

const std::pair<array, array>& rope_tables_for(ForwardState& st, const RoPE& rope, int L) {
  for (auto& [r, t] : st.rope_tables)
    if (r == &rope) return t;
  st.rope_tables.emplace_back(&rope, cpu::rope_tables(rope, st.offset, L));
  return st.rope_tables.back().second;
}

// The rotation's angular frequencies (rope_dims / 2, float32) for the GPU step,
// as fast::rope's definition has them: base^(-i / half), or 1 / freqs.
const array& rope_inverse_frequencies(ForwardState& st, const RoPE& rope) {
  for (auto& [r, f] : st.rope_frequencies)
    if (r == &rope) return f;
  const int half = rope.dims / 2;
  array inv = rope.freqs ? mx::reciprocal(mx::astype(*rope.freqs, mx::float32))
                         : mx::exp(mx::multiply(mx::arange(0, -half, -1, mx::float32),
                                                array(std::log(rope.base) / half, mx::float32)));
  st.rope_frequencies.emplace_back(&rope, inv);
  return st.rope_frequencies.back().second;
}

}  // namespace

using FusedArrays = std::optional<std::pair<DecoderLayerArrays, DecoderStepShape>>;

struct DecoderBlock::FusedMemo {
  std::mutex mutex;
  uint64_t stamp = 0;  // 0: none yet
  FusedArrays arrays;
  uint64_t gpu_stamp = 0;
  mx::Dtype gpu_dtype = mx::float16;
  FusedArrays gpu_arrays;  // with every projection in its GEMV form
};

DecoderBlock::DecoderBlock(int layer, BlockSpec spec, BlockNames names)
    : layer_(layer), spec_(std::move(spec)), names_(std::move(names)), memo_(std::make_shared<FusedMemo>()) {
  if (!spec_.rope) throw std::invalid_argument(fmt::format("[block] layer {}: no RoPE given", layer));
}

array DecoderBlock::norm(const Weights& w, const std::string& name, const array& x) const {
  return rms_norm(w, name, x, spec_.norm_eps, spec_.norm_offset);
}

array DecoderBlock::operator()(const Weights& w, const array& h, ForwardState& st) const {
  if (auto out = fused(w, h, st)) return *out;
  const bool hooks_here = hooked(st);
  array a = attention(w, norm(w, names_.in_norm, h), st);
  if (spec_.sandwich_norms) a = norm(w, names_.attn_out_norm, a);
  array h1 = mx::add(h, a);
  array m = mlp(w, norm(w, names_.mlp_norm, h1), st);
  if (spec_.sandwich_norms) m = norm(w, names_.mlp_out_norm, m);
  array out = mx::add(h1, m);
  if (hooks_here) {
    out = st.hooks->apply(names_.hook_residual, out);
    if (st.hooks->residual) st.hooks->capture(names_.hook_residual, out);
  }
  return out;
}

array DecoderBlock::attention(const Weights& w, const array& x, ForwardState& st) const {
  const int B = x.shape(0), L = x.shape(1), Dh = spec_.head_dim;
  auto heads = [&](const std::string& proj, int n, const std::string* norm_name) {
    array t = mx::reshape(Linear::view(w, proj)(x, st.training), {B, L, n, Dh});
    if (norm_name) t = norm(w, *norm_name, t);
    return mx::transpose(t, {0, 2, 1, 3});
  };
  const RoPE& rope = *spec_.rope;
  array q = rope(heads(names_.q, spec_.heads, spec_.qk_norm ? &names_.q_norm : nullptr), st.offset);
  array k = rope(heads(names_.k, spec_.kv_heads, spec_.qk_norm ? &names_.k_norm : nullptr), st.offset);
  array v = heads(names_.v, spec_.kv_heads, nullptr);
  const bool hooked = this->hooked(st);
  if (hooked) {
    const std::string& p = names_.hook_attn;
    q = st.hooks->apply(p + ".q", q);
    k = st.hooks->apply(p + ".k", k);
    v = st.hooks->apply(p + ".v", v);
    if (st.hooks->qkv) {
      st.hooks->capture(p + ".q", q);
      st.hooks->capture(p + ".k", k);
      st.hooks->capture(p + ".v", v);
    }
  }
  if (st.cache) std::tie(k, v) = st.cache->update(layer_, k, v);
  array o = attend(q, k, v, spec_.scale(), spec_.sliding_window, st.hooks, hooked, names_.hook_attn);
  o = mx::reshape(mx::transpose(o, {0, 2, 1, 3}), {B, L, spec_.heads * Dh});
  return project_to_all(w, names_.o, o, st.training);
}

array DecoderBlock::mlp(const Weights& w, const array& x, ForwardState& st) const {
  if (spec_.mlp == MlpKind::moe) {
    std::function<array(const array&)> act;
    if (hooked(st))
      act = [&](const array& a) {
        array edited = st.hooks->apply(names_.hook_mlp, a);
        if (st.hooks->mlp) st.hooks->capture(names_.hook_mlp, edited);
        return edited;
      };
    return moe_mlp(w, spec_, names_, x, st.training, act);
  }
  array gate = Linear::view(w, names_.gate)(x, st.training);
  array up = Linear::view(w, names_.up)(x, st.training);
  array act = spec_.activation == Activation::silu ? swiglu(gate, up) : geglu(gate, up);
  if (hooked(st)) {
    act = st.hooks->apply(names_.hook_mlp, act);
    if (st.hooks->mlp) st.hooks->capture(names_.hook_mlp, act);
  }
  return project_to_all(w, names_.down, act, st.training);
}

array DecoderBlock::project_to_all(const Weights& w, const std::string& name, const array& x, bool training) const {
  Linear l = Linear::view(w, name);
  if (!spec_.group) return l(x, training);
  // mlx-lm's ShardedToAllLinear: each rank multiplies its slice of the inputs
  // by its slice of W's columns; the sum over ranks is x Wᵀ, then the bias.
  std::optional<array> bias = std::move(l.bias);
  l.bias.reset();
  array y = mx::distributed::all_sum(l(x, training), *spec_.group);
  return bias ? mx::add(y, *bias) : y;
}

bool DecoderBlock::hooked(const ForwardState& st) const {
  if (!st.hooks || !st.hooks->wants(layer_)) return false;
  if (!spec_.group) return true;
  if (st.hooks->attention || st.hooks->qkv || st.hooks->mlp || st.hooks->edit)
    throw Unsupported(fmt::format(
        "[block] layer {}: under tensor parallelism a rank holds {} of the model's heads, so attention, q/k/v and "
        "MLP captures and activation edits are not available; run without lmlab launch (residual captures work)",
        layer_, spec_.heads));
  return true;
}

bool DecoderBlock::fused_allowed(const array& h, const ForwardState& st, bool gpu) const {
  const int B = h.shape(0), L = h.shape(1);
  const int max_rows = gpu ? cuda::kMaxRows : cpu::kDecoderStepMaxRows;
  // Under tensor parallelism the step would need an all-sum between its
  // attention and MLP halves, and neither step routes experts: both decline,
  // and the composed block runs.
  if (spec_.group || !st.fused || !st.cache || st.hooks || st.training || B * L > max_rows ||
      spec_.mlp != MlpKind::dense)
    return false;
  return gpu ? h.dtype() == mx::float16 || h.dtype() == mx::bfloat16 : h.dtype() == mx::float32;
}

std::optional<cuda::StackLayer> DecoderBlock::gpu_step(const Weights& w, const array& h, ForwardState& st) const {
  if (!fused_allowed(h, st, /*gpu=*/true)) return std::nullopt;
  FusedArrays fusable_arrays;
  bool known = false;
  {
    std::lock_guard lock(memo_->mutex);
    if (memo_->gpu_stamp == w.stamp() && memo_->gpu_dtype == h.dtype()) {
      fusable_arrays = memo_->gpu_arrays;
      known = true;
    }
  }
  if (!known) {
    fusable_arrays = fused_arrays(w, /*raw_blocks=*/true);
    // The GPU GEMV reads 4- and 8-bit levels: other formats as their exact 8-bit form.
    if (fusable_arrays)
      for (QuantizedLinear* p : {&fusable_arrays->first.q, &fusable_arrays->first.k, &fusable_arrays->first.v,
                                 &fusable_arrays->first.o, &fusable_arrays->first.gate, &fusable_arrays->first.up,
                                 &fusable_arrays->first.down}) {
        auto form = cuda::gemv_form(*p, h.dtype());
        if (!form) {
          fusable_arrays.reset();
          break;
        }
        *p = std::move(*form);
      }
    std::lock_guard lock(memo_->mutex);
    memo_->gpu_stamp = w.stamp();
    memo_->gpu_dtype = h.dtype();
    memo_->gpu_arrays = fusable_arrays;
  }
  if (!fusable_arrays) return std::nullopt;
  auto& [arrays, shape] = *fusable_arrays;
  const RoPE& rope = *spec_.rope;
  const int B = h.shape(0), L = h.shape(1);
  const mx::Shape kv{B, spec_.kv_heads, L, spec_.head_dim};
  auto [keys, values] = st.cache->reserve(layer_, kv, kv, h.dtype(), L);
  cuda::StackLayer l{std::move(arrays), shape, rope_inverse_frequencies(st, rope), rope.scale, keys, values};
  if (!cuda::decoder_step_is_native(h, l.w, l.shape, l.keys, l.values, st.offset)) return std::nullopt;
  return l;
}

std::optional<array> DecoderBlock::fused(const Weights& w, const array& h, ForwardState& st) const {
  const int L = h.shape(1);
  if (mx::default_device() == mx::Device::gpu) {
    auto l = gpu_step(w, h, st);
    if (!l) return std::nullopt;
    auto step = cuda::decoder_step(h, l->w, l->shape, l->inv_freq, l->rope_scale, l->keys, l->values, st.offset);
    st.cache->commit(layer_, std::move(step.keys), std::move(step.values), L);
    return std::move(step.h);
  }
  if (!fused_allowed(h, st, /*gpu=*/false)) return std::nullopt;
  auto fusable_arrays = fused_arrays(w, /*raw_blocks=*/true);
  if (!fusable_arrays) return std::nullopt;
  auto& [arrays, shape] = *fusable_arrays;
  const mx::Shape kv{h.shape(0), spec_.kv_heads, L, spec_.head_dim};
  auto [keys, values] = st.cache->reserve(layer_, kv, kv, h.dtype(), L);
  if (!cpu::decoder_step_is_native(h, arrays, shape, keys, values, st.offset)) return std::nullopt;
  const auto& [cos, sin] = rope_tables_for(st, *spec_.rope, L);
  auto step = cpu::decoder_step(h, arrays, shape, cos, sin, keys, values, st.offset);
  st.cache->commit(layer_, std::move(step.keys), std::move(step.values), L);
  return std::move(step.h);
}

namespace {
std::atomic<int>& gpu_stack_flag() {
  static std::atomic<int> on = [] {
    const char* e = std::getenv("LMLAB_GPU_STACK");
    return e && std::string_view(e) == "0" ? 0 : 1;
  }();
  return on;
}
}  // namespace

bool gpu_stack_enabled() { return gpu_stack_flag().load() != 0; }
void set_gpu_stack_enabled(bool on) { gpu_stack_flag().store(on ? 1 : 0); }

std::optional<array> DecoderBlock::fused_stack(const std::vector<DecoderBlock>& blocks, const Weights& w,
                                               const array& h, ForwardState& st) {
  if (blocks.empty() || mx::default_device() != mx::Device::gpu || !gpu_stack_enabled() || h.ndim() != 3 ||
      h.shape(1) != 1 || h.shape(0) > cuda::kMaxStackRows)
    return std::nullopt;
  std::vector<cuda::StackLayer> layers;
  layers.reserve(blocks.size());
  for (const DecoderBlock& b : blocks) {
    auto l = b.gpu_step(w, h, st);
    if (!l) return std::nullopt;  // the caches reserved stay as they are: each block reserves again
    layers.push_back(std::move(*l));
  }
  if (!cuda::decoder_stack_is_native(h, layers, st.offset)) return std::nullopt;
  auto step = cuda::decoder_stack(h, layers, st.offset);
  for (size_t i = 0; i < blocks.size(); ++i)
    st.cache->commit(blocks[i].layer_, std::move(step.keys[i]), std::move(step.values[i]), 1);
  return std::move(step.h);
}

std::optional<std::pair<DecoderLayerArrays, DecoderStepShape>> DecoderBlock::fused_arrays(const Weights& w,
                                                                                          bool raw_blocks) const {
  if (raw_blocks) {
    std::lock_guard lock(memo_->mutex);
    if (memo_->stamp == w.stamp()) return memo_->arrays;
  }
  FusedArrays found = read_fused_arrays(w, raw_blocks);
  if (raw_blocks) {
    std::lock_guard lock(memo_->mutex);
    memo_->stamp = w.stamp();
    memo_->arrays = found;
  }
  return found;
}

std::optional<std::pair<DecoderLayerArrays, DecoderStepShape>> DecoderBlock::read_fused_arrays(const Weights& w,
                                                                                               bool raw_blocks) const {
  std::optional<QuantizedLinear> p[7];
  const auto projections = names_.projections();
  for (int i = 0; i < 7; ++i)
    if (!(p[i] = fusable(Linear::view(w, *projections[i]), raw_blocks))) return std::nullopt;
  auto optional_norm = [&](bool used, const std::string& name) {
    return used ? std::optional<array>(w.at(name + ".weight")) : std::nullopt;
  };
  DecoderLayerArrays arrays{w.at(names_.in_norm + ".weight"), w.at(names_.mlp_norm + ".weight"), *p[0], *p[1], *p[2],
                            *p[3], *p[4], *p[5], *p[6],
                            optional_norm(spec_.qk_norm, names_.q_norm),
                            optional_norm(spec_.qk_norm, names_.k_norm),
                            optional_norm(spec_.sandwich_norms, names_.attn_out_norm),
                            optional_norm(spec_.sandwich_norms, names_.mlp_out_norm)};
  const RoPE& rope = *spec_.rope;
  DecoderStepShape shape{spec_.heads, spec_.kv_heads, spec_.head_dim, rope.dims, rope.traditional, rope.mscale,
                         spec_.norm_eps, spec_.scale(), spec_.sliding_window,
                         spec_.activation == Activation::gelu_tanh, spec_.norm_offset};
  return std::pair{std::move(arrays), shape};
}

RowsState::RowsState(std::vector<KVCache*> c, bool train, bool use_fused)
    : caches(std::move(c)), training(train), fused(use_fused) {
  for (KVCache* cache : caches)
    rows.push_back(ForwardState{.cache = cache, .offset = cache->offset(), .hooks = nullptr, .training = training,
                                .fused = fused});
}

std::vector<int> RowsState::offsets() const {
  std::vector<int> o;
  for (const ForwardState& r : rows) o.push_back(r.offset);
  return o;
}

array DecoderBlock::decode_rows(const Weights& w, const array& h, RowsState& st) const {
  const int B = h.shape(0);
  if (h.ndim() != 3 || h.shape(1) != 1 || B != static_cast<int>(st.caches.size()))
    throw std::invalid_argument(fmt::format("[block] decode_rows takes (B, 1, D) for {} caches", st.caches.size()));
  const bool cpu_step = mx::default_device() == mx::Device::cpu && !spec_.group && st.fused && !st.training &&
                        spec_.mlp == MlpKind::dense && h.dtype() == mx::float32 && B > 1;
  if (auto fusable_arrays = cpu_step ? fused_arrays(w, /*raw_blocks=*/true) : std::nullopt) {
    const auto& [arrays, shape] = *fusable_arrays;
    const int Hk = spec_.kv_heads, Dh = spec_.head_dim;
    const mx::Shape kv{1, Hk, 1, Dh};
    std::vector<array> keys, values;
    for (KVCache* c : st.caches) {
      auto [k, v] = c->reserve(layer_, kv, kv, h.dtype(), 1);
      keys.push_back(std::move(k));
      values.push_back(std::move(v));
    }
    const std::vector<int> offsets = st.offsets();
    if (cpu::decoder_step_rows_is_native(h, arrays, shape, keys, values, offsets)) {
      const RoPE& rope = *spec_.rope;
      const std::pair<array, array>* tables = nullptr;
      for (auto& [r, t] : st.rope_tables)
        if (r == &rope) tables = &t;
      if (!tables) {
        std::vector<array> cos, sin;
        for (int offset : offsets) {
          auto [c, s] = cpu::rope_tables(rope, offset, 1);
          cos.push_back(std::move(c));
          sin.push_back(std::move(s));
        }
        st.rope_tables.emplace_back(&rope, std::pair{mx::concatenate(cos, 0), mx::concatenate(sin, 0)});
        tables = &st.rope_tables.back().second;
      }
      auto step = cpu::decoder_step_rows(h, arrays, shape, tables->first, tables->second, keys, values, offsets);
      for (int b = 0; b < B; ++b) st.caches[b]->commit(layer_, std::move(step.keys[b]), std::move(step.values[b]), 1);
      return std::move(step.h);
    }
  }
  std::vector<array> outs;
  for (int b = 0; b < B; ++b) outs.push_back((*this)(w, mx::slice(h, {b, 0, 0}, {b + 1, 1, h.shape(2)}), st.rows[b]));
  return B == 1 ? outs[0] : mx::concatenate(outs, 0);
}

void DecoderBlock::check(const Weights& w) const {
  const int D = spec_.hidden, Dh = spec_.head_dim;
  const int q_out = spec_.heads * Dh, kv_out = spec_.kv_heads * Dh;
  check_vector(w, names_.in_norm + ".weight", D);
  check_vector(w, names_.mlp_norm + ".weight", D);
  if (spec_.sandwich_norms) {
    check_vector(w, names_.attn_out_norm + ".weight", D);
    check_vector(w, names_.mlp_out_norm + ".weight", D);
  }
  if (spec_.qk_norm) {
    check_vector(w, names_.q_norm + ".weight", Dh);
    check_vector(w, names_.k_norm + ".weight", Dh);
  }
  const bool moe = spec_.mlp == MlpKind::moe;
  if (moe) check_moe(w, spec_, names_);
  const int I = moe ? 0 : Linear::view(w, names_.gate).out_features();
  const int outs[7] = {q_out, kv_out, kv_out, D, I, I, D};
  const int ins[7] = {D, D, D, q_out, D, D, I};
  const bool biased[7] = {spec_.qkv_bias, spec_.qkv_bias, spec_.qkv_bias, spec_.o_bias,
                          spec_.mlp_bias, spec_.mlp_bias, spec_.mlp_bias};
  const auto projections = names_.projections();
  for (int i = 0; i < (moe ? 4 : 7); ++i) {
    const std::string& name = *projections[i];
    check_linear(w, name, outs[i], ins[i]);
    if (biased[i]) check_vector(w, name + ".bias", outs[i]);
    else if (w.contains(name + ".bias"))
      throw std::invalid_argument(fmt::format("[model] unexpected tensor '{}.bias': the config gives this layer no bias", name));
  }
}

}  // namespace lmlab::nn
