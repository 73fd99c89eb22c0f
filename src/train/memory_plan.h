// The memory plan of a training run: the peak the engine will reach, from the
// model's weights, the trained tensors with their gradients and optimizer
// state, and what the backward pass keeps of the forward pass at the longest
// batch (less with gradient checkpointing); and which setting to change when
// the peak exceeds a limit. The activation counts follow the composed training
// graph op by op (docs/finetuning.md shows the arithmetic and the check
// against measured peaks).
#pragma once

#include <cstdint>

#include "lmlab/model.h"
#include "lmlab/train.h"

namespace lmlab::train {

struct MemoryInputs {
  int64_t weight_bytes = 0;       // the model as loaded
  int64_t trainable_elements = 0; // float32 elements trained
  int optimizer_slots = 0;        // Adam 2, SGD with momentum 1
  bool accumulate = false;        // a gradient accumulation buffer
  int layers = 0, trained_from = 0;  // activations are kept from block `trained_from` on
  int hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, vocab = 0;
  int lora_rank = 0;              // 0: full fine-tuning
  int batch = 0, tokens = 0;      // the longest batch: B sequences of L input tokens
  bool checkpoint = false;
  int act_bytes = 4;              // bytes per activation (the compute dtype)
  bool quantized_head = false;    // the output projection is packed (the logits' backward dequantizes it)
  int logit_rows = 0;             // the most target positions the loss counts in one batch (the head's rows)
  bool attention_scores = true;   // attention keeps B·H·L² scores (MLX's); lmlab's CPU kernel keeps none
};

MemoryPlan plan_memory(const MemoryInputs& in, double limit_gb);

// Parameters of the model, counted unpacked (a quantized weight counts its logical elements).
int64_t parameter_count(const Model& m);

}  // namespace lmlab::train
