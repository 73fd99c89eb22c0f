// Qwen3: Llama with per-head RMSNorm on queries and keys and an explicit head_dim.
#include "models/llama.h"

namespace lmlab::models {

std::unique_ptr<Model> make_qwen3(const ModelConfig& c, Weights w, mlx::core::Dtype dtype) {
  LlamaArgs a = LlamaArgs::from_config(c);
  a.qk_norm = true;
  return make_llama_family(c, std::move(a), std::move(w), dtype);
}

}  // namespace lmlab::models
