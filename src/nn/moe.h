// Mixture-of-experts MLP (mlx-lm's MixtralSparseMoeBlock, Qwen3MoeSparseMoeBlock
// and SwitchGLU): a router scores the E experts for each token, the top_k win,
// each winner's gated MLP runs through a gathered matmul over the experts'
// stacked weights (mx::gather_mm, or mx::gather_qmm when quantized), and the
// outputs are summed with the routing weights.
//
// Shapes: x (B, L, D); experts' projections stacked as (E, out, in): gate and
// up (E, I, D), down (E, D, I), packed along `in` when quantized; router (E, D).
#pragma once

#include <functional>
#include <string>

#include <mlx/array.h>

#include "lmlab/weights.h"
#include "nn/block.h"

namespace lmlab::nn {

// The selected experts of each token and their weights, both (B, L, top_k):
// indices uint32, weights in the logits' dtype.
struct Routes {
  array experts, weights;
};
Routes route(const array& logits, const MoeSpec& spec);

// The routed gated MLPs, summed: (B, L, D). `act` sees (and may replace) the
// selected experts' activations act(gate x) · up x, (B, L, top_k, I).
array moe_mlp(const Weights& w, const BlockSpec& spec, const BlockNames& names, const array& x, bool training,
              const std::function<array(const array&)>& act);

// Checks the router (E, D) and the stacked experts' shapes (E, I, D) and
// (E, D, I) against the spec; throws std::invalid_argument naming the tensor.
void check_moe(const Weights& w, const BlockSpec& spec, const BlockNames& names);

}  // namespace lmlab::nn
