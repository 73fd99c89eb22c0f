// The family registry (model_type and GGUF architecture → FamilySpec, aliases
// as mlx-lm's MODEL_REMAPPING), config parsing and the load steps every family
// shares: sanitize, tie, cast, check the config against the weights, build.
#include <charconv>
#include <cmath>
#include <mutex>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/core.h"
#include "models/family.h"
#include "models/shard.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab {

namespace models {

std::vector<const FamilySpec*> builtin_families();  // generated from src/models/families/

namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::unique_ptr<FamilySpec>> added;
  std::vector<const FamilySpec*> all = builtin_families();
};

Registry& registry() {
  static Registry r;
  return r;
}

template <class Names>
const FamilySpec* find_by(const std::string& name, Names FamilySpec::* names) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const FamilySpec* f : r.all)
    for (const auto& n : f->*names)
      if (n == name) return f;
  return nullptr;
}

}  // namespace

const FamilySpec* find_family(const std::string& model_type) { return find_by(model_type, &FamilySpec::model_types); }

const FamilySpec* find_gguf_family(const std::string& architecture) {
  return find_by(architecture, &FamilySpec::gguf_architectures);
}

void register_family(FamilySpec spec) {
  if (spec.model_types.empty() || !spec.make)
    throw std::invalid_argument(fmt::format("[models] family '{}' needs a model_type and a factory", spec.name));
  for (const auto& t : spec.model_types)
    if (find_family(t)) throw std::invalid_argument(fmt::format("[models] model_type '{}' is already registered", t));
  for (const auto& a : spec.gguf_architectures)
    if (find_gguf_family(a))
      throw std::invalid_argument(fmt::format("[models] GGUF architecture '{}' is already registered", a));
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.added.push_back(std::make_unique<FamilySpec>(std::move(spec)));
  r.all.push_back(r.added.back().get());
}

std::vector<const FamilySpec*> families() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.all;
}

const std::map<std::string, std::string>& gguf_llama_block_names() {
  static const std::map<std::string, std::string> names = {
      {"attn_norm", "input_layernorm"},       {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},         {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},    {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},    {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},          {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  return names;
}

const std::map<std::string, std::string>& gguf_llama_top_names() {
  static const std::map<std::string, std::string> names = {
      {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};
  return names;
}

namespace {

void drop_unused(Weights& w, const ModelConfig& c) {
  std::vector<std::string> drop;
  for (auto& [n, _] : w.items())
    if (n.find("rotary_emb.inv_freq") != std::string::npos || (c.tie_word_embeddings && n.starts_with("lm_head.")))
      drop.push_back(n);
  for (auto& n : drop) w.erase(n);
  if (c.tie_word_embeddings) w.clear_quant("lm_head");
}

// A packed layer's scales or biases (`P.scales`, `P.biases` with P quantized).
bool quant_param(const Weights& w, const std::string& n) {
  for (const char* leaf : {".scales", ".biases"})
    if (n.ends_with(leaf) && w.quant(n.substr(0, n.size() - std::string(leaf).size()))) return true;
  return false;
}

// Float tensors to the compute dtype. Under float32 compute, quantization
// scales and biases keep their stored half type (a GGUF's f16 block scales):
// every consumer widens them exactly, and a decode step reads half the bytes
// for them (on the default model's 4-bit rows, 72 of 432 bytes a row instead of 144).
void cast_floats(Weights& w, mx::Dtype dtype) {
  std::vector<std::pair<std::string, mx::array>> cast;
  for (auto& [n, a] : w.items())
    if (mx::issubdtype(a.dtype(), mx::floating) && a.dtype() != dtype &&
        !(dtype == mx::float32 && quant_param(w, n)))
      cast.emplace_back(n, mx::astype(a, dtype));
  for (auto& [n, a] : cast) w.set(n, a);
}

// A config that describes fewer layers than the weights hold would run a
// truncated model: refuse it, naming the first layer left over.
void check_layer_count(const Weights& w, const ModelConfig& c) {
  int highest = -1;
  std::string example;
  for (auto& [n, _] : w.items()) {
    size_t at = n.find("layers.");
    if (at == std::string::npos || (at > 0 && n[at - 1] != '.')) continue;
    int layer = -1;
    const char* begin = n.data() + at + 7;
    auto [end, ec] = std::from_chars(begin, n.data() + n.size(), layer);
    if (ec != std::errc() || end == begin || *end != '.') continue;
    if (layer > highest) highest = layer, example = n;
  }
  if (highest >= c.num_hidden_layers)
    throw std::invalid_argument(fmt::format(
        "[model] the config says num_hidden_layers = {} but the weights hold {} layers (e.g. '{}')",
        c.num_hidden_layers, highest + 1, example));
}

}  // namespace

}  // namespace models

Model::Model(ModelConfig config, Weights weights, mx::Dtype dtype)
    : config_(std::move(config)), weights_(std::move(weights)), dtype_(dtype) {}

mx::array Model::decode_rows(const mx::array& tokens, const std::vector<nn::KVCache*>& caches) const {
  check_rows(tokens, caches);
  std::vector<mx::array> logits;
  for (int b = 0; b < tokens.shape(0); ++b) logits.push_back(forward(mx::slice(tokens, {b, 0}, {b + 1, 1}), caches[b]));
  return mx::concatenate(logits, 0);
}

void Model::check_rows(const mx::array& tokens, const std::vector<nn::KVCache*>& caches) const {
  if (tokens.ndim() != 2 || tokens.shape(1) != 1 || tokens.shape(0) != static_cast<int>(caches.size()) ||
      caches.empty())
    throw std::invalid_argument(fmt::format("[decode] tokens must be (B, 1) for B = {} caches", caches.size()));
  for (const nn::KVCache* c : caches)
    if (!c || c->num_layers() != config_.num_hidden_layers)
      throw std::invalid_argument("[decode] every sequence needs its own cache of this model");
}

std::unique_ptr<nn::KVCache> Model::make_cache() const {
  return std::make_unique<nn::KVCache>(config_.num_hidden_layers);
}

std::unique_ptr<Model> make_model(const json& config_in, Weights weights, mx::Dtype dtype,
                                  const mx::distributed::Group* tensor_parallel) {
  const std::string type = config_in.is_object() && config_in.contains("model_type") && config_in["model_type"].is_string()
                               ? config_in["model_type"].get<std::string>()
                               : std::string();
  const models::FamilySpec* family = models::find_family(type);
  if (!family) {
    if (type.empty()) throw std::invalid_argument("[config] missing or non-string 'model_type'");
    throw Unsupported(fmt::format("[model] model_type '{}' is not supported (supported: {})", type,
                                  fmt::join(supported_model_types(), ", ")));
  }
  json config = config_in;
  if (family->sanitize) family->sanitize(weights, config);
  ModelConfig c = ModelConfig::from_json(config);
  // A checkpoint without lm_head is tied whatever the config says; one with it
  // and no explicit flag is untied (HF's default).
  if (!weights.contains("lm_head.weight")) c.tie_word_embeddings = true;
  else if (!config.contains("tie_word_embeddings")) c.tie_word_embeddings = false;
  models::drop_unused(weights, c);
  models::cast_floats(weights, dtype);
  models::check_layer_count(weights, c);
  std::unique_ptr<Model> model = family->make(c, std::move(weights), dtype);
  if (tensor_parallel && tensor_parallel->size() > 1) {
    auto* t = dynamic_cast<models::Transformer*>(model.get());
    if (!t) throw Unsupported(fmt::format("[model] {} models cannot be split over ranks", family->name));
    models::shard(*t, *tensor_parallel);
  }
  return model;
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const models::FamilySpec* f : models::families())
    out.insert(out.end(), f->model_types.begin(), f->model_types.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lmlab
