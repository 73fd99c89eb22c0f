// The loss after mlx_lm/tuner/trainer.py (default_loss) and
// mlx/nn/losses.py (cross_entropy); checkpointing after trainer.grad_checkpoint.
#include "train/loss.h"

#include <fmt/format.h>
#include <mlx/mlx.h>

namespace mx = mlx::core;
using mx::array;

namespace lmlab::train {

array cross_entropy(const array& logits, const array& targets) {
  if (mx::default_device() == mx::Device::gpu)
    return mx::astype(mx::fast::cross_entropy(logits, targets), mx::float32);
  array shifted = mx::subtract(logits, mx::stop_gradient(mx::max(logits, -1, /*keepdims=*/true)));
  array score = mx::squeeze(mx::take_along_axis(shifted, mx::expand_dims(targets, -1), -1), -1);
  return mx::astype(mx::subtract(mx::logsumexp(shifted, -1), score), mx::float32);
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

std::pair<array, array> batch_loss(const models::Transformer& t, const Batch& b, const LossOptions& o) {
  const int B = b.tokens.shape(0), T = b.tokens.shape(1);
  array inputs = mx::slice(b.tokens, {0, 0}, {B, T - 1});
  array targets = mx::slice(b.tokens, {0, 1}, {B, T});
  array logits = o.checkpoint ? t.forward_blocks(inputs,
                                                 [&](const nn::DecoderBlock& block, const array& h, nn::ForwardState& st) {
                                                   return checkpointed_block(t, block, h, st, o);
                                                 })
                              : t.forward(inputs);
  array steps = mx::expand_dims(mx::arange(1, T, mx::int32), 0);
  array offsets = mx::slice(b.lengths, {0, 0}, {B, 1});
  array lengths = mx::slice(b.lengths, {0, 1}, {B, 2});
  array mask = mx::logical_and(mx::greater_equal(steps, offsets),
                               o.pad_target ? mx::less_equal(steps, lengths) : mx::less(steps, lengths));
  array ce = mx::multiply(cross_entropy(logits, targets), mask);
  array ntoks = mx::sum(mask);
  return {mx::divide(mx::sum(mx::astype(ce, mx::float32)), ntoks), ntoks};
}

}  // namespace lmlab::train
