// Log-probabilities at scored window positions and their per-token comparison
// (see scoring.h). Everything stays an MLX array until a caller appends it.
#include "quant/scoring.h"

#include <algorithm>

#include <fmt/format.h>

#include "lmlab/model.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::quant {

void validate(const WindowOptions& o) {
  if (o.context < 2)
    throw std::invalid_argument(fmt::format("[ppl] context {} is too short; give at least 2 tokens", o.context));
  if (o.stride < 1 || o.stride > o.context)
    throw std::invalid_argument(
        fmt::format("[ppl] stride {} outside [1, context = {}]", o.stride, o.context));
  if (o.batch_tokens < 1)
    throw std::invalid_argument(fmt::format("[ppl] batch_tokens {} must be at least 1", o.batch_tokens));
}

std::vector<Window> plan_windows(int64_t tokens, const WindowOptions& o) {
  validate(o);
  if (tokens < 2)
    throw std::invalid_argument(fmt::format("[ppl] the text has {} token{}; at least 2 are needed", tokens,
                                            tokens == 1 ? "" : "s"));
  std::vector<Window> out;
  int64_t scored_to = 0;  // tokens before this are scored
  for (int64_t begin = 0;; begin += o.stride) {
    const int64_t end = std::min(begin + o.context, tokens);
    const int64_t first = std::max(scored_to, begin + 1);
    if (first < end) out.push_back({.begin = begin, .end = end, .first_target = first});
    scored_to = end;
    if (end == tokens) break;
  }
  return out;
}

namespace detail {

std::vector<std::span<const Window>> batches(const std::vector<Window>& windows, const WindowOptions& o) {
  const size_t rows = std::max<size_t>(1, static_cast<size_t>(o.batch_tokens / o.context));
  // A batch is padded to its widest window, so a text's short last window runs on
  // its own: padded, 41 tokens left over after a 256-token window cost 256.
  auto width = [](const Window& w) { return w.end - w.begin; };
  std::vector<std::span<const Window>> out;
  for (size_t i = 0; i < windows.size();) {
    size_t n = 1;
    while (n < rows && i + n < windows.size() && width(windows[i + n]) == width(windows[i])) ++n;
    out.emplace_back(windows.data() + i, n);
    i += n;
  }
  return out;
}

Scored score(const Model& m, std::span<const int> tokens, std::span<const Window> windows, nn::Hooks* hooks) {
  int64_t width = 0;
  for (const Window& w : windows) width = std::max(width, w.end - w.begin);
  const int rows = static_cast<int>(windows.size()), L = static_cast<int>(width);
  std::vector<int> ids(static_cast<size_t>(rows) * L, 0);
  std::vector<int> targets;
  for (int r = 0; r < rows; ++r) {
    const Window& w = windows[r];
    std::copy(tokens.begin() + w.begin, tokens.begin() + w.end, ids.begin() + static_cast<size_t>(r) * L);
    targets.insert(targets.end(), tokens.begin() + w.first_target, tokens.begin() + w.end);
  }
  array logits = m.forward(array(ids.begin(), {rows, L}, mx::int32), nullptr, hooks);
  std::vector<array> parts;
  for (int r = 0; r < rows; ++r) {
    const Window& w = windows[r];
    // Position p predicts token p + 1.
    const int p0 = static_cast<int>(w.first_target - 1 - w.begin), p1 = static_cast<int>(w.end - 1 - w.begin);
    parts.push_back(mx::slice(logits, {r, p0, 0}, {r + 1, p1, logits.shape(2)}));
  }
  array x = mx::astype(mx::squeeze(mx::concatenate(parts, 1), 0), mx::float32);
  array lp = mx::subtract(x, mx::logsumexp(x, -1, /*keepdims=*/true));
  return {lp, array(targets.begin(), {static_cast<int>(targets.size())}, mx::int32)};
}

array nll(const array& logprobs, const array& targets) {
  return mx::negative(mx::squeeze(mx::take_along_axis(logprobs, mx::expand_dims(targets, 1), 1), 1));
}

Compared compare(const array& ref, const array& lp, const array& targets) {
  array kl = mx::sum(mx::multiply(mx::exp(ref), mx::subtract(ref, lp)), -1);
  array same = mx::equal(mx::argmax(ref, -1), mx::argmax(lp, -1));
  return {nll(lp, targets), nll(ref, targets), kl, same};
}

void append(std::vector<double>& out, const array& a) {
  array f = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(f);
  out.insert(out.end(), f.data<float>(), f.data<float>() + f.size());
}

}  // namespace detail

}  // namespace lmlab::quant
