// predict: next-token probabilities (top-k, temperature, entropy) and the
// logit lens, which reads every layer's residual stream through the model's
// own final norm and head (nostalgebraist 2020; Model::head).
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

namespace {

// Logits as ranked: NaN (an edit can produce it) below everything else.
double rank_key(float x) { return std::isnan(x) ? -HUGE_VAL : x; }

// softmax(logits / t) in double for stable small probabilities. Logits an
// edited model may give are handled as limits: +inf entries share all the
// mass, NaN entries get none.
std::vector<double> softmax(const std::vector<float>& logits, float t) {
  if (!(t >= 0)) throw std::invalid_argument(fmt::format("[predict] temperature {:g}: must be >= 0", t));
  std::vector<double> p(logits.size(), 0.0);
  if (logits.empty()) return p;
  auto top_it = std::max_element(logits.begin(), logits.end(),
                                 [](float a, float b) { return rank_key(a) < rank_key(b); });
  const double top = rank_key(*top_it);
  if (t <= 0 || !std::isfinite(top)) {
    // Greedy, or no finite maximum: the mass goes to the top value(s).
    if (t <= 0 || top == -HUGE_VAL) {
      p[top_it - logits.begin()] = 1.0;
      return p;
    }
    double n = 0;
    for (size_t i = 0; i < logits.size(); ++i) n += p[i] = logits[i] == HUGE_VALF;
    for (double& x : p) x /= n;
    return p;
  }
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp((rank_key(logits[i]) - top) / double(t));
  for (double& x : p) x /= sum;
  return p;
}

}  // namespace

std::vector<TokenProb> top_k(const std::vector<float>& logits, int k, float temperature) {
  std::vector<double> p = softmax(logits, temperature);
  std::vector<int> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::clamp(k, 0, static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    const double x = rank_key(logits[a]), y = rank_key(logits[b]);
    return x > y || (x == y && a < b);
  });
  std::vector<TokenProb> out;
  for (int i = 0; i < k; ++i)
    out.push_back({.id = idx[i], .prob = static_cast<float>(p[idx[i]]), .logit = logits[idx[i]]});
  return out;
}

float entropy_bits(const std::vector<float>& logits, float temperature) {
  double h = 0;
  for (double x : softmax(logits, temperature))
    if (x > 0) h -= x * std::log2(x);
  return static_cast<float>(h);
}

std::vector<float> next_token_logits(const Model& m, const std::vector<int>& ids) {
  return to_floats(forward_last(m, ids, nullptr, "predict"));
}

std::vector<LensRow> logit_lens(const Model& m, const std::vector<int>& ids, int k) {
  if (k < 1) throw std::invalid_argument(fmt::format("[predict] lens k {}: must be >= 1", k));
  nn::Hooks hooks;
  hooks.residual = true;
  forward_last(m, ids, &hooks, "predict");  // hooks hold the last position only: (1, 1, D)
  std::vector<std::string> names = {"embed"};
  for (int l = 0; l < m.config().num_hidden_layers; ++l) names.push_back(fmt::format("layers.{}", l));
  std::vector<mx::array> rows;
  for (const auto& n : names) rows.push_back(hooks.captured.at(n == "embed" ? n : n + ".residual"));
  // (layers+1, 1, D) through the final norm and head in one call.
  mx::array lens = m.head(mx::concatenate(rows, 0));
  std::vector<float> all = to_floats(lens);
  const size_t V = lens.shape(-1);
  std::vector<LensRow> out;
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<float> row(all.begin() + i * V, all.begin() + (i + 1) * V);
    out.push_back({.name = names[i], .top = top_k(row, k), .entropy = entropy_bits(row)});
  }
  return out;
}

void fill_pieces(const Tokenizer& tok, std::vector<TokenProb>& probs) {
  for (auto& p : probs) p.piece = tok.decode(std::vector<int>{p.id});
}

void validate(const PredictOptions& o) {
  if (o.k < 1) throw std::invalid_argument(fmt::format("[predict] top_k {}: must be >= 1", o.k));
  if (o.temperatures.empty()) throw std::invalid_argument("[predict] temperatures: give at least one");
  for (float t : o.temperatures)
    if (!(t >= 0 && std::isfinite(t)))
      throw std::invalid_argument(
          fmt::format("[predict] temperature {:g}: must be a finite number >= 0 (0: greedy)", t));
}

std::vector<Prediction> predict(const LoadedModel& m, const std::vector<std::string>& prompts,
                                const PredictOptions& o) {
  validate(o);
  std::vector<Prediction> out;
  for (const auto& prompt : prompts) {
    std::vector<int> ids = build_prompt(m, prompt, o.system, o.chat_template);
    std::vector<float> logits = next_token_logits(*m.model, ids);
    for (float t : o.temperatures) {
      Prediction p{.prompt = prompt, .ids = ids, .temperature = t,
                   .entropy = entropy_bits(logits, t), .top = top_k(logits, o.k, t)};
      fill_pieces(m.tokenizer, p.top);
      out.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace lmlab::analysis
