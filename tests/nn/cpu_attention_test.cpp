// nn::cpu_attention (lmlab's CPU attention over a KV cache slice) against
// mx::fast::scaled_dot_product_attention: grouped heads, 1 to 300 query rows
// with the bottom-right causal mask, head sizes on and off the AVX2 path,
// strided cache slices and transposed queries, long caches split into key
// ranges, and derivatives.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/cpu/cpu_attention.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

mx::array reference(const mx::array& q, const mx::array& k, const mx::array& v, float scale) {
  return mx::fast::scaled_dot_product_attention(q, k, v, scale, q.shape(2) > 1 ? "causal" : "");
}

void expect_close(const mx::array& got, const mx::array& want, const std::string& label) {
  ASSERT_EQ(got.shape(), want.shape()) << label;
  EXPECT_TRUE(mx::allclose(got, want, 1e-5, 1e-6).item<bool>())
      << label << ": max |diff| " << mx::max(mx::abs(mx::subtract(got, want))).item<float>();
}

TEST(CpuAttention, MatchesMlx) {
  struct Heads {
    int H, Hk;
  };
  int seed = 0;
  for (Heads h : {Heads{9, 3}, Heads{4, 4}, Heads{8, 1}})
    for (int D : {64, 128, 48, 20})  // 20: not a multiple of 8, the scalar kernel
      for (int L : {1, 3, 8, 64, 300})  // decode steps and prefill chunks
        for (int Lk : {L, 37, 130, 300, 1000}) {  // 130 with L 8: key ranges some rows do not see
          if (Lk < L) continue;
          const int B = D == 64 ? 2 : 1;
          ++seed;
          auto q = mx::random::normal({B, h.H, L, D}, mx::float32, mx::random::key(seed));
          // k, v as a decode step sees them: the first Lk positions of a larger cache buffer.
          auto kb = mx::random::normal({B, h.Hk, Lk + 19, D}, mx::float32, mx::random::key(seed + 1000));
          auto vb = mx::random::normal({B, h.Hk, Lk + 19, D}, mx::float32, mx::random::key(seed + 2000));
          auto k = mx::slice(kb, {0, 0, 0, 0}, {B, h.Hk, Lk, D});
          auto v = mx::slice(vb, {0, 0, 0, 0}, {B, h.Hk, Lk, D});
          const float scale = 1.0f / std::sqrt(static_cast<float>(D));
          ASSERT_TRUE(nn::cpu_attention_is_native(q, k, v));
          expect_close(nn::cpu_attention(q, k, v, scale), reference(q, k, v, scale),
                       fmt::format("H {} Hk {} D {} L {} Lk {}", h.H, h.Hk, D, L, Lk));
        }
}

TEST(CpuAttention, AttentionMaskByHand) {
  // 3 new rows at positions 3..5 of 6 keys, window 2: row 3 sees 2..3, row 4 3..4, row 5 4..5.
  auto mask = nn::attention_mask(3, 6, 2);
  ASSERT_TRUE(mask.has_value());
  std::vector<bool> want = {0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1};
  mx::array got = mx::astype(*mask, mx::int32);
  mx::eval(got);
  for (int i = 0; i < 18; ++i) EXPECT_EQ(got.data<int>()[i] != 0, want[i]) << i;
  EXPECT_FALSE(nn::attention_mask(1, 6, 0).has_value());  // one row sees everything
  EXPECT_FALSE(nn::attention_mask(1, 6, 6).has_value());
  EXPECT_TRUE(nn::attention_mask(1, 7, 6).has_value());
}

TEST(CpuAttention, SlidingWindowMatchesMlxWithTheMask) {
  int seed = 500;
  for (int D : {64, 20})
    for (int L : {1, 4, 40})
      for (int Lk : {L, 45, 300})
        for (int window : {1, 7, 64}) {
          if (Lk < L) continue;
          ++seed;
          auto q = mx::random::normal({1, 4, L, D}, mx::float32, mx::random::key(seed));
          auto k = mx::random::normal({1, 2, Lk, D}, mx::float32, mx::random::key(seed + 1000));
          auto v = mx::random::normal({1, 2, Lk, D}, mx::float32, mx::random::key(seed + 2000));
          auto mask = nn::attention_mask(L, Lk, window);
          auto want = mx::fast::scaled_dot_product_attention(q, k, v, 0.2f, mask ? "array" : "", mask);
          expect_close(nn::cpu_attention(q, k, v, 0.2f, window), want,
                       fmt::format("D {} L {} Lk {} window {}", D, L, Lk, window));
        }
}

TEST(CpuAttention, StridedInputs) {
  // q as the model makes it: (B, L, H, D) transposed to (B, H, L, D); k and v
  // with a non-unit d stride (a transposed buffer) take the scalar kernel.
  auto qt = mx::random::normal({1, 2, 6, 64}, mx::float32, mx::random::key(1));
  auto q = mx::transpose(qt, {0, 2, 1, 3});
  auto kt = mx::random::normal({1, 2, 64, 50}, mx::float32, mx::random::key(2));
  auto k = mx::swapaxes(kt, 2, 3);
  auto v = mx::random::normal({1, 2, 50, 64}, mx::float32, mx::random::key(3));
  expect_close(nn::cpu_attention(q, k, v, 0.125f), reference(mx::contiguous(q), mx::contiguous(k), v, 0.125f),
               "strided");
}

TEST(CpuAttention, LargeScoresStayFinite) {
  // Scores far apart (one key dominates, others underflow) must not give NaN or
  // inf, also when the key ranges merged at the end differ by e^-100s.
  auto q = mx::multiply(mx::random::normal({1, 2, 1, 64}, mx::float32, mx::random::key(4)), mx::array(40.0f));
  auto k = mx::random::normal({1, 2, 1000, 64}, mx::float32, mx::random::key(5));
  auto v = mx::random::normal({1, 2, 1000, 64}, mx::float32, mx::random::key(6));
  auto got = nn::cpu_attention(q, k, v, 1.0f);
  EXPECT_TRUE(mx::all(mx::isfinite(got)).item<bool>());
  expect_close(got, reference(q, k, v, 1.0f), "large scores");
}

TEST(CpuAttention, Derivatives) {
  auto q = mx::random::normal({1, 4, 2, 16}, mx::float32, mx::random::key(7));
  auto k = mx::random::normal({1, 2, 9, 16}, mx::float32, mx::random::key(8));
  auto v = mx::random::normal({1, 2, 9, 16}, mx::float32, mx::random::key(9));
  auto ct = mx::random::normal({1, 4, 2, 16}, mx::float32, mx::random::key(10));
  auto ours = [](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{nn::cpu_attention(in[0], in[1], in[2], 0.25f)};
  };
  auto theirs = [](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{reference(in[0], in[1], in[2], 0.25f)};
  };
  auto g1 = mx::vjp(ours, {q, k, v}, {ct}).second;
  auto g2 = mx::vjp(theirs, {q, k, v}, {ct}).second;
  for (int i = 0; i < 3; ++i) expect_close(g1[i], g2[i], fmt::format("vjp arg {}", i));
  std::vector<mx::array> tangents{mx::random::normal(q.shape(), mx::float32, mx::random::key(11)),
                                  mx::random::normal(k.shape(), mx::float32, mx::random::key(12)),
                                  mx::random::normal(v.shape(), mx::float32, mx::random::key(13))};
  expect_close(mx::jvp(ours, {q, k, v}, tangents).second[0], mx::jvp(theirs, {q, k, v}, tangents).second[0], "jvp");
}

// The derivative kernel (LmlabCpuAttentionGrad) against MLX's composition:
// the default model's heads (9 over 3, D 64) on the AVX2 path, an odd head size
// on the scalar one, a sliding window, fewer query rows than keys, strided
// queries and cotangents, and only some arguments asked for.
TEST(CpuAttention, DerivativeKernelMatchesTheComposition) {
  struct Case {
    int B, H, Hk, L, Lk, D, window;
  };
  int seed = 30;
  for (Case c : {Case{2, 9, 3, 37, 37, 64, 0}, Case{1, 4, 2, 20, 20, 12, 0}, Case{1, 2, 1, 33, 33, 16, 8},
                 Case{2, 4, 4, 5, 23, 32, 0}, Case{1, 3, 1, 1, 9, 8, 0}}) {
    seed += 4;
    auto q = mx::random::normal({c.B, c.H, c.L, c.D}, mx::float32, mx::random::key(seed));
    auto k = mx::random::normal({c.B, c.Hk, c.Lk, c.D}, mx::float32, mx::random::key(seed + 1));
    auto v = mx::random::normal({c.B, c.Hk, c.Lk, c.D}, mx::float32, mx::random::key(seed + 2));
    auto ct = mx::random::normal({c.B, c.H, c.L, c.D}, mx::float32, mx::random::key(seed + 3));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
    auto mask = nn::attention_mask(c.L, c.Lk, c.window);
    auto ours = [&](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{nn::cpu_attention(in[0], in[1], in[2], scale, c.window)};
    };
    auto theirs = [&](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{
          mx::fast::scaled_dot_product_attention(in[0], in[1], in[2], scale, mask ? "array" : "", mask)};
    };
    const std::string label = fmt::format("B{} H{}/{} L{} Lk{} D{} W{}", c.B, c.H, c.Hk, c.L, c.Lk, c.D, c.window);
    auto g1 = mx::vjp(ours, {q, k, v}, {ct}).second;
    auto g2 = mx::vjp(theirs, {q, k, v}, {ct}).second;
    for (int i = 0; i < 3; ++i) expect_close(g1[i], g2[i], fmt::format("{} vjp arg {}", label, i));
    // Strided query and cotangent (transposed copies), and only k's derivative.
    auto qt = mx::swapaxes(mx::contiguous(mx::swapaxes(q, 1, 2)), 1, 2);
    auto ctt = mx::swapaxes(mx::contiguous(mx::swapaxes(ct, 1, 2)), 1, 2);
    auto only_k = [&](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{nn::cpu_attention(qt, in[0], v, scale, c.window)};
    };
    expect_close(mx::vjp(only_k, {k}, {ctt}).second[0], g2[1], label + " strided, k only");
  }
}

TEST(CpuAttention, DeclinesWhatItDoesNotHandle) {
  auto q = mx::zeros({1, 4, 1, 64}), k = mx::zeros({1, 2, 5, 64});
  EXPECT_FALSE(nn::cpu_attention_is_native(q, k, k, mx::Device::gpu));
  EXPECT_FALSE(nn::cpu_attention_is_native(mx::astype(q, mx::float16), mx::astype(k, mx::float16),
                                              mx::astype(k, mx::float16)));
  EXPECT_FALSE(nn::cpu_attention_is_native(mx::zeros({1, 3, 1, 64}), k, k));  // 3 heads over 2
  EXPECT_FALSE(nn::cpu_attention_is_native(mx::zeros({1, 4, 6, 64}), k, k));  // L > Lk
  EXPECT_THROW(nn::cpu_attention(mx::zeros({1, 3, 1, 64}), k, k, 1.0f), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
