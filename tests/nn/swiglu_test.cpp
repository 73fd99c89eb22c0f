// nn::swiglu (lmlab's fused CPU kernel) against the MLX composition
// gate · sigmoid(gate) · up: sizes on and off the 8-lane path and above the
// parallel threshold, extreme gates, strided inputs, derivatives, fallbacks.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/cpu/elementwise_kernels.h"
#include "nn/cpu/swiglu.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

mx::array reference(const mx::array& g, const mx::array& u) {
  return mx::multiply(mx::multiply(g, mx::sigmoid(g)), u);
}

void expect_close(const mx::array& got, const mx::array& want, const std::string& label) {
  ASSERT_EQ(got.shape(), want.shape()) << label;
  EXPECT_TRUE(mx::allclose(got, want, 2e-6, 1e-7).item<bool>())
      << label << ": max |diff| " << mx::max(mx::abs(mx::subtract(got, want))).item<float>();
}

TEST(Swiglu, MatchesMlx) {
  int seed = 0;
  for (mx::Shape shape : {mx::Shape{1, 1, 1536}, mx::Shape{3, 13}, mx::Shape{7}, mx::Shape{2, 300, 1536}}) {
    ++seed;
    auto g = mx::multiply(mx::random::normal(shape, mx::float32, mx::random::key(seed)), mx::array(4.0f));
    auto u = mx::random::normal(shape, mx::float32, mx::random::key(seed + 100));
    expect_close(nn::swiglu(g, u), reference(g, u), fmt::format("{} elements", g.size()));
  }
}

TEST(Swiglu, ExtremeGates) {
  std::vector<float> gv{-1e4f, -200.0f, -88.0f, -87.5f, -30.0f, -1e-30f, 0.0f, 1e-30f, 30.0f, 88.0f, 200.0f, 1e4f,
                        -0.0f, 1.0f, -1.0f, 16.0f, -16.0f};
  auto g = mx::array(gv.begin(), {static_cast<int>(gv.size())});
  auto u = mx::full(g.shape(), 1.5f);
  auto got = nn::swiglu(g, u);
  EXPECT_TRUE(mx::all(mx::isfinite(got)).item<bool>());
  expect_close(got, reference(g, u), "extreme gates");
}

// The portable loops every machine without the SIMD kernels runs (and the
// dispatch never picks on this one), against the same compositions.
TEST(Swiglu, ScalarLoopsMatchMlx) {
  auto g = mx::multiply(mx::random::normal({37}, mx::float32, mx::random::key(5)), mx::array(4.0f));
  auto u = mx::random::normal({37}, mx::float32, mx::random::key(6));
  mx::eval(g, u);
  std::vector<float> out(37);
  nn::cpu::swiglu_scalar(g.data<float>(), u.data<float>(), out.data(), 37);
  expect_close(mx::array(out.begin(), {37}), reference(g, u), "swiglu_scalar");
  nn::cpu::geglu_scalar(g.data<float>(), u.data<float>(), out.data(), 37);
  const auto gelu = mx::multiply(mx::multiply(mx::array(0.5f), g),
                                 mx::add(mx::array(1.0f), mx::tanh(mx::multiply(mx::array(0.7978845608028654f),
                                         mx::add(g, mx::multiply(mx::array(0.044715f), mx::power(g, mx::array(3.0f))))))));
  EXPECT_TRUE(mx::allclose(mx::array(out.begin(), {37}), mx::multiply(gelu, u), 1e-5, 1e-6).item<bool>()) << "geglu_scalar";
}

TEST(Swiglu, StridedInputs) {
  auto gt = mx::random::normal({64, 10}, mx::float32, mx::random::key(1));
  auto g = mx::transpose(gt);
  auto u = mx::broadcast_to(mx::random::normal({1, 64}, mx::float32, mx::random::key(2)), {10, 64});
  expect_close(nn::swiglu(g, u), reference(mx::contiguous(g), mx::contiguous(u)), "strided");
}

TEST(Swiglu, Derivatives) {
  auto g = mx::random::normal({4, 33}, mx::float32, mx::random::key(3));
  auto u = mx::random::normal({4, 33}, mx::float32, mx::random::key(4));
  auto ct = mx::random::normal({4, 33}, mx::float32, mx::random::key(5));
  auto ours = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{nn::swiglu(in[0], in[1])}; };
  auto theirs = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in[0], in[1])}; };
  auto g1 = mx::vjp(ours, {g, u}, {ct}).second;
  auto g2 = mx::vjp(theirs, {g, u}, {ct}).second;
  for (int i = 0; i < 2; ++i) expect_close(g1[i], g2[i], fmt::format("vjp arg {}", i));
  expect_close(mx::jvp(ours, {g, u}, {ct, u}).second[0], mx::jvp(theirs, {g, u}, {ct, u}).second[0], "jvp");
}

// The derivative kernel (LmlabSwigluGrad) over sizes off the 8-lane path and
// above the threaded threshold, and gates far into either tail.
TEST(Swiglu, DerivativeKernelMatchesTheComposition) {
  int seed = 20;
  for (mx::Shape shape : {mx::Shape{7}, mx::Shape{3, 1537}, mx::Shape{2, 130, 1536}}) {
    ++seed;
    auto g = mx::multiply(mx::random::normal(shape, mx::float32, mx::random::key(seed)), mx::array(6.0f));
    auto u = mx::random::normal(shape, mx::float32, mx::random::key(seed + 1));
    auto ct = mx::random::normal(shape, mx::float32, mx::random::key(seed + 2));
    auto ours = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{nn::swiglu(in[0], in[1])}; };
    auto theirs = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in[0], in[1])}; };
    auto g1 = mx::vjp(ours, {g, u}, {ct}).second;
    auto g2 = mx::vjp(theirs, {g, u}, {ct}).second;
    for (int i = 0; i < 2; ++i) expect_close(g1[i], g2[i], fmt::format("{} elements, arg {}", g.size(), i));
    // Only the gate's derivative asked for (the up projection frozen).
    auto only_gate = mx::vjp([&](const std::vector<mx::array>& in) { return std::vector<mx::array>{nn::swiglu(in[0], u)}; },
                             {g}, {ct}).second;
    expect_close(only_gate[0], g2[0], "gate only");
  }
  std::vector<float> gv{-1e4f, -200.0f, -88.0f, -30.0f, -1e-30f, 0.0f, 1e-30f, 30.0f, 88.0f, 200.0f, 1e4f};
  auto g = mx::array(gv.begin(), {static_cast<int>(gv.size())});
  auto u = mx::full(g.shape(), 1.5f);
  auto f = [&](const mx::array& x) { return mx::sum(nn::swiglu(x, u)); };
  auto r = [&](const mx::array& x) { return mx::sum(reference(x, u)); };
  auto got = mx::grad(f)(g);
  EXPECT_TRUE(mx::all(mx::isfinite(got)).item<bool>());
  expect_close(got, mx::grad(r)(g), "extreme gates");
}

TEST(Swiglu, ScalarDerivativeLoopMatchesMlx) {
  auto g = mx::multiply(mx::random::normal({37}, mx::float32, mx::random::key(8)), mx::array(4.0f));
  auto u = mx::random::normal({37}, mx::float32, mx::random::key(9));
  auto ct = mx::random::normal({37}, mx::float32, mx::random::key(10));
  mx::eval(g, u, ct);
  std::vector<float> dg(37), du(37);
  nn::cpu::swiglu_grad_scalar(g.data<float>(), u.data<float>(), ct.data<float>(), dg.data(), du.data(), 37);
  auto theirs = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in[0], in[1])}; };
  auto want = mx::vjp(theirs, {g, u}, {ct}).second;
  expect_close(mx::array(dg.begin(), {37}), want[0], "dgate");
  expect_close(mx::array(du.begin(), {37}), want[1], "dup");
}

TEST(Swiglu, OtherDtypesUseMlx) {
  auto g = mx::astype(mx::random::normal({5, 8}, mx::float32, mx::random::key(6)), mx::float16);
  auto u = mx::astype(mx::random::normal({5, 8}, mx::float32, mx::random::key(7)), mx::float16);
  auto got = nn::swiglu(g, u);
  EXPECT_EQ(got.dtype(), mx::float16);
  EXPECT_TRUE(mx::array_equal(got, reference(g, u)).item<bool>());
}

}  // namespace
}  // namespace lmlab::test

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

// MLX's nn.gelu_approx, written out: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
mx::array gelu_approx_reference(const mx::array& g, const mx::array& u) {
  auto x = mx::astype(g, mx::float64, mx::Device::cpu);
  auto inner = mx::multiply(mx::array(std::sqrt(2.0 / M_PI), mx::float64),
                            mx::add(x, mx::multiply(mx::array(0.044715, mx::float64), mx::power(x, mx::array(3.0, mx::float64)))));
  auto y = mx::multiply(mx::multiply(mx::array(0.5, mx::float64), x), mx::add(mx::array(1.0, mx::float64), mx::tanh(inner)));
  return mx::astype(mx::multiply(y, mx::astype(u, mx::float64, mx::Device::cpu)), mx::float32);
}

TEST(Geglu, MatchesGeluApproxInDoublePrecision) {
  int seed = 50;
  for (mx::Shape shape : {mx::Shape{1, 1, 2048}, mx::Shape{3, 13}, mx::Shape{2, 300, 1536}}) {
    ++seed;
    auto g = mx::multiply(mx::random::normal(shape, mx::float32, mx::random::key(seed)), mx::array(4.0f));
    auto u = mx::random::normal(shape, mx::float32, mx::random::key(seed + 100));
    auto got = nn::geglu(g, u);
    auto want = gelu_approx_reference(g, u);
    EXPECT_TRUE(mx::allclose(got, want, 2e-6, 1e-6).item<bool>())
        << "max |diff| " << mx::max(mx::abs(mx::subtract(got, want))).item<float>();
    // The composition (GPU streams, derivatives) computes the same function.
    auto composed = mx::multiply(mx::multiply(mx::multiply(mx::array(0.5f), g),
                                              mx::add(mx::array(1.0f), mx::tanh(mx::multiply(mx::array(0.7978845608f),
                                                                                            mx::add(g, mx::multiply(mx::array(0.044715f), mx::power(g, mx::array(3.0f)))))))),
                                 u);
    EXPECT_TRUE(mx::allclose(composed, want, 2e-6, 1e-6).item<bool>());
  }
}

// The kernel this CPU runs (AVX2: g·sigmoid(2z), not 0.5·g·(1 + tanh z)) at
// extreme and tiny gates and every tail length, against double precision.
TEST(Geglu, KernelAtExtremeGates) {
  std::vector<float> gv{-1e4f, -200.0f, -88.0f, -30.0f, -6.0f, -3.0f, -1e-3f, -1e-30f, -0.0f, 0.0f, 1e-30f, 1e-3f,
                        0.5f,  3.0f,    6.0f,   30.0f,  88.0f, 200.0f, 1e4f, -0.7f,  2.2f};
  for (int n : {1, 7, 8, 9, static_cast<int>(gv.size())}) {
    auto g = mx::array(gv.begin(), {n});
    auto u = mx::full({n}, 1.5f);
    std::vector<float> out(n);
    nn::cpu::geglu_kernel()(gv.data(), std::vector<float>(n, 1.5f).data(), out.data(), n);
    auto got = mx::array(out.begin(), {n});
    EXPECT_TRUE(mx::all(mx::isfinite(got)).item<bool>()) << n;
    auto want = gelu_approx_reference(g, u);
    EXPECT_TRUE(mx::allclose(got, want, 2e-6, 1e-6).item<bool>())
        << n << " elements: max |diff| " << mx::max(mx::abs(mx::subtract(got, want))).item<float>();
  }
}

TEST(Geglu, DerivativesFollowTheComposition) {
  auto g = mx::random::normal({4, 16}, mx::float32, mx::random::key(3));
  auto u = mx::random::normal({4, 16}, mx::float32, mx::random::key(4));
  auto f = [](const std::vector<mx::array>& in) { return std::vector<mx::array>{mx::sum(nn::geglu(in[0], in[1]))}; };
  auto [out, grads] = mx::vjp(f, {g, u}, {mx::array(1.0f)});
  // d/du = gelu(g); compare with the kernel's own forward.
  EXPECT_TRUE(mx::allclose(grads[1], nn::geglu(g, mx::ones_like(u)), 1e-5, 1e-6).item<bool>());
}

}  // namespace
}  // namespace lmlab::test
