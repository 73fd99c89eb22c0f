// Cross entropy over a vocabulary as two lmlab CPU primitives: the loss
// log Σ_j e^z_j − z_target per row, and its derivative g · (softmax(z) − onehot)
// per row. Each is one pass over the logits (the derivative two), split by rows
// over lmlab's compute pool, with a vectorized exp; MLX's composition (max,
// subtract, logsumexp, take_along_axis, and their derivatives) is several
// single-threaded passes with a scalar exp, a fifth of a LoRA step on the CPU.
//
// Contract: float32 logits on a CPU stream, targets of their leading shape;
// anything else is MLX's composition. A target outside [0, V) gives a NaN loss.
// Reads its inputs, writes only its output.
#pragma once

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn {

using mlx::core::array;

// The per-row loss of logits (..., V) against integer targets (...), float32,
// as mlx.nn.losses.cross_entropy computes it; differentiable in the logits.
array cross_entropy(const array& logits, const array& targets, mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn
