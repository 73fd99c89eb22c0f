// model_type → family factory, the alias table (mlx-lm's MODEL_REMAPPING), and
// the load steps every family shares.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/core.h"
#include "models/llama.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab {

namespace models {
std::unique_ptr<Model> make_qwen2(const ModelConfig&, Weights, mx::Dtype);
std::unique_ptr<Model> make_qwen3(const ModelConfig&, Weights, mx::Dtype);

namespace {

using Factory = std::unique_ptr<Model> (*)(const ModelConfig&, Weights, mx::Dtype);

std::unique_ptr<Model> make_llama(const ModelConfig& c, Weights w, mx::Dtype dtype) {
  return make_llama_family(c, LlamaArgs::from_config(c), std::move(w), dtype);
}

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table = {
      {"llama", make_llama}, {"qwen2", make_qwen2}, {"qwen3", make_qwen3}};
  return table;
}

const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> table = {{"mistral", "llama"}};
  return table;
}

std::string shape_str(const mx::array& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(static_cast<int>(i)));
  return s + ")";
}

}  // namespace

void drop_unused(Weights& w, const ModelConfig& c) {
  std::vector<std::string> drop;
  for (auto& [n, _] : w.items())
    if (n.find("rotary_emb.inv_freq") != std::string::npos ||
        (c.tie_word_embeddings && n.starts_with("lm_head.")))
      drop.push_back(n);
  for (auto& n : drop) w.erase(n);
  if (c.tie_word_embeddings) w.clear_quant("lm_head");
}

void cast_floats(Weights& w, mx::Dtype dtype) {
  std::vector<std::pair<std::string, mx::array>> cast;
  for (auto& [n, a] : w.items())
    if (mx::issubdtype(a.dtype(), mx::floating) && a.dtype() != dtype)
      cast.emplace_back(n, mx::astype(a, dtype));
  for (auto& [n, a] : cast) w.set(n, a);
}

void check_linear(const Weights& w, const std::string& prefix, int out, int in) {
  const mx::array* a = w.find(prefix + ".weight");
  if (!a) throw std::invalid_argument(fmt::format("[model] missing tensor '{}.weight'", prefix));
  int want_in = in;
  if (const QuantSpec* q = w.quant(prefix)) {
    want_in = in * q->bits / 32;
    const mx::array* s = w.find(prefix + ".scales");
    if (!s || s->ndim() != 2 || s->shape(0) != out || s->shape(1) != in / q->group_size)
      throw std::invalid_argument(fmt::format(
          "[model] '{}.scales' has shape {}, expected ({}, {})", prefix,
          s ? shape_str(*s) : "none", out, in / q->group_size));
  }
  if (a->ndim() != 2 || a->shape(0) != out || a->shape(1) != want_in)
    throw std::invalid_argument(fmt::format("[model] '{}.weight' has shape {}, expected ({}, {})",
                                            prefix, shape_str(*a), out, want_in));
}

void check_vector(const Weights& w, const std::string& name, int n) {
  const mx::array* a = w.find(name);
  if (!a) throw std::invalid_argument(fmt::format("[model] missing tensor '{}'", name));
  if (a->ndim() != 1 || a->shape(0) != n)
    throw std::invalid_argument(
        fmt::format("[model] '{}' has shape {}, expected ({})", name, shape_str(*a), n));
}

}  // namespace models

ModelConfig ModelConfig::from_json(const json& j) {
  ModelConfig c;
  c.raw = j;
  auto req = [&](const char* k) -> int {
    if (!j.contains(k) || !j[k].is_number_integer())
      throw std::invalid_argument(fmt::format("[config] missing or non-integer '{}'", k));
    return j[k].get<int>();
  };
  try {
    c.model_type = j.at("model_type").get<std::string>();
  } catch (const json::exception&) {
    throw std::invalid_argument("[config] missing or non-string 'model_type'");
  }
  c.hidden_size = req("hidden_size");
  c.num_hidden_layers = req("num_hidden_layers");
  c.num_attention_heads = req("num_attention_heads");
  c.intermediate_size = req("intermediate_size");
  c.vocab_size = req("vocab_size");
  c.num_key_value_heads = j.value("num_key_value_heads", c.num_attention_heads);
  if (j.contains("head_dim") && j["head_dim"].is_number_integer()) c.head_dim = j["head_dim"];
  else c.head_dim = c.hidden_size / std::max(1, c.num_attention_heads);
  c.max_position_embeddings = j.value("max_position_embeddings", 0);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0)
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

Model::Model(ModelConfig config, Weights weights, mx::Dtype dtype)
    : config_(std::move(config)), weights_(std::move(weights)), dtype_(dtype) {}

std::unique_ptr<nn::KVCache> Model::make_cache() const {
  return std::make_unique<nn::KVCache>(config_.num_hidden_layers);
}

std::unique_ptr<Model> make_model(const json& config, Weights weights, mx::Dtype dtype) {
  ModelConfig c = ModelConfig::from_json(config);
  // A checkpoint without lm_head is tied whatever the config says; one with it
  // and no explicit flag is untied (HF's default).
  if (!weights.contains("lm_head.weight")) c.tie_word_embeddings = true;
  else if (!config.contains("tie_word_embeddings")) c.tie_word_embeddings = false;
  std::string type = c.model_type;
  if (auto a = models::aliases().find(type); a != models::aliases().end()) type = a->second;
  auto f = models::factories().find(type);
  if (f == models::factories().end())
    throw Unsupported(fmt::format("[model] model_type '{}' is not supported (supported: {})",
                                  c.model_type, fmt::join(supported_model_types(), ", ")));
  return f->second(c, std::move(weights), dtype);
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (auto& [k, _] : models::factories()) out.push_back(k);
  for (auto& [k, _] : models::aliases()) out.push_back(k);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lmlab
