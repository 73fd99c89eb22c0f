// models::Transformer, after mlx-lm's models/llama.py (LlamaModel, Model).
#include "models/transformer.h"

#include <optional>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/linear.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::models {

nn::BlockSpec llama_block_spec(const ModelConfig& c) {
  nn::BlockSpec s;
  s.hidden = c.hidden_size;
  s.heads = c.num_attention_heads;
  s.kv_heads = c.num_key_value_heads;
  s.head_dim = c.head_dim;
  s.norm_eps = c.rms_norm_eps;
  s.rope = std::make_shared<const nn::RoPE>(nn::make_rope(c.raw, c.head_dim));
  return s;
}

void stack_experts(Weights& w, const std::string& experts, int n, const std::string& from, const std::string& to) {
  auto module = [&](int e) { return fmt::format("{}.{}.{}", experts, e, from); };
  if (!w.contains(module(0) + ".weight")) return;
  const QuantSpec* q = w.quant(module(0));
  const std::optional<QuantSpec> spec = q ? std::optional<QuantSpec>(*q) : std::nullopt;
  for (int e = 1; e < n; ++e) {
    const QuantSpec* qe = w.quant(module(e));
    if (static_cast<bool>(qe) != static_cast<bool>(spec) || (qe && !qe->same_format(*spec)))
      throw std::invalid_argument(fmt::format("[model] expert '{}' is quantized unlike expert 0", module(e)));
  }
  for (const char* part : {".weight", ".scales", ".biases", ".bias"}) {
    if (!w.contains(module(0) + part)) continue;
    std::vector<array> parts;
    for (int e = 0; e < n; ++e) {
      const array* a = w.find(module(e) + part);
      if (!a)
        throw std::invalid_argument(fmt::format("[model] missing tensor '{}{}' ({} experts in the config)", module(e),
                                                part, n));
      if (!parts.empty() && a->shape() != parts.front().shape())
        throw std::invalid_argument(fmt::format("[model] '{}{}' differs in shape from expert 0's", module(e), part));
      parts.push_back(*a);
    }
    w.set(to + part, mx::stack(parts));
    for (int e = 0; e < n; ++e) w.erase(module(e) + part);
  }
  for (int e = 0; e < n; ++e) w.clear_quant(module(e));
  if (spec) w.set_quant(to, *spec);
}

int config_count(const nlohmann::json& config, const char* key, const char* where, int fallback) {
  auto it = config.find(key);
  if ((it == config.end() || it->is_null()) && fallback > 0) return fallback;
  if (it == config.end() || !it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (1 << 24))
    throw std::invalid_argument(fmt::format("[{}] config.json needs a positive integer '{}'{}", where, key,
                                            it == config.end() ? "" : fmt::format(", got {}", it->dump())));
  return static_cast<int>(it->get<int64_t>());
}

std::unique_ptr<Model> make_llama_layout(const ModelConfig& c, const nn::BlockSpec& spec, Weights w,
                                         mx::Dtype dtype) {
  TransformerSpec t;
  t.norm_eps = spec.norm_eps;
  for (int l = 0; l < c.num_hidden_layers; ++l) t.blocks.emplace_back(l, spec, nn::BlockNames::llama(l));
  return std::make_unique<Transformer>(c, std::move(t), std::move(w), dtype);
}

Transformer::Transformer(ModelConfig config, TransformerSpec spec, Weights weights, mx::Dtype dtype)
    : Model(std::move(config), std::move(weights), dtype), spec_(std::move(spec)) {
  const ModelConfig& c = config_;
  if (static_cast<int>(spec_.blocks.size()) != c.num_hidden_layers)
    throw std::invalid_argument(fmt::format("[model] {} blocks for num_hidden_layers {}", spec_.blocks.size(),
                                            c.num_hidden_layers));
  const array& table = weights_.at(spec_.embed + ".weight");
  if (table.ndim() == 2 && table.shape(0) != c.vocab_size)
    throw std::invalid_argument(fmt::format("[model] the config's vocab_size {} does not match '{}.weight' ({} rows)",
                                            c.vocab_size, spec_.embed, table.shape(0)));
  nn::check_linear(weights_, spec_.embed, c.vocab_size, c.hidden_size);
  nn::check_vector(weights_, spec_.final_norm + ".weight", c.hidden_size);
  if (head_module() != spec_.embed) nn::check_linear(weights_, spec_.head, c.vocab_size, c.hidden_size);
  for (const auto& b : spec_.blocks) b.check(weights_);
}

void Transformer::set_blocks(std::vector<nn::DecoderBlock> blocks, const mx::distributed::Group& group) {
  for (const auto& b : blocks) b.check(weights_);
  spec_.blocks = std::move(blocks);
  tensor_group_ = group;
}

const std::string& Transformer::head_module() const {
  return weights_.contains(spec_.head + ".weight") ? spec_.head : spec_.embed;
}

array Transformer::forward(const array& tokens, nn::KVCache* cache, nn::Hooks* hooks) const {
  return head(blocks(tokens, cache, hooks, nullptr));
}

array Transformer::forward_blocks(const array& tokens, const BlockRunner& runner) const {
  return head(blocks(tokens, nullptr, nullptr, &runner));
}

array Transformer::hidden(const array& tokens, const BlockRunner* runner) const {
  return blocks(tokens, nullptr, nullptr, runner);
}

array Transformer::blocks(const array& tokens, nn::KVCache* cache, nn::Hooks* hooks, const BlockRunner* runner) const {
  if (tokens.ndim() != 2)
    throw std::invalid_argument(fmt::format("[forward] tokens must be (B, L), got {} dims", tokens.ndim()));
  array h = nn::embedding_rows(nn::Linear::view(weights_, spec_.embed), tokens, dtype_);
  if (spec_.embed_scale > 0.0f) h = mx::multiply(h, array(spec_.embed_scale, h.dtype()));
  if (hooks) {
    h = hooks->apply("embed", h);
    if (hooks->residual) hooks->capture("embed", h);
  }
  nn::ForwardState st{
      .cache = cache, .offset = cache ? cache->offset() : 0, .hooks = hooks, .training = training_, .fused = fused_};
  if (!runner)
    if (auto stacked = nn::DecoderBlock::fused_stack(spec_.blocks, weights_, h, st)) return *stacked;
  for (const auto& block : spec_.blocks) h = runner ? (*runner)(block, h, st) : block(weights_, h, st);
  return h;
}

array Transformer::decode_rows(const array& tokens, const std::vector<nn::KVCache*>& caches) const {
  check_rows(tokens, caches);
  array h = nn::embedding_rows(nn::Linear::view(weights_, spec_.embed), tokens, dtype_);
  if (spec_.embed_scale > 0.0f) h = mx::multiply(h, array(spec_.embed_scale, h.dtype()));
  nn::RowsState st(caches, training_, fused_);
  for (const auto& block : spec_.blocks) h = block.decode_rows(weights_, h, st);
  return head(h);
}

array Transformer::head(const array& hidden) const {
  array h = nn::rms_norm(weights_, spec_.final_norm, hidden, spec_.norm_eps, spec_.norm_offset);
  return nn::Linear::view(weights_, head_module())(h, training_);
}

}  // namespace lmlab::models
