// Weights: the one ordered enumeration of a model's tensors, by their
// Hugging Face / MLX names (`model.layers.3.self_attn.q_proj.weight`), with the
// quantization of each quantized module. Load, save, inspect, surgery, LoRA
// targeting and sweeps all walk this one list.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mlx/array.h>

namespace lmlab {

// Quantization of one module: affine (or fp) as MLX packs it, `P.weight` packed
// uint32 with `P.scales` and `P.biases` (affine only); or a GGUF type kept as its
// raw blocks, `P.weight` uint8 and mode "q6_k", "q3_k"... (lmlab/ggml.h).
struct QuantSpec {
  int bits = 4;
  int group_size = 64;
  std::string mode = "affine";
  // How activations meet these weights on CPU: "" in float32 (MLX's arithmetic),
  // "q8_0"/"q8_1" rounded to int8 blocks first, as llama.cpp computes with GGUF
  // Q4_0/Q8_0 and Q4_1 weights (nn::quantized_matmul). Not part of the stored format.
  std::string activations;
  bool operator==(const QuantSpec&) const = default;
  bool same_format(const QuantSpec& o) const {
    return bits == o.bits && group_size == o.group_size && mode == o.mode;
  }
  // Values per row stored in `stored` columns of `P.weight`: uint32 words
  // (affine), or bytes of whole blocks (ggml block modes, lmlab/ggml.h).
  int64_t unpacked_columns(int64_t stored) const;
};

// A low-rank adapter on module `P` (mlx-lm's LoRALinear / DoRALinear): the
// tensors `P.lora_a` (in, r) and `P.lora_b` (r, out) in the same tree, and for
// DoRA the magnitude `P.m` (out). y = base(x) + scale · (dropout(x) A) B; DoRA
// then rescales each output row to m / ‖W + scale · Bᵀ Aᵀ‖.
struct AdapterSpec {
  std::string kind = "lora";  // "lora" or "dora"
  float scale = 20.0f;        // a plain multiplier, as mlx-lm's `scale` (not alpha / r)
  float dropout = 0.0f;       // applied to x in training only
  bool operator==(const AdapterSpec&) const = default;
};

class Weights {
 public:
  // Inserts or replaces a tensor, keeping first-insertion order.
  void set(const std::string& name, const mlx::core::array& a);
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // Throws std::invalid_argument naming the tensor when it is missing.
  const mlx::core::array& at(const std::string& name) const;
  const mlx::core::array* find(const std::string& name) const;
  void erase(const std::string& name);
  void rename(const std::string& from, const std::string& to);

  // Quantization of module `prefix` (a name without `.weight`), if quantized.
  const QuantSpec* quant(const std::string& prefix) const;
  void set_quant(const std::string& prefix, const QuantSpec& q) {
    quant_[prefix] = q;
    touch();
  }
  void clear_quant(const std::string& prefix) {
    quant_.erase(prefix);
    touch();
  }
  const std::map<std::string, QuantSpec>& quantized_modules() const { return quant_; }

  // The adapter on module `prefix`, if one is attached (its tensors are
  // `prefix.lora_a`, `prefix.lora_b` and, for DoRA, `prefix.m`).
  const AdapterSpec* adapter(const std::string& prefix) const;
  void set_adapter(const std::string& prefix, const AdapterSpec& a) {
    adapters_[prefix] = a;
    touch();
  }
  // Detaches the adapter and erases its tensors.
  void clear_adapter(const std::string& prefix);
  const std::map<std::string, AdapterSpec>& adapted_modules() const { return adapters_; }

  // Changes with every change to the tree (a tensor set, erased or renamed, a
  // quantization or adapter attached or cleared), and no two trees with
  // different contents share one (a copy shares its original's until either
  // changes): what is read from the tree may be kept while it is unchanged.
  uint64_t stamp() const { return stamp_; }

  size_t size() const { return items_.size(); }
  const std::vector<std::pair<std::string, mlx::core::array>>& items() const { return items_; }
  std::vector<mlx::core::array> arrays() const;
  size_t nbytes() const;

 private:
  void touch() { stamp_ = next_stamp(); }
  static uint64_t next_stamp();

  std::vector<std::pair<std::string, mlx::core::array>> items_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, QuantSpec> quant_;
  std::map<std::string, AdapterSpec> adapters_;
  uint64_t stamp_ = next_stamp();
};

}  // namespace lmlab
