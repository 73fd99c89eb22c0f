// The arithmetic behind ppl, KL and the sweeps: a model's log-probabilities at
// the scored positions of token windows, and the per-token comparison of two
// such tables. Shared by quant/perplexity.cpp and analysis/sweep*.cpp.
#pragma once

#include <span>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/nn.h"
#include "lmlab/quant.h"

namespace lmlab::quant::detail {

// Consecutive windows of one width that run as one forward pass: rows × context ≤ batch_tokens.
std::vector<std::span<const Window>> batches(const std::vector<Window>& windows, const WindowOptions& o);

// The scored positions of `windows` (one batch), in token order.
struct Scored {
  mlx::core::array logprobs;  // (n, V) float32, log-softmax of the logits
  mlx::core::array targets;   // (n) int32, the tokens that followed
};
// One forward pass over the batch (a shorter window would be padded on the
// right, which a causal model never sees from earlier positions).
// With hooks, the forward pass captures or edits activations (nn::Hooks).
Scored score(const Model& m, std::span<const int> tokens, std::span<const Window> windows,
             nn::Hooks* hooks = nullptr);

// Per scored token, all (n) float32 unless said otherwise.
struct Compared {
  mlx::core::array nll;       // −log p_model(target)
  mlx::core::array nll_ref;   // −log p_ref(target)
  mlx::core::array kl;        // KL(ref ‖ model), nats
  mlx::core::array same_top1;  // bool: both argmaxes equal
};
Compared compare(const mlx::core::array& logprobs_ref, const mlx::core::array& logprobs,
                 const mlx::core::array& targets);

// −log p(target) per row.
mlx::core::array nll(const mlx::core::array& logprobs, const mlx::core::array& targets);

// Evaluates and appends an (n) array to a double vector.
void append(std::vector<double>& out, const mlx::core::array& a);

}  // namespace lmlab::quant::detail
