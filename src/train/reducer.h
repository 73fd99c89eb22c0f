// Where data-parallel training meets the trainer: each process computes the
// loss and gradients of its own share of a batch, and a reducer combines them
// across processes before the optimizer update, as mlx-lm's trainer does with
// average_gradients and mx.distributed.all_sum. Without one, the trainer runs
// on one process.
#pragma once

#include <vector>

#include <mlx/array.h>

namespace lmlab::train {

struct GradientReducer {
  virtual ~GradientReducer() = default;
  // The mean over processes of each array (gradients summed over the
  // accumulation steps, right before each update; each iteration's mean loss).
  virtual std::vector<mlx::core::array> average(std::vector<mlx::core::array> xs) = 0;
  // The sum over processes (token counts; validation loss·tokens and tokens).
  virtual mlx::core::array sum(const mlx::core::array& x) = 0;
};

}  // namespace lmlab::train
