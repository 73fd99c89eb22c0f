// Model: a family-agnostic transformer over a Weights tree.
//   forward(tokens, cache, hooks) -> logits
// Families (src/models/<model_type>.cpp) register by model_type; parameter
// names follow the HF/MLX convention. The forward pass reads tensors by name
// from weights() on every call, so surgery and adapters that edit Weights take
// effect without rebuilding anything.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <mlx/distributed/distributed.h>
#include <nlohmann/json.hpp>

#include "lmlab/nn.h"
#include "lmlab/weights.h"

namespace lmlab {

// The fields every family shares, parsed from an HF config.json object.
struct ModelConfig {
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int max_position_embeddings = 0;  // 0: unknown
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;
  std::vector<int> eos_token_ids;
  nlohmann::json raw;  // the whole config, for family-specific fields

  // Throws std::invalid_argument naming the missing or invalid key (every size
  // must be a positive integer in a sane range, eps positive and finite).
  static ModelConfig from_json(const nlohmann::json& config);
};

class Model {
 public:
  Model(ModelConfig config, Weights weights, mlx::core::Dtype dtype);
  virtual ~Model() = default;

  // tokens: (B, L) int32 → logits (B, L, V) in the compute dtype. With a cache,
  // positions continue from cache->offset() and the cache is extended.
  virtual mlx::core::array forward(const mlx::core::array& tokens,
                                   nn::KVCache* cache = nullptr,
                                   nn::Hooks* hooks = nullptr) const = 0;
  // Continuous batching: one new token for each of B sequences, each with its
  // own cache at its own position. tokens: (B, 1) int32 → logits (B, 1, V);
  // each cache is extended by one. Equal to B forward() calls, one per
  // sequence (the default does exactly that); the transformer runs each block
  // once for all B where it can (nn::DecoderBlock::decode_rows).
  virtual mlx::core::array decode_rows(const mlx::core::array& tokens,
                                       const std::vector<nn::KVCache*>& caches) const;
  // The final norm and output head applied to a residual stream (B, L, D):
  // the logit lens reads every layer through this.
  virtual mlx::core::array head(const mlx::core::array& hidden) const = 0;

  // Training mode turns on adapter dropout (mlx's Module.train()).
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  // Whether blocks may run their fused CPU/GPU step (LoadOptions::fused).
  void set_fused(bool on) { fused_ = on; }
  bool fused() const { return fused_; }

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  Weights& weights() { return weights_; }
  mlx::core::Dtype dtype() const { return dtype_; }
  std::unique_ptr<nn::KVCache> make_cache() const;
  // The group of ranks this model is split over by tensor parallelism (each
  // holds a shard; forward() is collective), or nullptr for a whole model.
  const mlx::core::distributed::Group* tensor_group() const { return tensor_group_ ? &*tensor_group_ : nullptr; }

 protected:
  // Throws std::invalid_argument unless tokens is (B, 1) with one cache of this model per row.
  void check_rows(const mlx::core::array& tokens, const std::vector<nn::KVCache*>& caches) const;
  ModelConfig config_;
  Weights weights_;
  mlx::core::Dtype dtype_;
  bool training_ = false;
  bool fused_ = true;
  std::optional<mlx::core::distributed::Group> tensor_group_;
};

// Builds the family registered for config.model_type (aliases included):
// sanitizes the checkpoint (the family's quirks, unused tensors), casts float
// tensors to `dtype`, and checks every required tensor is present with the
// right shape and that the config describes the weights (no layer left over).
// Throws lmlab::Unsupported for unknown model types. With `tensor_parallel`
// (a group of more than one rank) each rank keeps only its shard of every
// block (models/shard.h), cut before the weights are evaluated.
std::unique_ptr<Model> make_model(const nlohmann::json& config, Weights weights,
                                  mlx::core::Dtype dtype,
                                  const mlx::core::distributed::Group* tensor_parallel = nullptr);

// model_type names lmlab can build.
std::vector<std::string> supported_model_types();

}  // namespace lmlab
