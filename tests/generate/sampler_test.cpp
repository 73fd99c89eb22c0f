// Sampling: seeded draws follow the softmax distribution, filters keep what
// they should, the repetition penalty follows mlx-lm's rule, seeds repeat.
#include <algorithm>
#include <cmath>

#include <mlx/mlx.h>

#include "generate/sampler.h"
#include "generate/stop.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using generation::Sampler;

std::vector<float> values(mx::array a) {
  a = mx::astype(a, mx::float32);
  mx::eval(a);
  return std::vector<float>(a.data<float>(), a.data<float>() + a.size());
}

TEST(Sampler, GreedyPicksArgmax) {
  Sampler s({.temp = 0});
  EXPECT_EQ(s.sample(mx::array({0.1f, 3.0f, -1.0f, 2.9f}), std::nullopt).item<int>(), 1);
}

TEST(Sampler, SeededDrawsFollowSoftmax) {
  // p = softmax(log([0.5, 0.3, 0.15, 0.05])); 4000 draws at temp 1.
  std::vector<float> p = {0.5f, 0.3f, 0.15f, 0.05f};
  std::vector<float> logits;
  for (float x : p) logits.push_back(std::log(x));
  Sampler s({.temp = 1.0f, .seed = 42});
  std::vector<int> counts(4);
  const int n = 4000;
  for (int i = 0; i < n; ++i) counts[s.sample(mx::array(logits.begin(), {4}), std::nullopt).item<int>()]++;
  for (int i = 0; i < 4; ++i) {
    double sd = std::sqrt(p[i] * (1 - p[i]) / n);
    EXPECT_NEAR(counts[i] / double(n), p[i], 5 * sd) << "token " << i;
  }
}

TEST(Sampler, SameSeedSameSequence) {
  auto draw = [](uint64_t seed) {
    Sampler s({.temp = 0.8f, .seed = seed});
    std::vector<int> out;
    mx::array logits = mx::random::normal({100}, mx::float32, 0, 1, mx::random::key(7));
    for (int i = 0; i < 20; ++i) out.push_back(s.sample(logits, std::nullopt).item<int>());
    return out;
  };
  EXPECT_EQ(draw(3), draw(3));
  EXPECT_NE(draw(3), draw(4));
}

TEST(Sampler, TopKKeepsExactlyK) {
  mx::array lp = mx::array({-1.0f, -0.5f, -3.0f, -0.1f, -2.0f});
  auto v = values(generation::apply_top_k(lp, 2));
  EXPECT_TRUE(std::isinf(v[0]) && std::isinf(v[2]) && std::isinf(v[4]));
  EXPECT_FLOAT_EQ(v[1], -0.5f);
  EXPECT_FLOAT_EQ(v[3], -0.1f);
}

TEST(Sampler, TopKKeepsExactlyKWhenTheKthValueIsTied) {
  // mlx-lm masks all but k tokens (argpartition), whichever of the tied ones
  // it keeps; keeping every token tied with the k-th would sample from more.
  mx::array lp = mx::array({-1.0f, -2.0f, -2.0f, -0.5f, -2.0f, -3.0f});
  for (int k : {2, 3, 4, 5}) {
    auto v = values(generation::apply_top_k(lp, k));
    EXPECT_EQ(std::count_if(v.begin(), v.end(), [](float x) { return !std::isinf(x); }), k) << k;
    EXPECT_FALSE(std::isinf(v[0]) || std::isinf(v[3])) << k;
  }
}

TEST(Sampler, TopPKeepsSmallestSetReachingMass) {
  std::vector<float> p = {0.5f, 0.3f, 0.15f, 0.05f};
  std::vector<float> lp;
  for (float x : p) lp.push_back(std::log(x));
  auto v = values(generation::apply_top_p(mx::array(lp.begin(), {4}), 0.75f));
  EXPECT_FALSE(std::isinf(v[0]));
  EXPECT_FALSE(std::isinf(v[1]));
  EXPECT_TRUE(std::isinf(v[2]));
  EXPECT_TRUE(std::isinf(v[3]));
}

TEST(Sampler, TopPDropsTheTokenAtAnExactCumulativeBoundary) {
  // mlx-lm keeps a token where the ascending cumulative mass is > 1 - top_p:
  // the smallest set whose mass reaches top_p, so a token that only adds mass
  // past an exact hit is dropped. top_p is chosen so that 1 - top_p equals the
  // cumulative mass below the most likely token exactly (exact in float32 for
  // sums in [0.5, 1]), computed with the same MLX ops as the filter.
  mx::array lp = mx::log(mx::array({0.1f, 0.2f, 0.3f, 0.4f}));
  mx::array cum = mx::cumsum(mx::take_along_axis(mx::exp(lp), mx::argsort(lp, -1), -1), -1);
  const float below = values(cum)[2];
  const float top_p = 1.0f - below;
  ASSERT_EQ(1.0f - top_p, below);
  auto v = values(generation::apply_top_p(lp, top_p));
  EXPECT_TRUE(std::isinf(v[0]) && std::isinf(v[1]) && std::isinf(v[2]));
  EXPECT_FALSE(std::isinf(v[3]));
  // A hair more mass needs the next token too.
  const float wider = 1.0f - std::nextafter(below, 0.0f);
  ASSERT_LT(1.0f - wider, below);
  v = values(generation::apply_top_p(lp, wider));
  EXPECT_TRUE(std::isinf(v[1]));
  EXPECT_FALSE(std::isinf(v[2]) || std::isinf(v[3]));
}

TEST(Sampler, MinPKeepsATokenExactlyAtTheThreshold) {
  // mlx-lm drops tokens below max + log(min_p), not those equal to it.
  const float at = 0.0f + std::log(0.25f);
  auto v = values(generation::apply_min_p(mx::array({0.0f, at, std::nextafter(at, -10.0f), -0.5f}), 0.25f));
  EXPECT_FALSE(std::isinf(v[1]));
  EXPECT_TRUE(std::isinf(v[2]));
  EXPECT_FALSE(std::isinf(v[3]));
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> lp = {std::log(0.6f), std::log(0.3f), std::log(0.05f), std::log(0.05f)};
  auto v = values(generation::apply_min_p(mx::array(lp.begin(), {4}), 0.2f));  // threshold 0.12
  EXPECT_FALSE(std::isinf(v[1]));
  EXPECT_TRUE(std::isinf(v[2]));
}

TEST(Sampler, RepetitionPenaltyDividesPositivesMultipliesNegatives) {
  auto v = values(generation::apply_repetition_penalty(mx::array({2.0f, -2.0f, 1.0f}),
                                                       mx::array({0, 1}), 2.0f));
  EXPECT_EQ(v, (std::vector<float>{1.0f, -4.0f, 1.0f}));
}

TEST(Sampler, RejectsBadSettings) {
  EXPECT_THROW(Sampler({.temp = -1}), std::invalid_argument);
  EXPECT_THROW(Sampler({.top_p = 0}), std::invalid_argument);
  EXPECT_THROW(Sampler({.top_k = -2}), std::invalid_argument);
}

TEST(StopStrings, HeldBackUntilDecided) {
  generation::StopMatcher m({"</end>"});
  EXPECT_EQ(m.feed("hello </e").first, "hello ");
  auto [out, stopped] = m.feed("nd> tail");
  EXPECT_EQ(out, "");
  EXPECT_TRUE(stopped);
  generation::StopMatcher m2({"STOP"});
  EXPECT_EQ(m2.feed("ST").first, "");
  EXPECT_EQ(m2.feed("ay").first, "STay");
  EXPECT_EQ(m2.flush("ST"), "ST");
}

}  // namespace
}  // namespace lmlab::test
