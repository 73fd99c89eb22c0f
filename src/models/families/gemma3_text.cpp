// Gemma 3 text models (mlx-lm models/gemma3_text.py): four RMSNorms per block
// scaling by (1 + w) (before and after attention and MLP), per-head q/k norms,
// a GeGLU MLP, embeddings scaled by √hidden, and attention alternating between
// sliding-window layers (RoPE base rope_local_base_freq) and global layers
// (rope_theta with rope_scaling) — every sliding_window_pattern-th layer is global.
//
// GGUF files (architecture "gemma3") differ in two stored conventions, kept so
// lmlab computes what llama.cpp computes on them: llama.cpp's converter adds the
// 1 to every norm weight (the norms then scale by w alone), and llama.cpp scales
// embeddings by √hidden in float32 where mlx-lm rounds it to bfloat16 first.
// The GGUF config records both (lmlab_norm_offset, lmlab_embed_scale), and a
// saved copy keeps them.
#include <cmath>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "models/family.h"
#include "models/transformer.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab::models {

namespace {

// The layers llama.cpp and mlx-lm treat as sliding-window ones.
bool is_sliding(const json& c, int layer) {
  if (c.contains("layer_types") && c["layer_types"].is_array() && layer < static_cast<int>(c["layer_types"].size()))
    return c["layer_types"][layer] == "sliding_attention";
  const int pattern = c.value("sliding_window_pattern", 6);
  return pattern <= 0 || (layer + 1) % pattern != 0;
}

float embed_scale(const ModelConfig& c) {
  if (c.raw.contains("lmlab_embed_scale")) return c.raw["lmlab_embed_scale"].get<float>();
  // mlx-lm: mx.array(hidden_size ** 0.5, mx.bfloat16).
  return static_cast<float>(mx::bfloat16_t(std::sqrt(static_cast<float>(c.hidden_size))));
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mx::Dtype dtype) {
  if (!c.raw.value("final_logit_softcapping", json()).is_null() || !c.raw.value("attn_logit_softcapping", json()).is_null())
    throw Unsupported("[gemma3] logit soft-capping (Gemma 2's) is not implemented");
  nn::BlockSpec global = llama_block_spec(c);
  global.norm_offset = c.raw.value("lmlab_norm_offset", 1.0f);
  global.qk_norm = true;
  global.sandwich_norms = true;
  global.activation = nn::Activation::gelu_tanh;
  global.attn_scale = 1.0f / std::sqrt(c.raw.value("query_pre_attn_scalar", static_cast<float>(c.head_dim)));
  nn::BlockSpec local = global;
  json local_rope = c.raw;
  local_rope["rope_theta"] = c.raw.value("rope_local_base_freq", 10000.0);
  local_rope.erase("rope_scaling");  // scaling applies to the global layers only
  local.rope = std::make_shared<const nn::RoPE>(nn::make_rope(local_rope, c.head_dim));
  local.sliding_window = c.raw.value("sliding_window", 512);
  TransformerSpec t;
  t.embed_scale = embed_scale(c);
  t.norm_eps = global.norm_eps;
  t.norm_offset = global.norm_offset;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    nn::BlockNames n = nn::BlockNames::llama(l);
    const std::string p = fmt::format("model.layers.{}.", l);
    n.attn_out_norm = p + "post_attention_layernorm";
    n.mlp_norm = p + "pre_feedforward_layernorm";
    n.mlp_out_norm = p + "post_feedforward_layernorm";
    t.blocks.emplace_back(l, is_sliding(c.raw, l) ? local : global, n);
  }
  return std::make_unique<Transformer>(c, std::move(t), std::move(w), dtype);
}

// GGUF metadata: llama.cpp fixes Gemma 3's pattern (6) and local base (10000);
// the stored norms already include the 1. Gemma 3 was trained in bfloat16 and
// its activations overflow float16 (on a GPU, where the compute dtype follows
// torch_dtype, float16 gave NaN logits on every prompt of the oracle test).
void gguf_config(const Metadata& meta, const std::string& arch, json& c) {
  c["torch_dtype"] = "bfloat16";
  if (auto sw = meta_int(meta, arch + ".attention.sliding_window")) c["sliding_window"] = *sw;
  c["sliding_window_pattern"] = 6;
  c["rope_local_base_freq"] = 10000.0;
  c["lmlab_norm_offset"] = 0.0;
  c["lmlab_embed_scale"] = std::sqrt(static_cast<float>(c.at("hidden_size").get<int>()));
}

}  // namespace

const FamilySpec& gemma3_text_family() {
  static const FamilySpec spec{
      .name = "gemma3_text",
      .model_types = {"gemma3_text"},
      .gguf_architectures = {"gemma3"},
      .gguf_block_names = {{"post_attention_norm", "post_attention_layernorm"},
                           {"ffn_norm", "pre_feedforward_layernorm"},
                           {"post_ffw_norm", "post_feedforward_layernorm"}},
      .gguf_config = gguf_config,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
