// ModelConfig::from_json: the fields every family shares, read from an HF
// config.json object and range-checked. Kept apart from the registry (and
// from MLX) so the config fuzzer can compile it alone.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/model.h"

using json = nlohmann::json;

namespace lmlab {

namespace {

int positive(const json& j, const char* key, int64_t max) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw std::invalid_argument(fmt::format("[config] missing or non-integer '{}'", key));
  const int64_t v = j[key].get<int64_t>();
  if (v < 1 || v > max)
    throw std::invalid_argument(fmt::format("[config] '{}' = {} is out of range (1 to {})", key, v, max));
  return static_cast<int>(v);
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j) {
  ModelConfig c;
  c.raw = j;
  if (!j.is_object()) throw std::invalid_argument("[config] not a JSON object");
  if (!j.contains("model_type") || !j["model_type"].is_string())
    throw std::invalid_argument("[config] missing or non-string 'model_type'");
  c.model_type = j["model_type"].get<std::string>();
  c.hidden_size = positive(j, "hidden_size", 1 << 20);
  c.num_hidden_layers = positive(j, "num_hidden_layers", 100000);
  c.num_attention_heads = positive(j, "num_attention_heads", 1 << 16);
  c.intermediate_size = positive(j, "intermediate_size", 1 << 24);
  c.vocab_size = positive(j, "vocab_size", 1 << 26);
  c.num_key_value_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                              ? positive(j, "num_key_value_heads", 1 << 16)
                              : c.num_attention_heads;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? positive(j, "head_dim", 1 << 16)
                                                                  : c.hidden_size / c.num_attention_heads;
  if (c.head_dim < 1)
    throw std::invalid_argument(fmt::format("[config] hidden_size {} gives no head_dim for {} heads", c.hidden_size,
                                            c.num_attention_heads));
  if (j.contains("max_position_embeddings") && !j["max_position_embeddings"].is_null())
    c.max_position_embeddings = positive(j, "max_position_embeddings", 1 << 30);
  if (j.contains("tie_word_embeddings") && !j["tie_word_embeddings"].is_null()) {
    if (!j["tie_word_embeddings"].is_boolean())
      throw std::invalid_argument(fmt::format("[config] 'tie_word_embeddings' = {} must be true or false",
                                              j["tie_word_embeddings"].dump()));
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (j.contains("rms_norm_eps")) {
    const json& e = j["rms_norm_eps"];
    const double eps = e.is_number() ? e.get<double>() : -1.0;
    if (!(eps > 0.0 && eps < 1.0))
      throw std::invalid_argument(fmt::format("[config] 'rms_norm_eps' = {} must be a number in (0, 1)", e.dump()));
    c.rms_norm_eps = static_cast<float>(eps);
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw std::invalid_argument(fmt::format(
        "[config] num_attention_heads {} must be a positive multiple of num_key_value_heads {}",
        c.num_attention_heads, c.num_key_value_heads));
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int>());
    else if (e.is_array())
      for (auto& x : e)
        if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int>());
  }
  return c;
}

}  // namespace lmlab
