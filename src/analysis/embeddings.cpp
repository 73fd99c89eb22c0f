// embeddings: rows of the token embedding table, their nearest neighbours in
// cosine, and the check that a token's input vector ignores its context while
// the residual stream after a layer does not.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/generate.h"
#include "nn/linear.h"
#include "lmlab/model.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

namespace {

const char* kEmbed = "model.embed_tokens";

void check_id(const Model& m, int id) {
  if (id < 0 || id >= m.config().vocab_size)
    throw std::invalid_argument(
        fmt::format("[embed] token id {} outside the vocabulary [0, {})", id, m.config().vocab_size));
}

mx::array at_position(const mx::array& h, int pos) {
  if (pos < 0 || pos >= h.shape(1))
    throw std::invalid_argument(fmt::format("[embed] position {} outside [0, {})", pos, h.shape(1)));
  return mx::reshape(mx::take(h, pos, 1), {-1});
}

}  // namespace

std::vector<float> embedding_row(const Model& m, int id) {
  check_id(m, id);
  return to_floats(nn::embedding_rows(nn::Linear::view(m.weights(), kEmbed), mx::array({id}, {1, 1}), mx::float32));
}

float l2_norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return static_cast<float>(std::sqrt(s));
}

std::vector<Neighbour> nearest_tokens(const Model& m, int id, int k) {
  check_id(m, id);
  if (k < 0) throw std::invalid_argument(fmt::format("[embed] neighbours {}: must be >= 0", k));
  mx::array table = logical_tensor(m.weights(), std::string(kEmbed) + ".weight");  // (V, D)
  mx::array norms = mx::maximum(mx::sqrt(mx::sum(mx::square(table), {1})), mx::array(1e-12f));
  mx::array unit = mx::divide(table, mx::expand_dims(norms, 1));
  std::vector<float> cos = to_floats(mx::matmul(unit, mx::take(unit, id, 0)));
  std::vector<int> idx(cos.size());
  std::iota(idx.begin(), idx.end(), 0);
  idx.erase(idx.begin() + id);
  k = std::clamp(k, 0, static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return cos[a] > cos[b]; });
  std::vector<Neighbour> out;
  for (int i = 0; i < k; ++i) out.push_back({.id = idx[i], .cosine = cos[idx[i]]});
  return out;
}

TokenEmbedding token_embedding(const LoadedModel& m, int id, int values, int neighbours) {
  if (values < 0) throw std::invalid_argument(fmt::format("[embed] values {}: must be >= 0", values));
  std::vector<float> v = embedding_row(*m.model, id);
  TokenEmbedding e{.id = id, .piece = m.tokenizer.decode(std::vector<int>{id}), .dim = static_cast<int>(v.size()),
                   .norm = l2_norm(v), .neighbours = nearest_tokens(*m.model, id, neighbours)};
  e.values.assign(v.begin(), v.begin() + std::min<size_t>(values, v.size()));
  for (auto& n : e.neighbours) n.piece = m.tokenizer.decode(std::vector<int>{n.id});
  return e;
}

ContextCheck context_check(const Model& m, const std::vector<int>& a, int pos_a,
                           const std::vector<int>& b, int pos_b, int layer) {
  check_tokens(m, a, "embed");
  check_tokens(m, b, "embed");
  if (layer == -1) layer = m.config().num_hidden_layers / 2;
  if (layer < 0 || layer >= m.config().num_hidden_layers)
    throw std::invalid_argument(fmt::format("[embed] layer {} out of range [0, {})", layer,
                                            m.config().num_hidden_layers));
  if (pos_a < 0 || pos_a >= static_cast<int>(a.size()) || pos_b < 0 || pos_b >= static_cast<int>(b.size()))
    throw std::invalid_argument("[embed] token position outside its prompt");
  if (a[pos_a] != b[pos_b])
    throw std::invalid_argument(
        fmt::format("[embed] different tokens compared ({} vs {})", a[pos_a], b[pos_b]));
  // Causal attention: the state at `pos` depends on ids[0..pos] only, so the
  // prompt is cut there and that position runs last (forward_last).
  auto run = [&](const std::vector<int>& ids, int pos) {
    nn::Hooks hooks;
    hooks.residual = true;
    hooks.layers = {layer};
    forward_last(m, std::vector<int>(ids.begin(), ids.begin() + pos + 1), &hooks, "embed");
    return std::pair{at_position(hooks.captured.at("embed"), 0),
                     at_position(hooks.captured.at(fmt::format("layers.{}.residual", layer)), 0)};
  };
  auto [ea, ha] = run(a, pos_a);
  auto [eb, hb] = run(b, pos_b);
  auto max_diff = [](const mx::array& x, const mx::array& y) {
    return mx::max(mx::abs(mx::subtract(mx::astype(x, mx::float32), mx::astype(y, mx::float32))))
        .item<float>();
  };
  mx::array fa = mx::astype(ha, mx::float32), fb = mx::astype(hb, mx::float32);
  float cosine = mx::divide(mx::sum(mx::multiply(fa, fb)),
                            mx::multiply(mx::sqrt(mx::sum(mx::square(fa))), mx::sqrt(mx::sum(mx::square(fb)))))
                     .item<float>();
  return {.id = a[pos_a], .layer = layer, .embed_max_diff = max_diff(ea, eb),
          .hidden_max_diff = max_diff(ha, hb), .hidden_cosine = cosine};
}

}  // namespace lmlab::analysis
