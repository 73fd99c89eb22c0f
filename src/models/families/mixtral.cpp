// Mixtral (mlx-lm models/mixtral.py): Llama attention (head_dim = hidden /
// heads) with every MLP a mixture of num_local_experts SwiGLU experts, of which
// num_experts_per_tok run per token: the router's top-k logits, softmaxed over
// those k, weight the experts' outputs (nn/moe.h).
//
// Module names are mlx-lm's after sanitize(): the router
// `block_sparse_moe.gate` and the experts stacked (E, out, in) in
// `block_sparse_moe.switch_mlp.{gate,up,down}_proj`. Hugging Face checkpoints
// store them per expert (`block_sparse_moe.experts.N.w1|w3|w2`, i.e. gate, up,
// down); those are stacked when the model is built.
#include <fmt/format.h>

#include "models/family.h"
#include "models/transformer.h"

namespace lmlab::models {

namespace {

void sanitize(Weights& w, nlohmann::json& config) {
  const int layers = config_count(config, "num_hidden_layers", "mixtral");
  const int experts = config_count(config, "num_local_experts", "mixtral", 8);
  for (int l = 0; l < layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.block_sparse_moe.", l);
    for (auto [from, to] : {std::pair{"w1", "gate_proj"}, {"w2", "down_proj"}, {"w3", "up_proj"}})
      stack_experts(w, p + "experts", experts, from, p + "switch_mlp." + to);
  }
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mlx::core::Dtype dtype) {
  nn::BlockSpec spec = llama_block_spec(c);
  spec.head_dim = c.hidden_size / c.num_attention_heads;
  spec.mlp = nn::MlpKind::moe;
  spec.moe = {.experts = config_count(c.raw, "num_local_experts", "mixtral", 8),
              .top_k = config_count(c.raw, "num_experts_per_tok", "mixtral", 2),
              .intermediate = c.intermediate_size,
              .routing = nn::Routing::topk_softmax};
  TransformerSpec t;
  t.norm_eps = spec.norm_eps;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    nn::BlockNames n = nn::BlockNames::llama(l);
    const std::string p = fmt::format("model.layers.{}.block_sparse_moe.", l);
    n.router = p + "gate";
    n.gate = p + "switch_mlp.gate_proj";
    n.up = p + "switch_mlp.up_proj";
    n.down = p + "switch_mlp.down_proj";
    t.blocks.emplace_back(l, spec, n);
  }
  return std::make_unique<Transformer>(c, std::move(t), std::move(w), dtype);
}

}  // namespace

const FamilySpec& mixtral_family() {
  static const FamilySpec spec{
      .name = "mixtral",
      .model_types = {"mixtral"},
      .sanitize = sanitize,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
