// RoPE: the fused kernel against a plain cos/sin composition, and llama3
// frequency scaling against its formula by hand.
#include <cmath>
#include <numbers>

#include <mlx/mlx.h>

#include "lmlab/nn.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

// Non-traditional RoPE: rotate pairs (i, i + d/2) by pos / period_i.
mx::array slow_rope(const mx::array& x, const std::vector<double>& periods, int offset) {
  const int L = x.shape(2), D = x.shape(3), half = D / 2;
  std::vector<float> c(L * half), s(L * half);
  for (int p = 0; p < L; ++p)
    for (int i = 0; i < half; ++i) {
      double a = (p + offset) / periods[i];
      c[p * half + i] = std::cos(a);
      s[p * half + i] = std::sin(a);
    }
  mx::array cos(c.begin(), {L, half}), sin(s.begin(), {L, half});
  auto x1 = mx::slice(x, {0, 0, 0, 0}, {x.shape(0), x.shape(1), L, half});
  auto x2 = mx::slice(x, {0, 0, 0, half}, {x.shape(0), x.shape(1), L, D});
  return mx::concatenate({mx::subtract(mx::multiply(x1, cos), mx::multiply(x2, sin)),
                          mx::add(mx::multiply(x1, sin), mx::multiply(x2, cos))}, 3);
}

float max_diff(const mx::array& a, const mx::array& b) {
  return mx::max(mx::abs(mx::subtract(a, b))).item<float>();
}

TEST(Rope, DefaultMatchesPlainComposition) {
  nlohmann::json cfg = {{"rope_theta", 10000.0}};
  nn::RoPE r = nn::make_rope(cfg, 16);
  mx::array x = mx::random::normal({1, 2, 5, 16});
  std::vector<double> periods;
  for (int i = 0; i < 16; i += 2) periods.push_back(std::pow(10000.0, i / 16.0));
  EXPECT_LT(max_diff(r(x, 3), slow_rope(x, periods, 3)), 1e-4f);
}

TEST(Rope, Llama3ScalingFollowsTheFormula) {
  nlohmann::json cfg = {{"rope_theta", 500000.0},
                        {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}};
  const int D = 128;
  nn::RoPE r = nn::make_rope(cfg, D);
  ASSERT_TRUE(r.freqs.has_value());
  std::vector<double> periods;
  for (int i = 0; i < D; i += 2) {
    double p = std::pow(500000.0, double(i) / D), wl = 2 * std::numbers::pi * p;
    if (wl < 8192.0 / 4) periods.push_back(p);                 // high frequency: unchanged
    else if (wl > 8192.0) periods.push_back(p * 8);            // low frequency: stretched 8x
    else {
      double smooth = (8192.0 / wl - 1) / (4 - 1);
      periods.push_back(p / ((1 - smooth) / 8 + smooth));
    }
  }
  mx::array x = mx::random::normal({1, 1, 4, D});
  EXPECT_LT(max_diff(r(x, 1000), slow_rope(x, periods, 1000)), 2e-3f);
}

// A GGUF's rope_freqs tensor (Llama 3.1 files carry one): llama.cpp divides
// each pair's angle by its factor, i.e. multiplies its period.
TEST(Rope, GgufFrequencyFactorsStretchEachPeriod) {
  const std::vector<double> factors = {1.0, 1.0, 2.5, 8.0, 1.5, 4.0, 1.0, 32.0};
  nlohmann::json cfg = {{"rope_theta", 10000.0}, {"lmlab_rope_freq_factors", factors}};
  nn::RoPE r = nn::make_rope(cfg, 16);
  std::vector<double> periods;
  for (int i = 0; i < 16; i += 2) periods.push_back(std::pow(10000.0, i / 16.0) * factors[i / 2]);
  mx::array x = mx::random::normal({1, 2, 5, 16});
  EXPECT_LT(max_diff(r(x, 300), slow_rope(x, periods, 300)), 1e-3f);
  nlohmann::json bad = {{"rope_theta", 10000.0}, {"lmlab_rope_freq_factors", {1.0, 2.0}}};
  EXPECT_THROW(nn::make_rope(bad, 16), std::invalid_argument);
}

TEST(Rope, LinearScalingDividesPositions) {
  nlohmann::json cfg = {{"rope_theta", 10000.0}, {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}};
  nn::RoPE r = nn::make_rope(cfg, 8);
  nn::RoPE plain = nn::make_rope({{"rope_theta", 10000.0}}, 8);
  mx::array x = mx::random::normal({1, 1, 1, 8});
  EXPECT_LT(max_diff(r(x, 40), plain(x, 10)), 1e-5f);
}

TEST(Rope, UnknownScalingIsRejected) {
  EXPECT_THROW(nn::make_rope({{"rope_scaling", {{"type", "weird"}}}}, 8), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
