// The Llama transformer (pre-norm, GQA attention with RoPE, SwiGLU MLP) and the
// knobs its descendants turn: Qwen2 adds q/k/v biases, Qwen3 adds q/k RMSNorm.
// Mistral and SmolLM2 checkpoints are plain Llama.
#pragma once

#include <memory>

#include "lmlab/model.h"

namespace lmlab::models {

struct LlamaArgs {
  float rms_norm_eps = 1e-6f;
  bool attention_bias = false;  // q/k/v/o biases (Llama's attention_bias)
  bool qkv_bias = false;        // q/k/v biases only (Qwen2)
  bool mlp_bias = false;
  bool qk_norm = false;         // RMSNorm on q and k per head (Qwen3)
  nn::RoPE rope;

  static LlamaArgs from_config(const ModelConfig& c);
};

std::unique_ptr<Model> make_llama_family(const ModelConfig& config, LlamaArgs args,
                                         Weights weights, mlx::core::Dtype dtype);

// Shared load steps: drop tensors no family uses, cast floats, check shapes.
void drop_unused(Weights& w, const ModelConfig& c);
void cast_floats(Weights& w, mlx::core::Dtype dtype);
// Checks `P.weight` is a (out, in) matrix, or its packed quantized form.
void check_linear(const Weights& w, const std::string& prefix, int out, int in);
void check_vector(const Weights& w, const std::string& name, int n);

}  // namespace lmlab::models
