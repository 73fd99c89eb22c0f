// FamilySpec: all a model family knows, in one place: the model_type and GGUF
// architecture names it answers to, how its GGUF tensors and hyper-parameters
// map onto Hugging Face names, its checkpoint quirks (sanitize) and its
// factory. io/ reads files without knowing any family; the registry finds the
// spec and models/gguf.cpp applies its maps.
//
// A family is one file in src/models/families/ named after its model_type that
// defines `const FamilySpec& <model_type>_family()`; CMake lists those files
// into the built-in registry. register_family() adds one at run time (tests,
// extensions).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <mlx/dtype.h>
#include <nlohmann/json.hpp>

#include "lmlab/core.h"
#include "lmlab/model.h"
#include "lmlab/weights.h"

namespace lmlab::models {

struct FamilySpec {
  std::string name;                             // e.g. "llama"
  std::vector<std::string> model_types;         // config.json model_type values (name first, then aliases)
  std::vector<std::string> gguf_architectures;  // GGUF general.architecture values
  // GGUF tensor names → Hugging Face names for this family's blocks
  // (`blk.N.<key>` → `model.layers.N.<value>`) and top-level tensors, beyond
  // the Llama names every family shares (gguf_llama_names()).
  std::map<std::string, std::string> gguf_block_names, gguf_top_names;
  // llama.cpp's converter interleaved the two rotary halves of q/k rows.
  bool gguf_permuted_qk = false;
  // Family-specific config.json keys from GGUF metadata (after the shared
  // ones: sizes, heads, eps, rope base and scaling, context length, ids).
  std::function<void(const Metadata& meta, const std::string& arch, nlohmann::json& config)> gguf_config;
  // Checkpoint quirks before the model is built: drop, rename or fold tensors
  // (e.g. GGUF rope factors into the config).
  std::function<void(Weights& weights, nlohmann::json& config)> sanitize;
  // Builds the model from a sanitized checkpoint (checking every tensor it reads).
  std::function<std::unique_ptr<Model>(const ModelConfig& config, Weights weights, mlx::core::Dtype dtype)> make;
};

// The spec answering to a config model_type or a GGUF architecture; nullptr when none.
const FamilySpec* find_family(const std::string& model_type);
const FamilySpec* find_gguf_family(const std::string& architecture);
// Adds a family at run time; throws std::invalid_argument when one of its
// names is already taken.
void register_family(FamilySpec spec);
std::vector<const FamilySpec*> families();

// The GGUF ↔ HF names of the Llama layout that families share
// (attn_q → self_attn.q_proj, ffn_norm → post_attention_layernorm, ...).
const std::map<std::string, std::string>& gguf_llama_block_names();
const std::map<std::string, std::string>& gguf_llama_top_names();

}  // namespace lmlab::models
