// Pieces the sweep and atlas sources share: the baseline a run compares every
// point with, and what an edit did to the stored numbers.
#pragma once

#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/sweep.h"
#include "lmlab/weights.h"

namespace lmlab::analysis::detail {

// A point's status from its KL and answers (healthy needs both), and whether
// it has crossed the bisection's criterion.
std::string classify(const SweepPoint& p, const Thresholds& t, const std::vector<bool>& baseline);
bool crossed(const Criterion& c, const SweepPoint& p, const SweepReport& r);

// The unperturbed model's log-probabilities over the evaluation text, batch by
// batch, computed once per run; with `keep_residuals`, also every block's
// output (the residual stream), so that a pass after an edit of layer l can
// start at layer l (see diverge).
struct Baseline {
  std::vector<quant::Window> windows;
  std::vector<mlx::core::array> logprobs;  // per batch, evaluated
  std::vector<mlx::core::array> targets;
  std::vector<std::vector<mlx::core::array>> residuals;  // per batch, per block: its output (evaluated); or empty
  double ppl = 0;
};
Baseline make_baseline(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o,
                       bool keep_residuals = false);

// The model now against the baseline. `first_layer`: the first block whose
// weights may differ from the baseline's (the number of blocks: only the head
// does). With the baseline's residuals the pass takes block first_layer − 1's
// output from the baseline and computes only the blocks from first_layer on
// and the head: the same numbers, since the blocks before it are unchanged.
struct Divergence {
  quant::Summary kl;
  double top1 = 0, ppl = 0;
};
Divergence diverge(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o,
                   const Baseline& b, int first_layer = 0);

// The first block an edit of these tensors can change: N for model.layers.N.*,
// the number of blocks for the output head alone (lm_head.*, model.norm.*), 0
// for anything else (the embedding, ...).
int first_layer_changed(const Model& m, const std::vector<std::string>& tensors);

// Whether a baseline should keep its residuals: some pass can start after
// block 0 (first_layer > 0) and they fit in kResidualBudget bytes (blocks ×
// evaluated positions × hidden × 4).
inline constexpr size_t kResidualBudget = size_t{2} << 30;
bool keep_residuals(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o, int first_layer);

// The evaluation text's tokens: `given`, or the built-in text; checked against the vocabulary.
std::vector<int> eval_tokens(const LoadedModel& m, const std::vector<int>& given);

// What an edit did, comparing the weights before (a copy of the handles taken
// before Surgery::apply) with the model's weights now, over the edited
// tensors; and per field position, the histogram of field changes of edited
// quantized weights whose words changed in place (nullopt when none did).
struct Measured {
  Change change;
  std::optional<FieldHistogram> fields;
};
Measured measure(const Weights& before, const Weights& after, const std::vector<std::string>& edited);
// The first `count` words of row 0 of the first edited quantized weight.
std::vector<WordExample> example_words(const Weights& before, const Weights& after,
                                       const std::vector<std::string>& edited, int count);
// The mean packed word (as an unsigned integer) of the target's quantized weights; 0 when dense.
double mean_word(const Weights& w, const std::vector<std::string>& tensors);

// "0x5098B7A7".
std::string hex_word(uint32_t w);
std::string hex64(uint64_t h);

}  // namespace lmlab::analysis::detail
