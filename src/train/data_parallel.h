// Data-parallel training under `lmlab launch` (as mlx_lm.lora under
// mlx.launch): every rank holds the whole model and the same adapters, takes
// its share of each batch, and the ranks sum their gradients once per
// optimizer update, so every rank applies the same update.
//
// mlx-lm averages the ranks' gradients (average_gradients: the sum divided by
// the number of ranks), which is the combined batch's gradient only when every
// share holds as many target tokens. Here each share's gradient is weighted by
// its tokens over the combined batch's before the sum,
//   Σ_r (n_r / N) · ∇(S_r / n_r) = ∇(Σ_r S_r / N),
// the gradient of the combined batch's per-token mean loss, so N ranks take
// the step one process takes on the whole batch, whatever the lengths.
#pragma once

#include <memory>
#include <vector>

#include <mlx/array.h>
#include <mlx/distributed/distributed.h>

#include "train/reducer.h"

namespace lmlab::train {

// This rank's examples of a batch: every size-th one from position rank (the
// split of mlx-lm's iterate_batches).
std::vector<int> rank_share(const std::vector<int>& batch, int rank, int size);

// One batch seen from one share of it: the combined batch's mean loss and
// target tokens, and this share's gradients weighted by n_r / N, ready to be
// summed across the ranks (after accumulation). `loss` is the share's mean over
// its `tokens` targets. One sum of [loss·tokens, tokens].
struct CombinedShare {
  mlx::core::array loss, tokens;
  std::vector<mlx::core::array> grads;
};
CombinedShare combine_share(const mlx::core::array& loss, const mlx::core::array& tokens,
                            std::vector<mlx::core::array> grads, GradientReducer& r);

// A reducer over MLX's distributed group: every sum is one all_sum of the
// arrays flattened into one float32 buffer (results cast back to each dtype).
std::shared_ptr<GradientReducer> group_reducer(const mlx::core::distributed::Group& group);

}  // namespace lmlab::train
