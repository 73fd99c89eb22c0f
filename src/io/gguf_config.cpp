// GGUF hyper-parameters and tensor names → the Hugging Face forms the model
// families read (config.json keys, `model.layers.N.self_attn.q_proj.weight`).
#include <regex>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab::io {

namespace {

// GGUF architecture → HF model_type; families lmlab has.
const std::map<std::string, std::string> kArchToModelType = {
    {"llama", "llama"}, {"mistral", "mistral"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"},
};

// blk.N.<gguf> → model.layers.N.<hf>
const std::map<std::string, std::string> kBlockNames = {
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

const std::map<std::string, std::string> kTopNames = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};

std::optional<std::string> hf_name(const std::string& gguf) {
  static const std::regex blk(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias|scales|biases))");
  static const std::regex top(R"(([a-z_]+)\.(weight|bias|scales|biases))");
  std::smatch m;
  if (std::regex_match(gguf, m, blk)) {
    auto it = kBlockNames.find(m[2]);
    if (it == kBlockNames.end()) return std::nullopt;
    return fmt::format("model.layers.{}.{}.{}", m[1].str(), it->second, m[3].str());
  }
  if (std::regex_match(gguf, m, top)) {
    auto it = kTopNames.find(m[1]);
    if (it == kTopNames.end()) return std::nullopt;
    return fmt::format("{}.{}", it->second, m[2].str());
  }
  return std::nullopt;
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

}  // namespace

json gguf_to_hf_config(const GgufFile& g) {
  const auto& m = g.meta;
  auto arch = meta_string(m, "general.architecture");
  if (!arch)
    throw std::invalid_argument(
        fmt::format("[gguf] {}: missing general.architecture", g.path.string()));
  auto mt = kArchToModelType.find(*arch);
  if (mt == kArchToModelType.end())
    throw Unsupported(fmt::format("[gguf] {}: architecture '{}' is not supported (supported: "
                                  "llama, mistral, qwen2, qwen3)",
                                  g.path.string(), *arch));
  auto key = [&](const char* k) { return *arch + "." + k; };
  auto req = [&](const char* k) {
    auto v = meta_int(m, key(k));
    if (!v)
      throw std::invalid_argument(fmt::format("[gguf] {}: missing {}", g.path.string(), key(k)));
    return *v;
  };
  json c;
  c["model_type"] = mt->second;
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
    if (t.name == "token_embd.weight" && !vocab) vocab = t.dims.back();
    if (t.name == "blk.0.attn_q.bias") c["attention_bias"] = true;
  }
  if (vocab) c["vocab_size"] = *vocab;
  c["tie_word_embeddings"] = !has_output;
  if (auto type = meta_string(m, key("rope.scaling.type")); type && *type != "none") {
    json rs;
    rs["type"] = *type;
    rs["factor"] = meta_float(m, key("rope.scaling.factor")).value_or(1.0);
    if (auto o = meta_int(m, key("rope.scaling.original_context_length")))
      rs["original_max_position_embeddings"] = *o;
    c["rope_scaling"] = rs;
  }
  if (auto eos = meta_int(m, "tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *eos;
  if (auto bos = meta_int(m, "tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *bos;
  return c;
}

Weights gguf_to_hf_weights(Weights gguf, const json& config) {
  Weights out;
  const bool permuted = config.value("model_type", "") == "llama" ||
                        config.value("model_type", "") == "mistral";
  const int n_heads = config.at("num_attention_heads").get<int>();
  const int n_kv = config.at("num_key_value_heads").get<int>();
  for (const auto& [name, a] : gguf.items()) {
    if (name == "rope_freqs.weight") continue;  // folded into the config by the caller
    auto hf = hf_name(name);
    if (!hf) throw Unsupported(fmt::format("[gguf] unknown tensor name '{}'", name));
    mx::array v = a;
    if (permuted && hf->find(".self_attn.q_proj.") != std::string::npos)
      v = unpermute_rows(a, n_heads);
    else if (permuted && hf->find(".self_attn.k_proj.") != std::string::npos)
      v = unpermute_rows(a, n_kv);
    out.set(*hf, v);
  }
  for (const auto& [prefix, q] : gguf.quantized_modules()) {
    auto hf = hf_name(prefix + ".weight");
    if (hf) out.set_quant(hf->substr(0, hf->size() - 7), q);
  }
  return out;
}

}  // namespace lmlab::io
