// Perplexity and KL divergence over a text: the statistics llama.cpp's
// `perplexity --kl-divergence` prints (mean ± standard error, quantiles, same
// top-1, Δp), over the sliding windows of scoring.cpp.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/data.h"
#include "lmlab/model.h"
#include "quant/scoring.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::quant {

namespace {

constexpr double kZ95 = 1.959963984540054;  // two-sided 95% normal quantile

// Linear interpolation between order statistics (numpy's default).
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (pos - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

int64_t total_scored(const std::vector<Window>& windows) {
  int64_t n = 0;
  for (const Window& w : windows) n += w.end - w.first_target;
  return n;
}

Perplexity finish(const WindowOptions& o, int64_t tokens, int windows, std::vector<double> nll) {
  Perplexity p{.context = o.context, .stride = o.stride, .tokens = tokens,
               .scored = static_cast<int64_t>(nll.size()), .windows = windows};
  p.nll = summarize(std::move(nll));
  p.ppl = std::exp(p.nll.mean);
  p.ppl_se = p.ppl * p.nll.se;
  return p;
}

void report(const ProgressCallback& progress, double done, double total) {
  if (progress) progress({.what = "scoring", .done = done, .total = total, .unit = "tokens", .finished = done >= total});
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i], sy += y[i], sxx += x[i] * x[i], syy += y[i] * y[i], sxy += x[i] * y[i];
  }
  const double cov = sxy / n - (sx / n) * (sy / n);
  const double vx = sxx / n - (sx / n) * (sx / n), vy = syy / n - (sy / n) * (sy / n);
  return vx > 0 && vy > 0 ? cov / std::sqrt(vx * vy) : 0.0;
}

}  // namespace

Summary summarize(std::vector<double> x) {
  Summary s{.count = static_cast<int64_t>(x.size())};
  if (x.empty()) return s;
  std::sort(x.begin(), x.end());
  double sum = 0, sum2 = 0;
  for (double v : x) sum += v, sum2 += v * v;
  const double n = static_cast<double>(x.size());
  s.mean = sum / n;
  const double var = std::max(0.0, sum2 / n - s.mean * s.mean);
  s.se = x.size() > 1 ? std::sqrt(var / (n - 1)) : 0.0;
  s.ci95_low = s.mean - kZ95 * s.se;
  s.ci95_high = s.mean + kZ95 * s.se;
  s.min = x.front();
  s.max = x.back();
  s.p01 = quantile(x, 0.01), s.p05 = quantile(x, 0.05), s.p10 = quantile(x, 0.10);
  s.median = quantile(x, 0.5);
  s.p90 = quantile(x, 0.90), s.p95 = quantile(x, 0.95), s.p99 = quantile(x, 0.99);
  s.p999 = quantile(x, 0.999);
  return s;
}

Perplexity perplexity(const Model& m, std::span<const int> tokens, const WindowOptions& o,
                      const ProgressCallback& progress) {
  std::vector<Window> windows = plan_windows(static_cast<int64_t>(tokens.size()), o);
  const double total = static_cast<double>(total_scored(windows));
  std::vector<double> nll;
  for (auto batch : detail::batches(windows, o)) {
    detail::Scored s = detail::score(m, tokens, batch);
    detail::append(nll, detail::nll(s.logprobs, s.targets));
    report(progress, static_cast<double>(nll.size()), total);
  }
  return finish(o, static_cast<int64_t>(tokens.size()), static_cast<int>(windows.size()), std::move(nll));
}

KlComparison compare(const Model& m, const Model& reference, std::span<const int> tokens,
                     const WindowOptions& o, const ProgressCallback& progress) {
  if (m.config().vocab_size != reference.config().vocab_size)
    throw std::invalid_argument(fmt::format(
        "[ppl] the model has {} tokens in its vocabulary and the reference {}; KL needs the same vocabulary",
        m.config().vocab_size, reference.config().vocab_size));
  std::vector<Window> windows = plan_windows(static_cast<int64_t>(tokens.size()), o);
  const double total = static_cast<double>(total_scored(windows));
  std::vector<double> nll, nll_ref, kl, same;
  for (auto batch : detail::batches(windows, o)) {
    detail::Scored r = detail::score(reference, tokens, batch);
    detail::Scored s = detail::score(m, tokens, batch);
    detail::Compared c = detail::compare(r.logprobs, s.logprobs, s.targets);
    mx::eval({c.nll, c.nll_ref, c.kl, c.same_top1});
    detail::append(nll, c.nll);
    detail::append(nll_ref, c.nll_ref);
    detail::append(kl, c.kl);
    detail::append(same, c.same_top1);
    report(progress, static_cast<double>(nll.size()), total);
  }
  const int64_t t = static_cast<int64_t>(tokens.size());
  const int nw = static_cast<int>(windows.size());
  KlComparison k;
  std::vector<double> ratio(nll.size()), dp(nll.size());
  double dp2 = 0;
  for (size_t i = 0; i < nll.size(); ++i) {
    ratio[i] = nll[i] - nll_ref[i];
    dp[i] = std::exp(-nll[i]) - std::exp(-nll_ref[i]);
    dp2 += dp[i] * dp[i];
  }
  k.ln_ppl_correlation = pearson(nll, nll_ref);
  k.model = finish(o, t, nw, std::move(nll));
  k.reference = finish(o, t, nw, std::move(nll_ref));
  k.kl = summarize(std::move(kl));
  Summary top1 = summarize(same);
  k.top1 = top1.mean;
  // llama.cpp's error of a proportion: sqrt(p (1 − p) / (n − 1)).
  k.top1_se = top1.count > 1 ? std::sqrt(k.top1 * (1 - k.top1) / static_cast<double>(top1.count - 1)) : 0.0;
  k.top1_ci95_low = std::max(0.0, k.top1 - kZ95 * k.top1_se);
  k.top1_ci95_high = std::min(1.0, k.top1 + kZ95 * k.top1_se);
  k.ln_ratio = summarize(std::move(ratio));
  k.rms_delta_p = dp.empty() ? 0.0 : std::sqrt(dp2 / static_cast<double>(dp.size()));
  k.delta_p = summarize(std::move(dp));
  return k;
}

std::vector<int> tokenize_file(const LoadedModel& m, const fs::path& file, int64_t max_tokens) {
  std::vector<int> ids;
  if (file.extension() == ".jsonl") {
    // The fine-tuning data reader, so a JSONL file means the same tokens here as in training.
    train::DataOptions o;
    o.path = file.string();
    o.valid_fraction = 0;
    const ChatTemplate* tmpl = m.chat_template ? &*m.chat_template : nullptr;
    train::Dataset d = train::load_dataset(o, m.tokenizer, tmpl, /*strict=*/true);
    for (const auto& e : d.train.examples) {
      ids.insert(ids.end(), e.tokens.begin(), e.tokens.end());
      if (max_tokens > 0 && static_cast<int64_t>(ids.size()) >= max_tokens) break;
    }
  } else {
    std::ifstream f(file, std::ios::binary);
    if (!f) throw std::runtime_error(fmt::format("[ppl] cannot read {}", file.string()));
    std::stringstream s;
    s << f.rdbuf();
    ids = m.tokenizer.encode(s.str(), /*add_special_tokens=*/true);
  }
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
  if (ids.size() < 2)
    throw std::invalid_argument(
        fmt::format("[ppl] {}: {} token{}; at least 2 are needed", file.string(), ids.size(), ids.size() == 1 ? "" : "s"));
  return ids;
}

void to_json(json& j, const WindowOptions& o) {
  j = {{"context", o.context}, {"stride", o.stride}, {"batch_tokens", o.batch_tokens}};
}

void to_json(json& j, const Summary& s) {
  j = {{"count", s.count}, {"mean", s.mean}, {"se", s.se}, {"ci95", {s.ci95_low, s.ci95_high}},
       {"min", s.min}, {"p01", s.p01}, {"p05", s.p05}, {"p10", s.p10}, {"median", s.median},
       {"p90", s.p90}, {"p95", s.p95}, {"p99", s.p99}, {"p999", s.p999}, {"max", s.max}};
}

void to_json(json& j, const Perplexity& p) {
  j = {{"context", p.context}, {"stride", p.stride}, {"tokens", p.tokens}, {"scored", p.scored},
       {"windows", p.windows}, {"ppl", p.ppl}, {"ppl_se", p.ppl_se}, {"nll", p.nll}};
}

void to_json(json& j, const KlComparison& k) {
  j = {{"model", k.model}, {"reference", k.reference}, {"kl", k.kl},
       {"top1", {{"agreement", k.top1}, {"se", k.top1_se}, {"ci95", {k.top1_ci95_low, k.top1_ci95_high}}}},
       {"ln_ppl_ratio", k.ln_ratio}, {"ln_ppl_correlation", k.ln_ppl_correlation},
       {"delta_p", k.delta_p}, {"rms_delta_p", k.rms_delta_p}};
}

}  // namespace lmlab::quant
