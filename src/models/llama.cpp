// Llama family forward pass, after mlx-lm models/llama.py.
#include <cmath>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "models/llama.h"
#include "nn/decoder_step.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::models {

LlamaArgs LlamaArgs::from_config(const ModelConfig& c) {
  LlamaArgs a;
  a.rms_norm_eps = c.raw.value("rms_norm_eps", 1e-6f);
  a.attention_bias = c.raw.value("attention_bias", false);
  a.mlp_bias = c.raw.value("mlp_bias", false);
  a.rope = nn::make_rope(c.raw, c.head_dim);
  return a;
}

namespace {

struct LayerNames {
  std::string in_norm, post_norm, q, k, v, o, q_norm, k_norm, mlp;
  std::string hook_attn, hook_mlp, hook_residual;
  std::string gate, up, down;  // mlp + ".gate_proj" etc.
};

class Llama : public Model {
 public:
  Llama(const ModelConfig& c, LlamaArgs a, Weights w, mx::Dtype dtype)
      : Model(c, std::move(w), dtype), args_(std::move(a)) {
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      auto p = fmt::format("model.layers.{}.", i);
      names_.push_back({p + "input_layernorm", p + "post_attention_layernorm",
                        p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj",
                        p + "self_attn.o_proj", p + "self_attn.q_norm", p + "self_attn.k_norm",
                        p + "mlp", fmt::format("layers.{}.self_attn", i),
                        fmt::format("layers.{}.mlp.act", i),
                        fmt::format("layers.{}.residual", i), p + "mlp.gate_proj", p + "mlp.up_proj",
                        p + "mlp.down_proj"});
    }
  }

  array forward(const array& tokens, nn::KVCache* cache, nn::Hooks* hooks) const override {
    if (tokens.ndim() != 2)
      throw std::invalid_argument(fmt::format("[forward] tokens must be (B, L), got {} dims", tokens.ndim()));
    const int offset = cache ? cache->offset() : 0;
    array h = nn::embedding(weights_, "model.embed_tokens", tokens, dtype_);
    if (hooks) {
      h = hooks->apply("embed", h);
      if (hooks->residual) hooks->capture("embed", h);
    }
    // A few new tokens on the CPU with nothing hooked: one fused node per block.
    const int rows = tokens.shape(0) * tokens.shape(1);
    std::optional<std::pair<array, array>> rope;
    if (cache && !hooks && rows <= nn::kDecoderStepMaxRows && h.dtype() == mx::float32 &&
        mx::default_device() == mx::Device::cpu)
      rope = nn::rope_tables(args_.rope, offset, tokens.shape(1));
    for (int l = 0; l < config_.num_hidden_layers; ++l) {
      const LayerNames& n = names_[l];
      if (rope && fused_step(l, h, *cache, offset, *rope)) continue;
      array x = nn::rms_norm(weights_, n.in_norm, h, args_.rms_norm_eps);
      h = mx::add(h, self_attention(l, x, cache, offset, hooks));
      x = nn::rms_norm(weights_, n.post_norm, h, args_.rms_norm_eps);
      h = mx::add(h, nn::swiglu_mlp(weights_, n.mlp, x, hooks, l, n.hook_mlp));
      if (hooks && hooks->wants(l)) {
        h = hooks->apply(n.hook_residual, h);
        if (hooks->residual) hooks->capture(n.hook_residual, h);
      }
    }
    return head(h);
  }

  array head(const array& hidden) const override {
    array h = nn::rms_norm(weights_, "model.norm", hidden, args_.rms_norm_eps);
    return config_.tie_word_embeddings ? nn::embedding_as_linear(weights_, "model.embed_tokens", h)
                                       : nn::linear(weights_, "lm_head", h);
  }

 private:
  // Module `prefix` in the form nn::decoder_step reads, if it is affine-quantized.
  std::optional<nn::QuantizedLinear> quantized(const std::string& prefix) const {
    const QuantSpec* q = weights_.quant(prefix);
    const array* biases = weights_.find(prefix + ".biases");
    if (!q || !biases || q->mode != "affine") return std::nullopt;
    const array* bias = weights_.find(prefix + ".bias");
    return nn::QuantizedLinear{weights_.at(prefix + ".weight"), weights_.at(prefix + ".scales"), *biases,
                               bias ? std::optional<array>(*bias) : std::nullopt, q->group_size, q->bits,
                               q->activations};
  }

  // Block l as nn::decoder_step when its weights and the cache allow; false
  // leaves h for the composed block.
  bool fused_step(int l, array& h, nn::KVCache& cache, int offset,
                  const std::pair<array, array>& rope) const {
    const LayerNames& n = names_[l];
    std::optional<nn::QuantizedLinear> proj[7];
    const std::string* names[7] = {&n.q, &n.k, &n.v, &n.o, &n.gate, &n.up, &n.down};
    for (int i = 0; i < 7; ++i)
      if (!(proj[i] = quantized(*names[i]))) return false;
    auto opt = [&](const std::string& name) {
      const array* a = args_.qk_norm ? weights_.find(name) : nullptr;
      return a ? std::optional<array>(*a) : std::nullopt;
    };
    nn::DecoderLayerArrays w{weights_.at(n.in_norm + ".weight"), weights_.at(n.post_norm + ".weight"),
                             *proj[0], *proj[1], *proj[2], *proj[3], *proj[4], *proj[5], *proj[6],
                             opt(n.q_norm + ".weight"), opt(n.k_norm + ".weight")};
    const int B = h.shape(0), L = h.shape(1);
    const int Hk = config_.num_key_value_heads, Dh = config_.head_dim;
    nn::DecoderStepShape shape{config_.num_attention_heads, Hk, Dh, args_.rope.dims,
                               args_.rope.traditional, args_.rope.mscale, args_.rms_norm_eps,
                               1.0f / std::sqrt(static_cast<float>(Dh))};
    const mx::Shape kv{B, Hk, L, Dh};
    auto [keys, values] = cache.reserve(l, kv, kv, h.dtype(), L);
    if (!nn::decoder_step_is_native(h, w, shape, keys, values, offset)) return false;
    auto step = nn::decoder_step(h, w, shape, rope.first, rope.second, keys, values, offset);
    cache.commit(l, std::move(step.keys), std::move(step.values), L);
    h = std::move(step.h);
    return true;
  }

  array self_attention(int l, const array& x, nn::KVCache* cache, int offset,
                       nn::Hooks* hooks) const {
    const LayerNames& n = names_[l];
    const int B = x.shape(0), L = x.shape(1);
    const int H = config_.num_attention_heads, Hk = config_.num_key_value_heads;
    const int Dh = config_.head_dim;
    auto heads = [&](const std::string& proj, int nh, const std::string* norm) {
      array t = mx::reshape(nn::linear(weights_, proj, x), {B, L, nh, Dh});
      if (norm) t = nn::rms_norm(weights_, *norm, t, args_.rms_norm_eps);
      return mx::transpose(t, {0, 2, 1, 3});
    };
    array q = args_.rope(heads(n.q, H, args_.qk_norm ? &n.q_norm : nullptr), offset);
    array k = args_.rope(heads(n.k, Hk, args_.qk_norm ? &n.k_norm : nullptr), offset);
    array v = heads(n.v, Hk, nullptr);
    const bool hook = hooks && hooks->wants(l);
    if (hook) {
      q = hooks->apply(n.hook_attn + ".q", q);
      k = hooks->apply(n.hook_attn + ".k", k);
      v = hooks->apply(n.hook_attn + ".v", v);
      if (hooks->qkv) {
        hooks->capture(n.hook_attn + ".q", q);
        hooks->capture(n.hook_attn + ".k", k);
        hooks->capture(n.hook_attn + ".v", v);
      }
    }
    if (cache) std::tie(k, v) = cache->update(l, k, v);
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
    array o = nn::attention(q, k, v, scale, hooks, l, n.hook_attn);
    o = mx::reshape(mx::transpose(o, {0, 2, 1, 3}), {B, L, H * Dh});
    return nn::linear(weights_, n.o, o);
  }

  LlamaArgs args_;
  std::vector<LayerNames> names_;
};

void check_family_tensors(const Weights& w, const ModelConfig& c, const LlamaArgs& a) {
  const int D = c.hidden_size, H = c.num_attention_heads, Hk = c.num_key_value_heads;
  const int Dh = c.head_dim, I = c.intermediate_size;
  check_linear(w, "model.embed_tokens", c.vocab_size, D);
  check_vector(w, "model.norm.weight", D);
  if (!c.tie_word_embeddings) check_linear(w, "lm_head", c.vocab_size, D);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    auto p = fmt::format("model.layers.{}.", i);
    check_vector(w, p + "input_layernorm.weight", D);
    check_vector(w, p + "post_attention_layernorm.weight", D);
    check_linear(w, p + "self_attn.q_proj", H * Dh, D);
    check_linear(w, p + "self_attn.k_proj", Hk * Dh, D);
    check_linear(w, p + "self_attn.v_proj", Hk * Dh, D);
    check_linear(w, p + "self_attn.o_proj", D, H * Dh);
    check_linear(w, p + "mlp.gate_proj", I, D);
    check_linear(w, p + "mlp.up_proj", I, D);
    check_linear(w, p + "mlp.down_proj", D, I);
    if (a.qk_norm) {
      check_vector(w, p + "self_attn.q_norm.weight", Dh);
      check_vector(w, p + "self_attn.k_norm.weight", Dh);
    }
    if (a.qkv_bias || a.attention_bias) {
      check_vector(w, p + "self_attn.q_proj.bias", H * Dh);
      check_vector(w, p + "self_attn.k_proj.bias", Hk * Dh);
      check_vector(w, p + "self_attn.v_proj.bias", Hk * Dh);
    }
  }
}

}  // namespace

std::unique_ptr<Model> make_llama_family(const ModelConfig& config, LlamaArgs args,
                                         Weights weights, mx::Dtype dtype) {
  drop_unused(weights, config);
  cast_floats(weights, dtype);
  check_family_tensors(weights, config, args);
  return std::make_unique<Llama>(config, std::move(args), std::move(weights), dtype);
}

}  // namespace lmlab::models
