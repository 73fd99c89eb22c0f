// Where data-parallel training meets the trainer: each process computes the
// loss and gradients of its own share of every batch (every size()-th example
// from its rank, as mlx-lm's iterate_batches splits a batch), and the reducer
// sums across processes. The trainer weights each share by its target tokens
// before the sum (train/data_parallel.h), so that N processes take the step
// one process takes on the combined batch, whatever the shares' lengths.
// Without one, the trainer runs on one process.
#pragma once

#include <vector>

#include <mlx/array.h>

namespace lmlab::train {

struct GradientReducer {
  virtual ~GradientReducer() = default;
  virtual int rank() const = 0;  // this process, 0 ≤ rank < size; rank 0 alone writes files
  virtual int size() const = 0;  // the processes sharing each batch
  // Each array summed over the processes (one collective for the list), the
  // same on every process. Called with the gradients once per optimizer update
  // (after accumulation) and with [loss·tokens, tokens] once per batch.
  virtual std::vector<mlx::core::array> sum(std::vector<mlx::core::array> xs) = 0;
};

}  // namespace lmlab::train
