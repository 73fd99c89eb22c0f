// Qwen3-MoE (mlx-lm models/qwen3_moe.py): Qwen3 attention (per-head q/k norms,
// explicit head_dim) with mixture-of-experts MLPs: the router's softmax over
// all num_experts, its top num_experts_per_tok probabilities (divided by their
// sum when norm_topk_prob) weight the experts' SwiGLU outputs (nn/moe.h).
// A layer is sparse when it is not in mlp_only_layers and (layer + 1) is a
// multiple of decoder_sparse_step; the others keep a dense MLP of
// intermediate_size (the experts' is moe_intermediate_size).
//
// Module names are mlx-lm's after sanitize(): the router `mlp.gate` and the
// experts stacked (E, out, in) in `mlp.switch_mlp.{gate,up,down}_proj`; Hugging
// Face checkpoints store them per expert (`mlp.experts.N.*_proj`), stacked when
// the model is built.
#include <algorithm>

#include <fmt/format.h>

#include "models/family.h"
#include "models/transformer.h"

using json = nlohmann::json;

namespace lmlab::models {

namespace {

int experts(const json& c) {
  auto it = c.find("num_experts");
  return it != c.end() && it->is_number_integer() && it->get<int>() == 0 ? 0 : config_count(c, "num_experts", "qwen3_moe");
}

bool sparse(const json& c, int layer) {
  if (c.contains("mlp_only_layers") && !c["mlp_only_layers"].is_null()) {
    if (!c["mlp_only_layers"].is_array())
      throw std::invalid_argument("[qwen3_moe] config.json 'mlp_only_layers' must be a list of layer numbers");
    for (const auto& l : c["mlp_only_layers"])
      if (l.is_number_integer() && l.get<int>() == layer) return false;
  }
  return experts(c) > 0 && (layer + 1) % config_count(c, "decoder_sparse_step", "qwen3_moe", 1) == 0;
}

void sanitize(Weights& w, json& config) {
  const int layers = config_count(config, "num_hidden_layers", "qwen3_moe");
  const int n = experts(config);
  for (int l = 0; l < layers && n > 0; ++l) {
    const std::string p = fmt::format("model.layers.{}.mlp.", l);
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
      stack_experts(w, p + "experts", n, proj, p + "switch_mlp." + proj);
  }
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mlx::core::Dtype dtype) {
  nn::BlockSpec dense = llama_block_spec(c);
  dense.qk_norm = true;
  nn::BlockSpec moe = dense;
  moe.mlp = nn::MlpKind::moe;
  if (experts(c.raw) > 0) {
    moe.moe = {.experts = experts(c.raw),
               .top_k = config_count(c.raw, "num_experts_per_tok", "qwen3_moe"),
               .intermediate = config_count(c.raw, "moe_intermediate_size", "qwen3_moe"),
               .routing = nn::Routing::softmax_topk,
               .norm_topk_prob = c.raw.value("norm_topk_prob", false)};
  }
  TransformerSpec t;
  t.norm_eps = dense.norm_eps;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    nn::BlockNames n = nn::BlockNames::llama(l);
    if (!sparse(c.raw, l)) {
      t.blocks.emplace_back(l, dense, n);
      continue;
    }
    const std::string p = fmt::format("model.layers.{}.mlp.", l);
    n.router = p + "gate";
    n.gate = p + "switch_mlp.gate_proj";
    n.up = p + "switch_mlp.up_proj";
    n.down = p + "switch_mlp.down_proj";
    t.blocks.emplace_back(l, moe, n);
  }
  return std::make_unique<Transformer>(c, std::move(t), std::move(w), dtype);
}

}  // namespace

const FamilySpec& qwen3_moe_family() {
  static const FamilySpec spec{
      .name = "qwen3_moe",
      .model_types = {"qwen3_moe"},
      .sanitize = sanitize,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
