// GGUF files as Hugging Face checkpoints: the hyper-parameters as a
// config.json object and the tensors under HF names, through the FamilySpec of
// the file's architecture (io/ reads GGUF without knowing any family).
#pragma once

#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "lmlab/model.h"
#include "lmlab/weights.h"

namespace lmlab::models {

// The config.json equivalent of a GGUF header (model_type, hidden_size,
// num_hidden_layers, rope_theta, ...). Throws lmlab::Unsupported for an
// architecture no family answers to.
nlohmann::json gguf_config(const io::GgufFile& file);

// Renames GGUF tensors (`blk.0.attn_q.weight`) to HF names
// (`model.layers.0.self_attn.q_proj.weight`) and undoes llama.cpp's q/k row
// permutation where the family's converter applied it. Throws lmlab::Unsupported
// naming a tensor the family does not know.
Weights gguf_weights(Weights gguf, const nlohmann::json& config);

// The reverse, for writing GGUF files: HF names → the family's GGUF names,
// llama.cpp's q/k row permutation reapplied (to packed weights, scales and
// biases alike: they share rows), quantization specs kept under the GGUF
// names. Throws lmlab::Unsupported naming a tensor the family cannot name.
Weights hf_to_gguf_weights(const Weights& hf, const ModelConfig& config);

}  // namespace lmlab::models
