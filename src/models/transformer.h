// models::Transformer: the decoder-only model every family builds (mlx-lm's
// LlamaModel + Model): token embedding (optionally scaled), a stack of
// nn::DecoderBlocks, the final norm and the output head (`lm_head`, or the
// embedding when the head is tied). A family's file fills a TransformerSpec
// from its config and names; nothing here knows a family.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lmlab/model.h"
#include "nn/block.h"

namespace lmlab::models {

struct TransformerSpec {
  std::string embed = "model.embed_tokens";
  std::string final_norm = "model.norm";
  std::string head = "lm_head";  // used when present in the weights, else the tied embedding
  float embed_scale = 0.0f;      // > 0: embeddings multiplied by it (Gemma: √hidden)
  float norm_eps = 1e-6f;        // of the final norm
  float norm_offset = 0.0f;      // of the final norm: (offset + weight), 1 in Gemma
  std::vector<nn::DecoderBlock> blocks;
};

class Transformer : public Model {
 public:
  // Checks every tensor the spec reads (shapes against the config) before it
  // is built; throws std::invalid_argument naming the first wrong one.
  Transformer(ModelConfig config, TransformerSpec spec, Weights weights, mlx::core::Dtype dtype);

  mlx::core::array forward(const mlx::core::array& tokens, nn::KVCache* cache = nullptr,
                           nn::Hooks* hooks = nullptr) const override;
  mlx::core::array head(const mlx::core::array& hidden) const override;
  mlx::core::array decode_rows(const mlx::core::array& tokens, const std::vector<nn::KVCache*>& caches) const override;
  // forward() (no cache, no hooks) with each block applied through `run`, which
  // must return block(weights(), h, st): training wraps blocks in
  // mx::checkpoint this way.
  using BlockRunner = std::function<mlx::core::array(const nn::DecoderBlock& block, const mlx::core::array& h,
                                                     nn::ForwardState& st)>;
  mlx::core::array forward_blocks(const mlx::core::array& tokens, const BlockRunner& run) const;
  // The residual stream after the last block (B, L, D), before the final norm
  // and the head: the training loss applies head() to the positions it counts
  // only. `run` as in forward_blocks, or nullptr for the blocks themselves.
  mlx::core::array hidden(const mlx::core::array& tokens, const BlockRunner* run = nullptr) const;
  // The module the output head reads: spec.head, or the embedding when tied.
  const std::string& head_module() const;
  const TransformerSpec& spec() const { return spec_; }
  // Replaces the blocks with their tensor-parallel shards (models/shard.cpp,
  // after it cut the weights) and checks them against the weights.
  void set_blocks(std::vector<nn::DecoderBlock> blocks, const mlx::core::distributed::Group& group);

 private:
  mlx::core::array blocks(const mlx::core::array& tokens, nn::KVCache* cache, nn::Hooks* hooks,
                          const BlockRunner* runner) const;
  TransformerSpec spec_;
};

// The Llama block of a config (RMSNorm with `rms_norm_eps`, RoPE from the
// config, SwiGLU) that families start from and adjust.
nn::BlockSpec llama_block_spec(const ModelConfig& c);

// Per-expert modules `<experts>.N.<from>` (N = 0..n-1; weight, scales, biases)
// stacked into one module `to` of shape (n, out, in), as mlx-lm's sanitize()
// stacks Hugging Face experts into SwitchGLU's; their quantization moves along.
// A layer without `<experts>.0.<from>.weight` is left alone; a missing expert
// throws std::invalid_argument naming it.
void stack_experts(Weights& w, const std::string& experts, int n, const std::string& from, const std::string& to);

// A positive integer key of a config (raw JSON, before or after parsing):
// `fallback` when absent or null and fallback > 0; else std::invalid_argument
// naming `where` and the key.
int config_count(const nlohmann::json& config, const char* key, const char* where, int fallback = 0);

// A Transformer with every layer `spec` under Llama's names (model.embed_tokens,
// model.layers.N.*, model.norm, lm_head).
std::unique_ptr<Model> make_llama_layout(const ModelConfig& c, const nn::BlockSpec& spec, Weights w,
                                         mlx::core::Dtype dtype);

}  // namespace lmlab::models
