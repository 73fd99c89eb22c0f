// The sampler against mlx-lm's (fixtures from tests/golden/sampler_golden.py):
//  - the top-p -> min-p -> top-k chain keeps exactly the tokens mlx-lm keeps,
//    on random distributions and on constructed boundaries (a cumulative mass
//    equal to 1 - top_p, a log-probability equal to max + log(min_p), ties at
//    the k-th value, where any k of the tied tokens is right);
//  - seeded draws at several temperatures, with and without filters and a
//    repetition penalty, follow the distribution mlx-lm draws from,
//    softmax(filtered / temp): a Pearson chi-square test per case at p = 1e-4
//    (fixed seeds, so the result repeats), and no draw outside the kept set;
//  - the repetition penalty gives mlx-lm's logits.
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "generate/sampler.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using generation::Sampler;
using nlohmann::json;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

const json& golden() {
  static const json g = [] {
    std::ifstream f(fixtures_dir() / "sampler" / "cases.json");
    return f ? json::parse(f) : json();
  }();
  return g;
}

// JSON numbers, with null for -inf.
std::vector<float> floats(const json& j) {
  std::vector<float> out;
  for (const auto& x : j) out.push_back(x.is_null() ? kNegInf : x.get<float>());
  return out;
}

std::vector<float> values(const mx::array& a) {
  mx::array f = mx::astype(a, mx::float32);
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

SamplerConfig config_of(const json& c) {
  return {.temp = c.value("temp", 0.0f), .top_p = c["top_p"].get<float>(), .top_k = c["top_k"].get<int>(),
          .min_p = c["min_p"].get<float>(), .repetition_penalty = c.value("penalty", 1.0f)};
}

std::vector<float> kept_values(const std::vector<float>& v) {
  std::vector<float> out;
  for (float x : v)
    if (x != kNegInf) out.push_back(x);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SamplerOracle, FiltersKeepWhatMlxLmKeeps) {
  LMLAB_REQUIRE_FILE(fixtures_dir() / "sampler" / "cases.json");
  const json& cases = golden()["filters"];
  ASSERT_GE(cases.size(), 60u);
  int boundaries = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const std::vector<float> lp = floats(c["logprobs"]), want = floats(c["filtered"]);
    const std::vector<float> got =
        values(Sampler(config_of(c)).filtered_logprobs(mx::array(lp.begin(), {static_cast<int>(lp.size())})));
    const std::string label = fmt::format("{} (top_p {}, min_p {}, top_k {})", name, c["top_p"].get<float>(),
                                          c["min_p"].get<float>(), c["top_k"].get<int>());
    if (name.find("ties") != std::string::npos) {
      // Which of the tokens tied at the k-th value survive is arbitrary; how many is not.
      EXPECT_EQ(kept_values(got), kept_values(want)) << label;
    } else {
      EXPECT_EQ(got, want) << label;
    }
    boundaries += name.find("boundary") != std::string::npos || name.find("threshold") != std::string::npos ||
                  name.find("ties") != std::string::npos;
  }
  EXPECT_GE(boundaries, 8);
  std::printf("[ sampler  ] %zu filter cases (%d on boundaries) match mlx-lm\n", cases.size(), boundaries);
}

// Pearson's chi-square of `counts` against `probs`; bins expecting fewer than
// 5 draws are pooled. The critical value at p = 1e-4 comes from the
// Wilson-Hilferty approximation (within 1% for df >= 2).
struct ChiSquare {
  double stat = 0, critical = 0;
  int df = 0;
};

ChiSquare chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  ChiSquare r;
  double pooled_expected = 0, pooled_count = 0;
  int bins = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double e = probs[i] * n;
    if (probs[i] == 0) continue;
    if (e < 5) {
      pooled_expected += e;
      pooled_count += counts[i];
      continue;
    }
    r.stat += (counts[i] - e) * (counts[i] - e) / e;
    ++bins;
  }
  if (pooled_expected > 0) {
    r.stat += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
    ++bins;
  }
  r.df = std::max(bins - 1, 1);
  const double z = 3.719, k = 2.0 / (9.0 * r.df);
  r.critical = r.df * std::pow(1 - k + z * std::sqrt(k), 3);
  return r;
}

TEST(SamplerOracle, SeededDrawsFollowMlxLmDistribution) {
  LMLAB_REQUIRE_FILE(fixtures_dir() / "sampler" / "cases.json");
  const json& cases = golden()["draws"];
  ASSERT_GE(cases.size(), 8u);
  const int n = 2500;
  int temps_not_one = 0;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const json& c = cases[ci];
    const std::vector<float> logits = floats(c["logits"]);
    const auto probs = c["probs"].get<std::vector<double>>();
    const auto history = c["history"].get<std::vector<int>>();
    SamplerConfig cfg = config_of(c);
    cfg.seed = 1000 + ci;
    Sampler s(cfg);
    const mx::array x(logits.begin(), {static_cast<int>(logits.size())});
    std::optional<mx::array> hist;
    if (!history.empty()) hist = mx::array(history.begin(), {static_cast<int>(history.size())});
    std::vector<int> counts(logits.size());
    int outside = 0;
    for (int i = 0; i < n; ++i) {
      const int tok = s.sample(x, hist).item<int>();
      ASSERT_TRUE(tok >= 0 && tok < static_cast<int>(counts.size())) << tok;
      ++counts[tok];
      outside += probs[tok] == 0;
    }
    const ChiSquare chi = chi_square(counts, probs, n);
    const std::string name = c["name"];
    EXPECT_EQ(outside, 0) << name << ": draws of filtered-out tokens";
    EXPECT_LT(chi.stat, chi.critical) << name << ": chi-square " << chi.stat << " on " << chi.df << " df";
    std::printf("[ sampler  ] %-22s %d draws: chi-square %6.2f on %2d df (critical %.1f)\n", name.c_str(), n, chi.stat,
                chi.df, chi.critical);
    temps_not_one += std::abs(c["temp"].get<float>() - 1.0f) > 0.1f;
  }
  // At temperature 1 dividing and multiplying by it agree: most cases must not be there.
  EXPECT_GE(temps_not_one, 6);
}

TEST(SamplerOracle, RepetitionPenaltyMatchesMlxLm) {
  LMLAB_REQUIRE_FILE(fixtures_dir() / "sampler" / "cases.json");
  const json& cases = golden()["penalty"];
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    const std::vector<float> logits = floats(c["logits"]), want = floats(c["expected"]);
    const auto history = c["history"].get<std::vector<int>>();
    const mx::array got = generation::apply_repetition_penalty(
        mx::array(logits.begin(), {static_cast<int>(logits.size())}),
        mx::array(history.begin(), {static_cast<int>(history.size())}), c["penalty"].get<float>());
    EXPECT_EQ(values(got), want) << "penalty " << c["penalty"].get<float>();
  }
}

}  // namespace
}  // namespace lmlab::test
