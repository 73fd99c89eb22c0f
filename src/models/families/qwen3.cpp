// Qwen3 (mlx-lm models/qwen3.py): Llama with per-head RMSNorm on queries and
// keys and an explicit head_dim.
#include "models/family.h"
#include "models/transformer.h"

namespace lmlab::models {

namespace {

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mlx::core::Dtype dtype) {
  nn::BlockSpec spec = llama_block_spec(c);
  spec.qk_norm = true;
  return make_llama_layout(c, spec, std::move(w), dtype);
}

}  // namespace

const FamilySpec& qwen3_family() {
  static const FamilySpec spec{
      .name = "qwen3",
      .model_types = {"qwen3"},
      .gguf_architectures = {"qwen3"},
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
