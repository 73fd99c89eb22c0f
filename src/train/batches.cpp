// Batches after mlx_lm/tuner/trainer.py (iterate_batches).
#include "train/batches.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

namespace mx = mlx::core;

namespace lmlab::train {

std::vector<std::vector<int>> batch_indices(const std::vector<Example>& ex, int batch_size, bool by_length) {
  const int n = static_cast<int>(ex.size());
  if (n < batch_size)
    throw std::invalid_argument(
        fmt::format("[train] a split needs at least batch_size = {} records but has {}; lower --batch-size",
                    batch_size, n));
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
    return by_length ? ex[a].tokens.size() < ex[b].tokens.size() : ex[a].keys < ex[b].keys;
  });
  std::vector<std::vector<int>> batches;
  for (int i = 0; i + batch_size <= n; i += batch_size) batches.emplace_back(idx.begin() + i, idx.begin() + i + batch_size);
  return batches;
}

int padded_width(int longest, int max_seq_length) {
  constexpr int pad_to = 32;
  return std::min(1 + pad_to * ((longest + pad_to - 1) / pad_to), max_seq_length);
}

int longest_example(const std::vector<Example>& ex, const std::vector<int>& indices) {
  int longest = 0;
  for (int i : indices) longest = std::max(longest, static_cast<int>(ex[i].tokens.size()));
  return longest;
}

TargetRange counted_range(int offset, int length, int T, bool pad_target) {
  return {std::max(1, offset), std::min(T - 1, pad_target ? length : length - 1)};
}

Batch make_batch(const std::vector<Example>& ex, const std::vector<int>& indices, int max_seq_length,
                 bool mask_prompt) {
  const int B = static_cast<int>(indices.size());
  const int longest = longest_example(ex, indices);
  const int T = padded_width(longest, max_seq_length);
  std::vector<int32_t> tokens(static_cast<size_t>(B) * T, 0), lengths(2 * B);
  for (int b = 0; b < B; ++b) {
    const Example& e = ex[indices[b]];
    const int len = std::min(static_cast<int>(e.tokens.size()), max_seq_length);
    std::copy(e.tokens.begin(), e.tokens.begin() + len, tokens.begin() + static_cast<size_t>(b) * T);
    lengths[2 * b] = mask_prompt ? e.offset : 0;
    lengths[2 * b + 1] = len;
  }
  return Batch{mx::array(tokens.begin(), {B, T}, mx::int32), mx::array(lengths.begin(), {B, 2}, mx::int32), longest};
}

}  // namespace lmlab::train
