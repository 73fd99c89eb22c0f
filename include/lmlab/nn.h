// The public pieces of lmlab's neural-network layer (mlx-lm's rope_utils.py and
// cache.py): RoPE variants, the KV cache and activation hooks. The layers
// themselves (nn::Linear, nn::DecoderBlock) are internal: src/nn/linear.h,
// src/nn/block.h.
//
// Shapes: B batch, L sequence, D model dim, H heads, Hk kv heads, Dh head dim.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <nlohmann/json.hpp>

#include "lmlab/weights.h"

namespace lmlab::nn {

using mlx::core::array;

// Rotary position embedding, built from an HF config (rope_theta, rope_scaling
// of type default / linear / llama3 / yarn, GGUF frequency factors).
struct RoPE {
  int dims = 0;
  bool traditional = false;
  float base = 10000.0f;
  float scale = 1.0f;
  float mscale = 1.0f;             // yarn attention scaling of the rotated q/k
  std::optional<array> freqs;      // per-pair periods/2π, replaces base when set
  // x: (B, H, L, Dh); positions offset, offset+1, ...
  array operator()(const array& x, int offset) const;
};
RoPE make_rope(const nlohmann::json& config, int head_dim);

// Per-layer key/value buffers, grown in steps and updated in place. The fused
// CPU decode step (nn::decoder_step) writes new positions straight into the
// buffers, so arrays taken from state() are views of the live cache, not
// snapshots: after trim(), later steps overwrite them from the new offset on.
// Copy them (mx::copy, then eval) to keep one.
class KVCache {
 public:
  explicit KVCache(int num_layers, int step = 256);
  // Appends k, v: (B, Hk, L, Dh) for `layer`; returns all keys/values cached.
  std::pair<array, array> update(int layer, const array& k, const array& v);
  // For a step that writes its own entries (nn::decoder_step): the layer's whole
  // buffers, grown to hold n more tokens (shapes (B, Hk, capacity, Dh) like k, v).
  std::pair<array, array> reserve(int layer, const mlx::core::Shape& k_shape,
                                  const mlx::core::Shape& v_shape, mlx::core::Dtype dtype, int n);
  // Takes back buffers holding n more tokens of `layer` (from reserve's, updated).
  void commit(int layer, array keys, array values, int n);
  // Tokens cached in layer 0 (the position of the next token).
  int offset() const { return layers_.empty() ? 0 : layers_[0].offset; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  // Drops the last n tokens from every layer (for prompt-cache reuse).
  void trim(int n);
  void reset();
  std::vector<array> state() const;
  size_t nbytes() const;

 private:
  struct Layer {
    std::optional<array> keys, values;
    int offset = 0;
  };
  void grow(Layer& c, mlx::core::Shape k_shape, mlx::core::Shape v_shape, mlx::core::Dtype dtype, int n);
  std::vector<Layer> layers_;
  int step_;
};

// Opt-in capture of activations during forward. Names follow the weights:
//   "embed"                        (B, L, D) token embeddings
//   "layers.N.residual"            (B, L, D) residual stream after block N
//   "layers.N.self_attn.q|k|v"     (B, H|Hk, L, Dh) after norms and RoPE
//   "layers.N.self_attn.probs"     (B, H, L, Lk) softmax attention probabilities
//   "layers.N.mlp.act"             (B, L, I) act(gate) * up
// Off (a null Hooks*) the forward pass is the plain one.
struct Hooks {
  bool residual = false;
  bool attention = false;
  bool qkv = false;
  bool mlp = false;
  std::vector<int> layers;  // empty: all layers
  // Optional edit of a named activation (ablation, steering); return it unchanged to observe.
  std::function<array(const std::string& name, const array& value)> edit;
  std::map<std::string, array> captured;

  bool wants(int layer) const;
  void capture(const std::string& name, const array& value);
  array apply(const std::string& name, const array& value) const;
};

}  // namespace lmlab::nn
