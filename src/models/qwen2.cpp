// Qwen2 / Qwen2.5: Llama with biases on the q, k and v projections and its own
// defaults (rope_theta 1e6, 32k context) for keys a config leaves out.
#include "models/llama.h"

namespace lmlab::models {

std::unique_ptr<Model> make_qwen2(const ModelConfig& config, Weights w, mlx::core::Dtype dtype) {
  ModelConfig c = config;
  if (!c.raw.contains("rope_theta")) c.raw["rope_theta"] = 1000000.0;
  if (c.max_position_embeddings == 0) c.max_position_embeddings = 32768;
  LlamaArgs a = LlamaArgs::from_config(c);
  a.qkv_bias = true;
  return make_llama_family(c, std::move(a), std::move(w), dtype);
}

}  // namespace lmlab::models
