// GGUF hyper-parameters and tensor names → the Hugging Face forms the families
// read, through each family's FamilySpec (names, permutation, extra keys).
#include "models/gguf.h"

#include <charconv>
#include <optional>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "models/family.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab::models {

namespace {

const FamilySpec& family_of(const std::string& model_type) {
  const FamilySpec* f = find_family(model_type);
  if (!f) throw Unsupported(fmt::format("[gguf] model_type '{}' is not supported", model_type));
  return *f;
}

std::optional<std::string> lookup(const std::map<std::string, std::string>& own,
                                  const std::map<std::string, std::string>& shared, const std::string& key) {
  if (auto it = own.find(key); it != own.end()) return it->second;
  if (auto it = shared.find(key); it != shared.end()) return it->second;
  return std::nullopt;
}

// `<prefix>N.<rest>` (a block's tensor in either naming) → (N, rest), nullopt
// when the layer number or the dot after it is missing.
std::optional<std::pair<int, std::string>> split_layer(const std::string& stem, std::string_view prefix) {
  int layer = 0;
  const char* begin = stem.data() + prefix.size();
  auto [end, ec] = std::from_chars(begin, stem.data() + stem.size(), layer);
  if (ec != std::errc() || end == begin || *end != '.') return std::nullopt;
  return std::pair{layer, std::string(end + 1)};
}

// `blk.N.<key>.<leaf>` or `<key>.<leaf>` → the HF name, nullopt when unknown.
std::optional<std::string> hf_name(const FamilySpec& f, const std::string& gguf) {
  const size_t dot = gguf.rfind('.');
  if (dot == std::string::npos) return std::nullopt;
  const std::string stem = gguf.substr(0, dot), leaf = gguf.substr(dot + 1);
  if (stem.starts_with("blk.")) {
    auto block = split_layer(stem, "blk.");
    if (!block) return std::nullopt;
    auto hf = lookup(f.gguf_block_names, gguf_llama_block_names(), block->second);
    if (!hf) return std::nullopt;
    return fmt::format("model.layers.{}.{}.{}", block->first, *hf, leaf);
  }
  auto hf = lookup(f.gguf_top_names, gguf_llama_top_names(), stem);
  return hf ? std::optional<std::string>(*hf + "." + leaf) : std::nullopt;
}

// llama.cpp's converter interleaves the two rotary halves of each head's rows
// (rows [h, i, j] hold HF rows [h, j, i] for i < head_dim/2, j < 2); undo it.
mx::array unpermute_rows(const mx::array& a, int n_heads) {
  int rows = a.shape(0);
  mx::Shape rest(a.shape().begin() + 1, a.shape().end());
  mx::Shape split = {n_heads, rows / n_heads / 2, 2};
  split.insert(split.end(), rest.begin(), rest.end());
  auto x = mx::swapaxes(mx::reshape(a, split), 1, 2);
  mx::Shape back = {rows};
  back.insert(back.end(), rest.begin(), rest.end());
  return mx::reshape(x, back);
}

// HF rows [h, j, i] → GGUF rows [h, i, j]: llama.cpp's converter's interleave, the inverse of unpermute_rows.
mx::array permute_rows(const mx::array& a, int n_heads) {
  int rows = a.shape(0);
  mx::Shape rest(a.shape().begin() + 1, a.shape().end());
  mx::Shape split = {n_heads, 2, rows / n_heads / 2};
  split.insert(split.end(), rest.begin(), rest.end());
  auto x = mx::swapaxes(mx::reshape(a, split), 1, 2);
  mx::Shape back = {rows};
  back.insert(back.end(), rest.begin(), rest.end());
  return mx::reshape(x, back);
}

std::optional<std::string> reverse_lookup(const std::map<std::string, std::string>& own,
                                          const std::map<std::string, std::string>& shared, const std::string& hf) {
  for (const auto* names : {&own, &shared})
    for (const auto& [gguf, name] : *names)
      if (name == hf) return gguf;
  return std::nullopt;
}

// `model.layers.N.<hf>.<leaf>` or `<hf>.<leaf>` → the GGUF name, nullopt when unknown.
std::optional<std::string> gguf_name(const FamilySpec& f, const std::string& hf) {
  const size_t dot = hf.rfind('.');
  if (dot == std::string::npos) return std::nullopt;
  const std::string stem = hf.substr(0, dot), leaf = hf.substr(dot + 1);
  if (stem.starts_with("model.layers.")) {
    auto block = split_layer(stem, "model.layers.");
    if (!block) return std::nullopt;
    auto g = reverse_lookup(f.gguf_block_names, gguf_llama_block_names(), block->second);
    return g ? std::optional<std::string>(fmt::format("blk.{}.{}.{}", block->first, *g, leaf)) : std::nullopt;
  }
  auto g = reverse_lookup(f.gguf_top_names, gguf_llama_top_names(), stem);
  return g ? std::optional<std::string>(*g + "." + leaf) : std::nullopt;
}

}  // namespace

Weights hf_to_gguf_weights(const Weights& hf, const ModelConfig& config) {
  const FamilySpec& f = family_of(config.model_type);
  if (f.gguf_architectures.empty())
    throw Unsupported(fmt::format("[gguf] the {} family has no GGUF architecture to write", f.name));
  Weights out;
  for (const auto& [name, a] : hf.items()) {
    auto g = gguf_name(f, name);
    if (!g) throw Unsupported(fmt::format("[gguf] tensor '{}' has no GGUF name in the {} family", name, f.name));
    mx::array v = a;
    if (f.gguf_permuted_qk && name.find(".self_attn.q_proj.") != std::string::npos)
      v = permute_rows(a, config.num_attention_heads);
    else if (f.gguf_permuted_qk && name.find(".self_attn.k_proj.") != std::string::npos)
      v = permute_rows(a, config.num_key_value_heads);
    out.set(*g, v);
  }
  for (const auto& [prefix, q] : hf.quantized_modules())
    if (auto g = gguf_name(f, prefix + ".weight")) out.set_quant(g->substr(0, g->size() - 7), q);
  return out;
}

json gguf_config(const io::GgufFile& g) {
  const auto& m = g.meta;
  auto arch = meta_string(m, "general.architecture");
  if (!arch) throw std::invalid_argument(fmt::format("[gguf] {}: missing general.architecture", g.path.string()));
  const FamilySpec* family = find_gguf_family(*arch);
  if (!family) {
    std::vector<std::string> known;
    for (const FamilySpec* f : families()) known.insert(known.end(), f->gguf_architectures.begin(), f->gguf_architectures.end());
    std::sort(known.begin(), known.end());
    throw Unsupported(fmt::format("[gguf] {}: architecture '{}' is not supported (supported: {})", g.path.string(),
                                  *arch, fmt::join(known, ", ")));
  }
  auto key = [&](const char* k) { return *arch + "." + k; };
  auto req = [&](const char* k) {
    auto v = meta_int(m, key(k));
    if (!v) throw std::invalid_argument(fmt::format("[gguf] {}: missing {}", g.path.string(), key(k)));
    return *v;
  };
  // llama.cpp stores Mixtral as "llama" and Qwen3-MoE as "qwen3moe" with their
  // experts stacked in ggml blocks (ffn_*_exps), which lmlab does not multiply yet.
  if (auto experts = meta_int(m, key("expert_count")); experts && *experts > 0)
    throw Unsupported(fmt::format("[gguf] {}: a mixture of {} experts; lmlab runs mixture-of-experts models from MLX "
                                  "or Hugging Face safetensors directories, not from GGUF",
                                  g.path.string(), *experts));
  json c;
  c["model_type"] = family->model_types.front();
  c["hidden_size"] = req("embedding_length");
  c["num_hidden_layers"] = req("block_count");
  c["intermediate_size"] = req("feed_forward_length");
  c["num_attention_heads"] = req("attention.head_count");
  c["num_key_value_heads"] =
      meta_int(m, key("attention.head_count_kv")).value_or(c["num_attention_heads"].get<int64_t>());
  c["rms_norm_eps"] = meta_float(m, key("attention.layer_norm_rms_epsilon")).value_or(1e-6);
  c["rope_theta"] = meta_float(m, key("rope.freq_base")).value_or(10000.0);
  if (auto ctx = meta_int(m, key("context_length"))) c["max_position_embeddings"] = *ctx;
  if (auto hd = meta_int(m, key("attention.key_length"))) c["head_dim"] = *hd;
  if (auto rd = meta_int(m, key("rope.dimension_count"))) c["lmlab_rope_dims"] = *rd;
  std::optional<int64_t> vocab = meta_int(m, key("vocab_size"));
  if (!vocab)
    if (auto* toks = meta_strings(m, "tokenizer.ggml.tokens")) vocab = toks->size();
  bool has_output = false;
  for (auto& t : g.tensors) {
    if (t.name == "output.weight") has_output = true;
    if (t.name == "token_embd.weight" && !vocab && !t.dims.empty()) vocab = t.dims.back();
    if (t.name == "blk.0.attn_q.bias") c["attention_bias"] = true;
  }
  if (vocab) c["vocab_size"] = *vocab;
  c["tie_word_embeddings"] = !has_output;
  if (auto type = meta_string(m, key("rope.scaling.type")); type && *type != "none") {
    json rs;
    rs["type"] = *type;
    rs["factor"] = meta_float(m, key("rope.scaling.factor")).value_or(1.0);
    if (auto o = meta_int(m, key("rope.scaling.original_context_length"))) rs["original_max_position_embeddings"] = *o;
    c["rope_scaling"] = rs;
  }
  if (auto eos = meta_int(m, "tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *eos;
  if (auto bos = meta_int(m, "tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *bos;
  if (family->gguf_config) family->gguf_config(m, *arch, c);
  return c;
}

Weights gguf_weights(Weights gguf, const json& config) {
  const FamilySpec& f = family_of(config.value("model_type", ""));
  const int n_heads = config.at("num_attention_heads").get<int>();
  const int n_kv = config.at("num_key_value_heads").get<int>();
  Weights out;
  for (const auto& [name, a] : gguf.items()) {
    auto hf = hf_name(f, name);
    if (!hf) throw Unsupported(fmt::format("[gguf] unknown tensor name '{}' for the {} family", name, f.name));
    mx::array v = a;
    if (f.gguf_permuted_qk && hf->find(".self_attn.q_proj.") != std::string::npos) v = unpermute_rows(a, n_heads);
    else if (f.gguf_permuted_qk && hf->find(".self_attn.k_proj.") != std::string::npos) v = unpermute_rows(a, n_kv);
    out.set(*hf, v);
  }
  for (const auto& [prefix, q] : gguf.quantized_modules())
    if (auto hf = hf_name(f, prefix + ".weight")) out.set_quant(hf->substr(0, hf->size() - 7), q);
  return out;
}

}  // namespace lmlab::models
