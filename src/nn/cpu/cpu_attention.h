// lmlab's CPU attention of new query rows (a decode step or a prefill chunk)
// against a KV cache: an MLX primitive that reads keys and values in place
// through their strides (a slice of the cache buffer) and runs on lmlab's
// compute pool. MLX's CPU scaled_dot_product_attention composes two matmuls,
// which copy the cache slice into packed buffers, a mask and a single-threaded
// softmax with a scalar exp: most of the attention cost at decode time and about
// a quarter of prefill (docs/benchmarks.md).
//
// Contract: float32 only; runs on MLX's CPU stream thread plus lmlab's compute
// pool; reads q, k, v in place (never copies the cache), writes only its output.
#pragma once

#include <optional>

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn {

using mlx::core::array;

// softmax(scale · q kᵀ) v with the causal mask bottom-right aligned (query row
// i of L sees keys 0..Lk - L + i; with a sliding window W > 0 only the last W of
// them), grouped-query heads (H a multiple of Hk).
// q: (B, H, L, D), k, v: (B, Hk, Lk, D) → (B, H, L, D), like
// mx::fast::scaled_dot_product_attention(q, k, v, scale, mask = attention_mask(L, Lk, W)).
array cpu_attention(const array& q, const array& k, const array& v, float scale, int window = 0,
                    mlx::core::StreamOrDevice s = {});

// The (L, Lk) boolean mask of which keys each of L query rows may see (the
// rows are the last L positions of Lk), or nullopt when every row sees every key.
std::optional<array> attention_mask(int L, int Lk, int window, mlx::core::StreamOrDevice s = {});

// Whether cpu_attention handles these inputs: a CPU stream, float32, L ≥ 1 and
// Lk ≥ L; callers use MLX's attention otherwise.
bool cpu_attention_is_native(const array& q, const array& k, const array& v,
                             mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn
