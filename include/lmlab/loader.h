// Resolving and loading a model with its tokenizer and chat template: the one
// shared step behind every command and the server. MLX-free, so frontends may
// include it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "lmlab/chat.h"
#include "lmlab/context.h"
#include "lmlab/core.h"
#include "lmlab/tokenizer.h"

namespace lmlab {

class Model;

struct LoadOptions {
  // GGUF file, model directory, Hugging Face model id ("org/name", or
  // "org/name/file.gguf"; see hub.h), a known model's short name ("gemma3-270m",
  // core.h), or "" for the default model. A local path wins.
  std::string model;
  std::string revision;  // Hub branch, tag or commit ("" = main)
  std::string dtype;  // compute dtype: "" (float32 on CPU, float16 on GPU), float32, float16, bfloat16
  // How activations meet quantized weights on CPU (QuantSpec::activations):
  //  "" or "float"  float32 activations times the exactly dequantized weights
  //                 (MLX's and mlx-lm's arithmetic).
  //  "q8"           activations rounded to int8 blocks first: GGUF Q4_0/Q4_1/Q8_0
  //                 tensors exactly as llama.cpp's CPU kernels compute them (Q8_0 or
  //                 Q8_1 activations), other 4/8-bit affine layers with q8_0. Faster
  //                 on CPU, and adds the rounding noise llama.cpp has.
  // GPU streams always compute in float.
  std::string activations;
  // Fused decoder steps (one node per block on CPU or GPU) where they apply;
  // false always runs the composed MLX ops (for comparison and debugging).
  bool fused = true;
  // An mlx-lm adapter folder (adapter_config.json + adapters.safetensors) to
  // apply: LoRA/DoRA adapters attached, or full fine-tuned layers swapped in.
  std::string adapter_path;
  // Under `lmlab launch`, split the model over the Context's ranks (tensor
  // parallelism: each rank loads only its shard; forward passes are
  // collective). Off for data parallelism, where every rank holds it whole.
  bool tensor_parallel = true;
};

struct LoadedModel {
  std::shared_ptr<Model> model;
  Tokenizer tokenizer;
  std::optional<ChatTemplate> chat_template;
  std::string path;    // resolved source
  std::string format;  // "gguf" or "safetensors"
  Metadata gguf_metadata;  // empty for directories
  double load_seconds = 0;
  size_t weight_bytes = 0;  // held by this process: its shard under tensor parallelism
};

// Throws std::runtime_error for missing/unreadable/corrupt files and
// lmlab::Unsupported for architectures or tensor types lmlab cannot run.
LoadedModel load_model(const Context& ctx, const LoadOptions& opts);

// Loads only the tokenizer (and its chat template) of a model: a GGUF file (its
// metadata, no tensors), a model directory, a tokenizer.json file or a Hub id;
// "" is the default model.
Tokenizer load_tokenizer(const std::string& path, const std::string& revision = "");

// Where `model` (as LoadOptions::model) is on disk: the path itself, the
// default model for "", or the Hub snapshot (downloaded when missing).
std::filesystem::path resolve_model(const std::string& model, const std::string& revision = "");

// The context length the model was trained for (0 when unknown).
int context_length(const LoadedModel& m);

}  // namespace lmlab
