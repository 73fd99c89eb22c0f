// nn::cross_entropy (lmlab's CPU primitives) against the composition
// mlx.nn.losses.cross_entropy is: rows on and off the 8-lane path and above
// the threaded threshold, extreme and infinite logits, strided logits, targets
// of other integer types, the derivative, the fallbacks, the scalar row kernels.
#include <cmath>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/cpu/cross_entropy.h"
#include "nn/cpu/elementwise_kernels.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

mx::array reference(const mx::array& z, const mx::array& t) {
  mx::array shifted = mx::subtract(z, mx::stop_gradient(mx::max(z, -1, true)));
  mx::array score = mx::squeeze(mx::take_along_axis(shifted, mx::expand_dims(t, -1), -1), -1);
  return mx::subtract(mx::logsumexp(shifted, -1), score);
}

void expect_close(const mx::array& got, const mx::array& want, const std::string& label, float rtol = 1e-5f,
                  float atol = 1e-6f) {
  ASSERT_EQ(got.shape(), want.shape()) << label;
  ASSERT_EQ(got.dtype(), mx::float32) << label;
  EXPECT_TRUE(mx::allclose(got, want, rtol, atol).item<bool>())
      << label << ": max |diff| " << mx::max(mx::abs(mx::subtract(got, want))).item<float>();
}

mx::array logits(const mx::Shape& shape, int seed, float spread = 4.0f) {
  return mx::multiply(mx::random::normal(shape, mx::float32, mx::random::key(seed)), mx::array(spread));
}

mx::array targets(const mx::Shape& shape, int V, int seed) {
  return mx::random::randint(0, V, shape, mx::int32, mx::random::key(seed));
}

// The loss and g · (softmax − onehot) in float64, the truth both float32 paths approximate.
std::pair<mx::array, mx::array> truth(const mx::array& z, const mx::array& t, const mx::array& g) {
  const mx::array z64 = mx::astype(z, mx::float64, mx::Device::cpu);
  const mx::array g64 = mx::expand_dims(mx::astype(g, mx::float64, mx::Device::cpu), -1);
  const mx::array onehot = mx::astype(mx::equal(mx::expand_dims(t, -1), mx::arange(z.shape(-1))), mx::float64);
  const mx::array loss = mx::subtract(mx::logsumexp(z64, -1), mx::sum(mx::multiply(z64, onehot), -1));
  return {loss, mx::multiply(g64, mx::subtract(mx::softmax(z64, -1), onehot))};
}

TEST(CrossEntropy, MatchesMlxAndItsDerivative) {
  int seed = 0;
  // Vocabularies on and off the 8- and 16-lane paths; row counts below and above the threaded threshold.
  for (auto [shape, V] : std::vector<std::pair<mx::Shape, int>>{
           {{1}, 1}, {{3}, 7}, {{2, 5}, 33}, {{1, 40}, 49152}, {{2, 3}, 4099}, {{97}, 1000}}) {
    ++seed;
    mx::Shape zs = shape;
    zs.push_back(V);
    const mx::array z = logits(zs, seed), t = targets(shape, V, seed + 50);
    const mx::array ct = mx::random::uniform(t.shape(), mx::float32, mx::random::key(seed + 90));
    const std::string label = fmt::format("{} rows of {}", t.size(), V);
    auto ours = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{nn::cross_entropy(in[0], t)}; };
    auto theirs = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in[0], t)}; };
    const auto [loss, grad] = truth(z, t, ct);
    const mx::array got = nn::cross_entropy(z, t), got_grad = mx::vjp(ours, {z}, {ct}).second[0];
    expect_close(got, mx::astype(loss, mx::float32), label + " against float64", 1e-6f, 2e-6f);
    expect_close(got_grad, mx::astype(grad, mx::float32), label + " vjp against float64", 1e-5f, 1e-7f);
    // MLX's float32 composition is further from the float64 values (its
    // scalar exp and summation: 5.5e-5 off where this is 3.7e-6 at V = 49152).
    expect_close(got, reference(z, t), label + " against MLX", 1e-5f, 1e-5f);
    expect_close(got_grad, mx::vjp(theirs, {z}, {ct}).second[0], label + " vjp against MLX", 2e-4f, 1e-6f);
  }
}

TEST(CrossEntropy, ExtremeLogits) {
  // Huge and tiny logits, −inf entries (masked vocabulary), a row whose target is the only finite logit.
  const float inf = INFINITY;
  std::vector<float> zv{80.0f, -80.0f, 1e4f, 0.0f, -inf, 3.0f, 1e-30f, -1e4f, 0.5f,  //
                        -inf, -inf, 2.0f, -inf, -inf, -inf, -inf, -inf, -inf};
  const mx::array z(zv.begin(), {2, 9});
  const mx::array t = mx::array({2, 2}, {2});
  const mx::array got = nn::cross_entropy(z, t);
  EXPECT_TRUE(mx::all(mx::isfinite(got)).item<bool>());
  expect_close(got, reference(z, t), "extreme");
  EXPECT_EQ(mx::slice(got, {1}, {2}).item<float>(), 0.0f) << "the only finite logit is certain";
  const mx::array g = mx::grad([&](const mx::array& x) { return mx::sum(nn::cross_entropy(x, t)); })(z);
  EXPECT_TRUE(mx::all(mx::isfinite(g)).item<bool>());
  expect_close(g, mx::grad([&](const mx::array& x) { return mx::sum(reference(x, t)); })(z), "extreme vjp", 1e-5f,
               1e-6f);
}

TEST(CrossEntropy, NanLogitsAndOutOfRangeTargetsGiveNan) {
  mx::array z = logits({2, 20}, 3);
  z = mx::where(mx::reshape(mx::equal(mx::arange(40), mx::array(27)), {2, 20}), mx::array(NAN), z);
  const mx::array loss = nn::cross_entropy(z, mx::array({1, 1}, {2}));
  EXPECT_FALSE(std::isnan(mx::slice(loss, {0}, {1}).item<float>()));
  EXPECT_TRUE(std::isnan(mx::slice(loss, {1}, {2}).item<float>())) << "row 1 holds a NaN logit";
  const mx::array bad = nn::cross_entropy(logits({2, 20}, 4), mx::array({-1, 20}, {2}));
  EXPECT_TRUE(mx::all(mx::isnan(bad)).item<bool>()) << "targets outside [0, V) are never read past the row";
}

TEST(CrossEntropy, StridedLogitsAndOtherTargetTypes) {
  const mx::array zt = logits({300, 6}, 5);
  const mx::array z = mx::transpose(zt);  // (6, 300), not row-contiguous
  const mx::array t = targets({6}, 300, 6);
  expect_close(nn::cross_entropy(z, mx::astype(t, mx::uint32)), reference(mx::contiguous(z), t), "strided, uint32");
  expect_close(nn::cross_entropy(z, mx::astype(t, mx::int64)), reference(mx::contiguous(z), t), "strided, int64");
}

TEST(CrossEntropy, OtherDtypesAndDevicesTakeTheComposition) {
  const mx::array z = logits({4, 64}, 7);
  const mx::array t = targets({4}, 64, 8);
  const mx::array half = nn::cross_entropy(mx::astype(z, mx::float16), t);
  EXPECT_EQ(half.dtype(), mx::float32);
  expect_close(half, reference(mx::astype(mx::astype(z, mx::float16), mx::float32), t), "float16", 2e-3f, 2e-3f);
  EXPECT_THROW(nn::cross_entropy(z, mx::array({1, 2, 3}, {3})), std::exception) << "mismatched rows";
}

// The portable row kernels every machine without AVX2 runs (the dispatch never
// picks them on this one), against MLX.
TEST(CrossEntropy, ScalarRowKernelsMatchMlx) {
  const mx::array z = logits({1, 37}, 9);
  mx::eval(z);
  const float lse = nn::cpu::logsumexp_scalar(z.data<float>(), 37);
  EXPECT_NEAR(lse, mx::logsumexp(z).item<float>(), 1e-5f);
  std::vector<float> out(37);
  nn::cpu::scaled_softmax_scalar(z.data<float>(), 37, lse, 0.5f, out.data());
  expect_close(mx::array(out.begin(), {1, 37}), mx::multiply(mx::array(0.5f), mx::softmax(z, -1, true)), "softmax");
  const float nan_row[3] = {1.0f, NAN, 2.0f};
  EXPECT_TRUE(std::isnan(nn::cpu::logsumexp_scalar(nan_row, 3)));
  EXPECT_TRUE(std::isnan(nn::cpu::logsumexp_kernel()(nan_row, 3)));
  const float ninf_row[2] = {-INFINITY, -INFINITY};
  EXPECT_EQ(nn::cpu::logsumexp_kernel()(ninf_row, 2), -INFINITY);
}

}  // namespace
}  // namespace lmlab::test
