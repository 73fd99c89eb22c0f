#include "generate/sampler.h"

#include <limits>

#include <fmt/format.h>
#include <mlx/mlx.h>

namespace mx = mlx::core;

namespace lmlab::generation {

namespace {
array neg_inf(mx::Dtype dt) { return array(-std::numeric_limits<float>::infinity(), dt); }
}  // namespace

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg) {
  validate(cfg);
  if (cfg.seed) key_ = mx::random::key(*cfg.seed);
}

array apply_repetition_penalty(const array& logits, const array& history, float penalty) {
  if (history.size() == 0 || penalty == 1.0f) return logits;
  array sel = mx::take(logits, history, -1);
  array p(penalty, logits.dtype());
  array adj = mx::where(mx::less(sel, array(0.0f, logits.dtype())), mx::multiply(sel, p),
                        mx::divide(sel, p));
  return mx::put_along_axis(logits, mx::reshape(history, {-1}), adj, -1);
}

array apply_top_p(const array& logprobs, float top_p) {
  if (top_p >= 1.0f) return logprobs;
  // Keep the smallest set of most likely tokens whose mass reaches top_p.
  array probs = mx::exp(logprobs);
  array order = mx::argsort(logprobs, -1);  // ascending
  array sorted = mx::take_along_axis(probs, order, -1);
  array cum = mx::cumsum(sorted, -1);
  array keep_sorted = mx::greater(cum, array(1.0f - top_p, cum.dtype()));
  array keep = mx::put_along_axis(mx::zeros_like(keep_sorted), order, keep_sorted, -1);
  return mx::where(keep, logprobs, neg_inf(logprobs.dtype()));
}

array apply_min_p(const array& logprobs, float min_p) {
  if (min_p <= 0.0f) return logprobs;
  array top = mx::max(logprobs, -1, /*keepdims=*/true);
  array thresh = mx::add(top, array(std::log(min_p), logprobs.dtype()));
  return mx::where(mx::less(logprobs, thresh), neg_inf(logprobs.dtype()), logprobs);
}

array apply_top_k(const array& logprobs, int k) {
  const int V = logprobs.shape(-1);
  if (k <= 0 || k >= V) return logprobs;
  // Exactly k tokens stay, as in mlx-lm: ties at the k-th value are broken by
  // position instead of all being kept.
  array order = mx::argsort(mx::negative(logprobs), -1);
  mx::Shape from(order.ndim(), 0);
  from.back() = k;
  return mx::put_along_axis(logprobs, mx::slice(order, from, order.shape()), neg_inf(logprobs.dtype()), -1);
}

array Sampler::filtered_logprobs(const array& logprobs) const {
  array lp = apply_top_p(logprobs, cfg_.top_p);
  lp = apply_min_p(lp, cfg_.min_p);
  return apply_top_k(lp, cfg_.top_k);
}

array Sampler::sample(const array& raw_logits, const std::optional<array>& history) {
  array logits = mx::astype(mx::reshape(raw_logits, {-1}), mx::float32);
  if (history && cfg_.repetition_penalty != 1.0f)
    logits = apply_repetition_penalty(logits, *history, cfg_.repetition_penalty);
  if (cfg_.temp == 0.0f) return mx::argmax(logits, -1);
  array logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, /*keepdims=*/true));
  array lp = filtered_logprobs(logprobs);
  array scaled = mx::multiply(lp, array(1.0f / cfg_.temp, mx::float32));
  if (key_) {
    auto [next, sub] = mx::random::split(*key_);
    key_ = next;
    return mx::random::categorical(scaled, -1, sub);
  }
  return mx::random::categorical(scaled, -1);
}

}  // namespace lmlab::generation
