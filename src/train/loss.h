// The training loss: next-token cross entropy over the targets the mask keeps,
// averaged over them (mlx-lm's default_loss), optionally with every block
// recomputed in the backward pass (gradient checkpointing).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <mlx/array.h>

#include "models/transformer.h"
#include "train/batches.h"

namespace lmlab::train {

struct LossOptions {
  // mlx-lm's mask also counts the target after each sequence's last token (a
  // pad id 0): kept only to reproduce mlx_lm.lora (mlx_lm_compat).
  bool pad_target = false;
  // Recompute each block in the backward pass; `trainable` are the names whose
  // gradients flow (each block takes its own as inputs of its checkpoint).
  bool checkpoint = false;
  const std::vector<std::string>* trainable = nullptr;
  uint64_t dropout_seed = 0;  // the dropout masks of this step (equal in a block's recomputation)
};

// (mean loss, number of targets) of one batch. inputs tokens[:, :-1] predict
// tokens[:, 1:]; target position p (1-based) counts when offset ≤ p < length
// (≤ length with pad_target).
std::pair<mlx::core::array, mlx::core::array> batch_loss(const models::Transformer& t, const Batch& b,
                                                         const LossOptions& o);

// Cross entropy of logits (..., V) against integer targets (...), in float32, as
// mlx.nn.losses.cross_entropy (max-shifted logsumexp minus the target's logit).
mlx::core::array cross_entropy(const mlx::core::array& logits, const mlx::core::array& targets);

}  // namespace lmlab::train
