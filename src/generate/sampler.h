// Sampling on MLX arrays, in mlx-lm's order: logits processors (repetition
// penalty), log-softmax, then top-p, min-p and top-k filters, then a
// categorical draw at temperature `temp` (argmax when temp is 0).
#pragma once

#include <optional>

#include <mlx/array.h>

#include "lmlab/generate.h"

namespace lmlab::generation {

using mlx::core::array;

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg);
  // logits: (V,) or (1, V) → scalar int32 token id (lazy). history: recent
  // token ids (int32, 1-D) for the repetition penalty, may be empty.
  array sample(const array& logits, const std::optional<array>& history);

  // The filtered log-probabilities before the draw (for tests and `predict`).
  array filtered_logprobs(const array& logprobs) const;

 private:
  SamplerConfig cfg_;
  std::optional<array> key_;
};

array apply_repetition_penalty(const array& logits, const array& history, float penalty);
array apply_top_p(const array& logprobs, float top_p);
array apply_min_p(const array& logprobs, float min_p);
array apply_top_k(const array& logprobs, int k);

}  // namespace lmlab::generation
