// The loss after mlx_lm/tuner/trainer.py (default_loss) and
// mlx/nn/losses.py (cross_entropy); checkpointing after trainer.grad_checkpoint.
#include "train/loss.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/cpu/cross_entropy.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::train {

array cross_entropy(const array& logits, const array& targets) {
  if (mx::default_device() == mx::Device::gpu)
    return mx::astype(mx::fast::cross_entropy(logits, targets), mx::float32);
  return nn::cross_entropy(logits, targets);
}

namespace {

// The block with its trainable tensors as inputs of an mx::checkpoint, so they
// get gradients while the block's activations are recomputed, not kept.
array checkpointed_block(const models::Transformer& t, const nn::DecoderBlock& block, const array& h,
                         nn::ForwardState& st, const LossOptions& o) {
  const std::string prefix = fmt::format("model.layers.{}.", block.layer());
  std::vector<std::string> names;
  std::vector<array> inputs{h};
  for (const std::string& n : *o.trainable)
    if (n.rfind(prefix, 0) == 0) {
      names.push_back(n);
      inputs.push_back(t.weights().at(n));
    }
  Weights& w = const_cast<Weights&>(t.weights());
  const bool training = st.training;
  const uint64_t seed = o.dropout_seed * 1000003ull + block.layer();
  auto fn = [&t, &block, &w, names, training, seed](const std::vector<array>& in) {
    for (size_t i = 0; i < names.size(); ++i) w.set(names[i], in[i + 1]);
    // The same dropout masks in the forward pass and in the recomputation.
    if (training) mx::random::seed(seed);
    nn::ForwardState inner{.training = training};
    return std::vector<array>{block(t.weights(), in[0], inner)};
  };
  return mx::checkpoint(fn)(inputs)[0];
}

}  // namespace

namespace {

// The flat positions b·(T−1) + p−1 of the targets the loss counts: target p
// (1-based) of sequence b when offset ≤ p < length (≤ length with pad_target).
std::vector<int32_t> counted_targets(const Batch& b, bool pad_target) {
  const int B = b.tokens.shape(0), T = b.tokens.shape(1);
  array lengths = mx::astype(b.lengths, mx::int32);
  mx::eval(lengths);
  const int32_t* l = lengths.data<int32_t>();
  std::vector<int32_t> rows;
  for (int i = 0; i < B; ++i) {
    const auto [first, last] = counted_range(l[2 * i], l[2 * i + 1], T, pad_target);
    for (int p = first; p <= last; ++p) rows.push_back(i * (T - 1) + p - 1);
  }
  return rows;
}

}  // namespace

std::pair<array, array> batch_loss(const models::Transformer& t, const Batch& b, const LossOptions& o) {
  const int B = b.tokens.shape(0), T = b.tokens.shape(1);
  array inputs = mx::slice(b.tokens, {0, 0}, {B, T - 1});
  array targets = mx::slice(b.tokens, {0, 1}, {B, T});
  const models::Transformer::BlockRunner checkpointed = [&](const nn::DecoderBlock& block, const array& h,
                                                            nn::ForwardState& st) {
    return checkpointed_block(t, block, h, st, o);
  };
  array hidden = t.hidden(inputs, o.checkpoint ? &checkpointed : nullptr);
  // The head and the cross entropy only at the positions the loss counts: the
  // prompt under masking and the padding never reach the vocabulary-wide
  // product (the same loss; the head is a fifth of the default model's work).
  const std::vector<int32_t> rows = counted_targets(b, o.pad_target);
  const int n = static_cast<int>(rows.size());
  if (n == 0) {
    array ce = cross_entropy(t.head(hidden), targets);
    return {mx::divide(mx::sum(mx::multiply(ce, array(0.0f))), array(0.0f)), array(0, mx::int32)};
  }
  const array idx(rows.begin(), {n}, mx::int32);
  array h = mx::take(mx::reshape(hidden, {B * (T - 1), hidden.shape(-1)}), idx, 0);
  array ce = cross_entropy(t.head(mx::expand_dims(h, 0)), mx::expand_dims(mx::take(mx::flatten(targets), idx), 0));
  return {mx::divide(mx::sum(mx::astype(ce, mx::float32)), array(static_cast<float>(n))), array(n, mx::int32)};
}

}  // namespace lmlab::train
