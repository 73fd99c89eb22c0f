// Phi-3 (mlx-lm models/phi3.py): Llama blocks whose checkpoints fuse the q, k
// and v projections into one `self_attn.qkv_proj` and the MLP's gate and up
// into `mlp.gate_up_proj` (gate first); head_dim = hidden / heads, rotary on
// partial_rotary_factor of it. The fused projections are split into Llama's
// modules when the model is built (rows of the weight and, when quantized
// along the inputs, of its scales and biases), so every path reads Llama names.
// Sanitize runs before the config is parsed, so it reads the raw config keys.
// The "su"/"longrope" scaled rotations of the 128k variants are not implemented
// (make_rope refuses them).
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "models/family.h"
#include "models/transformer.h"

namespace mx = mlx::core;

namespace lmlab::models {

namespace {

// Splits module `from`'s output rows into consecutive parts named `to`.
void split_rows(Weights& w, const std::string& from, const std::vector<std::pair<std::string, int>>& to) {
  if (!w.contains(from + ".weight")) return;  // make() reports the missing modules
  const QuantSpec* q = w.quant(from);  // rows are independent in every layout, raw ggml blocks too
  for (const char* part : {".weight", ".scales", ".biases", ".bias"}) {
    const mx::array* a = w.find(from + part);
    if (!a) continue;
    const mx::array whole = *a;
    int total = 0;
    for (const auto& [_, rows] : to) total += rows;
    if (whole.shape(0) != total)
      throw std::invalid_argument(fmt::format("[phi3] '{}{}' has {} rows, the config gives {}", from, part,
                                              whole.shape(0), total));
    int row = 0;
    for (const auto& [name, rows] : to) {
      mx::Shape start(whole.ndim(), 0), stop = whole.shape();
      start[0] = row;
      stop[0] = row + rows;
      w.set(name + part, mx::slice(whole, start, stop));
      row += rows;
    }
    w.erase(from + part);
  }
  if (q) {
    const QuantSpec spec = *q;
    for (const auto& [name, _] : to) w.set_quant(name, spec);
    w.clear_quant(from);
  }
}

int config_int(const nlohmann::json& config, const char* key) {
  if (!config.contains(key) || !config[key].is_number_integer() || config[key].get<int>() < 1)
    throw std::invalid_argument(fmt::format("[phi3] config.json needs a positive integer '{}'", key));
  return config[key].get<int>();
}

void sanitize(Weights& w, nlohmann::json& config) {
  const int hidden = config_int(config, "hidden_size"), heads = config_int(config, "num_attention_heads");
  const int kv_heads = config.contains("num_key_value_heads") && !config["num_key_value_heads"].is_null()
                           ? config_int(config, "num_key_value_heads")
                           : heads;
  const int head_dim = hidden / heads;
  const int inter = config_int(config, "intermediate_size"), layers = config_int(config, "num_hidden_layers");
  for (int l = 0; l < layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    split_rows(w, p + "self_attn.qkv_proj",
               {{p + "self_attn.q_proj", heads * head_dim},
                {p + "self_attn.k_proj", kv_heads * head_dim},
                {p + "self_attn.v_proj", kv_heads * head_dim}});
    split_rows(w, p + "mlp.gate_up_proj", {{p + "mlp.gate_proj", inter}, {p + "mlp.up_proj", inter}});
  }
}

std::unique_ptr<Model> make(const ModelConfig& c, Weights w, mx::Dtype dtype) {
  return make_llama_layout(c, llama_block_spec(c), std::move(w), dtype);
}

}  // namespace

const FamilySpec& phi3_family() {
  static const FamilySpec spec{
      .name = "phi3",
      .model_types = {"phi3"},
      .sanitize = sanitize,
      .make = make,
  };
  return spec;
}

}  // namespace lmlab::models
