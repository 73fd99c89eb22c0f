// cpu::dequantize_affine against mx::dequantize, and the dense product
// (nn::Linear's path for many rows on the CPU) against mx::quantized_matmul,
// forward and gradient with respect to x.
#include <tuple>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/nn.h"
#include "nn/cpu/dequantize.h"
#include "nn/cpu/elementwise_kernels.h"
#include "nn/linear.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using nn_util::max_diff;

using Packed = nn_util::QuantizedWeights;
constexpr auto pack = nn_util::quantized_weights;

using Case = std::tuple<int, int>;  // bits, group size
class DequantizeCase : public ::testing::TestWithParam<Case> {};

TEST_P(DequantizeCase, EqualsMlxDequantize) {
  LMLAB_SKIP_OFF_CPU();
  const auto [bits, group_size] = GetParam();
  for (auto dtype : {mx::float32, mx::float16, mx::bfloat16}) {
    // 1,029 rows: tasks of uneven size, a last one of a few rows.
    const Packed p = pack(1029, 384, group_size, bits, dtype, 3 + bits);
    const mx::array got = nn::cpu::dequantize_affine(p.w, p.scales, p.biases, group_size, bits);
    // The exact values: half-precision scales widened first (mx::dequantize
    // with half scales computes in half precision, then widens).
    const mx::array want = mx::dequantize(p.w, mx::astype(p.scales, mx::float32), mx::astype(p.biases, mx::float32),
                                          group_size, bits, "affine", std::nullopt, mx::float32);
    ASSERT_EQ(got.shape(), want.shape());
    ASSERT_EQ(got.dtype(), mx::float32);
    EXPECT_LE(max_diff(got, want), 1e-6f * mx::max(mx::abs(want)).item<float>()) << "scales " << dtype;
  }
}

INSTANTIATE_TEST_SUITE_P(All, DequantizeCase, ::testing::Combine(::testing::Values(4, 8), ::testing::Values(32, 64, 128)));

// The group kernels alone: the AVX2 one this machine dispatches to and the
// portable loop it never picks here, against mx::dequantize, equal to the bit
// (both compute s·q + b as a multiply and an add).
TEST(DequantizeGroup, KernelsEqualMlxDequantizeExactly) {
  LMLAB_SKIP_OFF_CPU();
  for (int bits : {4, 8}) {
    const Packed p = pack(3, 64, 32, bits, mx::float32, 11 + bits);
    const mx::array want = mx::dequantize(p.w, p.scales, p.biases, 32, bits, "affine", std::nullopt, mx::float32);
    mx::eval(want, p.w, p.scales, p.biases);
    const uint32_t* w = p.w.data<uint32_t>();
    for (auto kernel : {nn::cpu::dequant_group_kernel(), &nn::cpu::dequant_group_scalar}) {
      std::vector<float> out(3 * 64);
      for (int n = 0; n < 3; ++n)
        for (int g = 0; g < 2; ++g)
          kernel(w + n * 2 * bits + g * bits, 32, bits, p.scales.data<float>()[n * 2 + g],
                 p.biases.data<float>()[n * 2 + g], out.data() + n * 64 + g * 32);
      EXPECT_TRUE(mx::array_equal(mx::array(out.begin(), {3, 64}), want).item<bool>())
 << (kernel == &nn::cpu::dequant_group_scalar ? "scalar " : "dispatched ")
          << bits << " bits, max diff " << max_diff(mx::array(out.begin(), {3, 64}), want);
    }
  }
}

TEST(DenseQuantizedMatmul, MatchesMlxForwardAndGradient) {
  LMLAB_SKIP_OFF_CPU();
  for (int bits : {4, 8}) {
    const Packed p = pack(200, 256, 64, bits, mx::float32, 11);
    const mx::array x = mx::random::normal({2, 40, 256}, mx::float32, mx::random::key(5));
    const mx::array c = mx::random::normal({2, 40, 200}, mx::float32, mx::random::key(6));
    auto loss = [&](bool dense) {
      return [&, dense](const mx::array& in) {
        const mx::array y = dense ? nn::cpu::dense_quantized_matmul(in, p.w, p.scales, p.biases, 64, bits)
                                  : mx::quantized_matmul(in, p.w, p.scales, p.biases, true, 64, bits);
        return mx::sum(mx::multiply(y, c));
      };
    };
    const mx::array y = nn::cpu::dense_quantized_matmul(x, p.w, p.scales, p.biases, 64, bits);
    const mx::array want = mx::quantized_matmul(x, p.w, p.scales, p.biases, true, 64, bits);
    EXPECT_LE(max_diff(y, want), 1e-5f * mx::max(mx::abs(want)).item<float>()) << bits << " bits";
    const mx::array g = mx::grad(loss(true))(x);
    const mx::array g_want = mx::grad(loss(false))(x);
    ASSERT_EQ(g.shape(), x.shape());
    EXPECT_LE(max_diff(g, g_want), 1e-5f * mx::max(mx::abs(g_want)).item<float>()) << bits << " bits";
  }
}

TEST(DenseQuantizedMatmul, LinearTakesItForManyRowsOnly) {
  LMLAB_SKIP_OFF_CPU();
  const Packed p = pack(64, 128, 32, 4, mx::float32, 2);
  Weights w;
  w.set("proj.weight", p.w);
  w.set("proj.scales", p.scales);
  w.set("proj.biases", p.biases);
  w.set_quant("proj", QuantSpec{.bits = 4, .group_size = 32, .mode = "affine"});
  const std::string name = "proj";
  const nn::Linear l = nn::Linear::view(w, name);
  auto dense = [&](const mx::array& x) { return nn::cpu::dense_rows(x, l.weight, *l.scales, l.biases, *l.quant); };
  EXPECT_FALSE(dense(mx::zeros({1, nn::cpu::kDenseRows - 1, 128}))) << "decode-sized products keep the GEMV";
  EXPECT_TRUE(dense(mx::zeros({1, nn::cpu::kDenseRows, 128})));
  EXPECT_FALSE(dense(mx::zeros({nn::cpu::kDenseRows, 128}, mx::float16))) << "float32 activations only";
  const QuantSpec g64{.bits = 4, .group_size = 64, .mode = "affine"};
  const Packed big = pack(8, 1 << 22, 64, 4, mx::float32, 1);  // 2^25 weights: the largest taken
  EXPECT_TRUE(nn::cpu::dense_rows(mx::zeros({64, 1 << 22}), big.w, big.scales, big.biases, g64));
  const Packed bigger = pack(9, 1 << 22, 64, 4, mx::float32, 1);
  EXPECT_FALSE(nn::cpu::dense_rows(mx::zeros({64, 1 << 22}), bigger.w, bigger.scales, bigger.biases, g64))
      << "a float copy over 128 MB stays on the quantized GEMM";
  QuantSpec q8 = *l.quant;
  q8.activations = "q8_1";
  EXPECT_FALSE(nn::cpu::dense_rows(mx::zeros({64, 128}), l.weight, *l.scales, l.biases, q8)) << "int8 activations keep lmlab's kernel";
  const mx::array x = mx::random::normal({3, 17, 128}, mx::float32, mx::random::key(9));
  const mx::array want = mx::quantized_matmul(x, p.w, p.scales, p.biases, true, 32, 4);
  EXPECT_LE(max_diff(l(x), want), 1e-5f * mx::max(mx::abs(want)).item<float>());
}

}  // namespace
}  // namespace lmlab::test
