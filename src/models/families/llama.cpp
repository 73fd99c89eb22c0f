// Llama 2, 3, 3.1, 3.2, Mistral and SmolLM2 (mlx-lm models/llama.py): pre-norm
// blocks of GQA attention with RoPE (default, linear, llama3 or yarn scaling)
// and a SwiGLU MLP; q/k/v/o biases with attention_bias, MLP biases with mlp_bias.
#include <mlx/mlx.h>

#include "models/family.h"
#include "models/transformer.h"

namespace mx = mlx::core;

namespace lmlab::models {

namespace {

// GGUF files carry llama3 rope scaling as per-pair frequency factors
// (`rope_freqs.weight`); make_rope reads them from the config.
void sanitize(Weights& w, nlohmann::json& config) {
  const mx::array* f = w.find("rope_freqs.weight");
  if (!f) return;
  mx::array factors = mx::astype(*f, mx::float32);
  mx::eval(factors);
  const float* p = factors.data<float>();
  config["lmlab_rope_freq_factors"] = std::vector<double>(p, p + factors.size());
  w.erase("rope_freqs.weight");
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mx::Dtype dtype) {
  nn::BlockSpec spec = llama_block_spec(c);
  spec.qkv_bias = spec.o_bias = c.raw.value("attention_bias", false);
  spec.mlp_bias = c.raw.value("mlp_bias", false);
  return make_llama_layout(c, spec, std::move(w), dtype);
}

}  // namespace

const FamilySpec& llama_family() {
  static const FamilySpec spec{
      .name = "llama",
      .model_types = {"llama", "mistral"},
      .gguf_architectures = {"llama", "mistral"},
      .gguf_top_names = {{"rope_freqs", "rope_freqs"}},
      .gguf_permuted_qk = true,
      .sanitize = sanitize,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
