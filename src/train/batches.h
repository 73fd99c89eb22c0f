// Batches as mlx-lm's iterate_batches makes them: fixed groups of batch_size
// examples after sorting, the last partial group dropped, the group order
// shuffled every epoch with numpy's generator; each batch padded with 0 to
// 1 + 32·⌈longest/32⌉ tokens, capped at max_seq_length (longer ones truncated).
#pragma once

#include <vector>

#include <mlx/array.h>

#include "lmlab/data.h"

namespace lmlab::train {

struct Batch {
  mlx::core::array tokens;   // (B, T) int32, padded with 0
  mlx::core::array lengths;  // (B, 2) int32: prompt offset (0 without masking), length after truncation
  int longest = 0;           // before truncation
};

// The example indices of each batch. by_length sorts by token count (the order
// mlx-lm means: similar lengths share a batch); otherwise by the records'
// field count as mlx-lm's CacheDataset.itemlen does, i.e. file order.
std::vector<std::vector<int>> batch_indices(const std::vector<Example>& examples, int batch_size, bool by_length);

Batch make_batch(const std::vector<Example>& examples, const std::vector<int>& indices, int max_seq_length,
                 bool mask_prompt);

// The width a batch of sequences this long is padded to.
int padded_width(int longest, int max_seq_length);

// The longest example of a batch (before truncation).
int longest_example(const std::vector<Example>& examples, const std::vector<int>& indices);

// The target positions p (1-based, p ≤ T - 1) the loss counts in a row of width
// T with prompt offset `offset` and `length` real tokens: max(1, offset) through
// length - 1 (through length with pad_target, mlx-lm's mask); first > last when none.
struct TargetRange {
  int first, last;
};
TargetRange counted_range(int offset, int length, int T, bool pad_target);

}  // namespace lmlab::train
