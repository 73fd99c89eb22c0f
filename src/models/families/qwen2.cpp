// Qwen2 / Qwen2.5 (mlx-lm models/qwen2.py): Llama with biases on the q, k and v
// projections and its own defaults (rope_theta 1e6, 32k context).
#include "models/family.h"
#include "models/transformer.h"

namespace lmlab::models {

namespace {

void sanitize(Weights&, nlohmann::json& config) {
  if (!config.contains("rope_theta")) config["rope_theta"] = 1000000.0;
  if (!config.contains("max_position_embeddings")) config["max_position_embeddings"] = 32768;
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mlx::core::Dtype dtype) {
  nn::BlockSpec spec = llama_block_spec(c);
  spec.qkv_bias = true;
  return make_llama_layout(c, spec, std::move(w), dtype);
}

}  // namespace

const FamilySpec& qwen2_family() {
  static const FamilySpec spec{
      .name = "qwen2",
      .model_types = {"qwen2"},
      .gguf_architectures = {"qwen2"},
      .sanitize = sanitize,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
