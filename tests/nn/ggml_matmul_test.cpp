// nn::ggml_matmul (lmlab's CPU kernel on raw GGML blocks) against the float32
// matmul of the same weights dequantized by io::ggml_dequantize (bit-exact to
// ggml, tests/io/ggml_quants_test.cpp): every raw-block type, 1 to 19 rows,
// batch shapes, gradients, and the composed fallback.
#include <random>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"
#include "nn/cpu/ggml_matmul.h"
#include "nn/cpu/quantized_matmul_kernels.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using io::GgmlType;

// N rows of K values as valid blocks with random fields (d in [1e-3, 1e-2]).
mx::array random_blocks(GgmlType type, int N, int K, uint32_t seed) {
  return nn_util::random_ggml_blocks(type, N, K, seed);
}

// |got - want| ≤ 1e-5 · (|x| @ |W|ᵀ): float32 rounding of the sums, measured
// against the magnitude of what is summed.
void expect_close(const mx::array& got, const mx::array& x, const mx::array& dense) {
  auto want = mx::matmul(x, mx::transpose(dense));
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.dtype(), mx::float32);
  auto bound = mx::matmul(mx::abs(x), mx::transpose(mx::abs(dense)));
  auto excess = mx::max(mx::subtract(mx::abs(mx::subtract(got, want)), mx::multiply(bound, mx::array(1e-5f))));
  EXPECT_LE(excess.item<float>(), 1e-30f);
}

class GgmlMatmulType : public ::testing::TestWithParam<GgmlType> {};

TEST_P(GgmlMatmulType, MatchesTheDequantizedMatmul) {
  const GgmlType type = GetParam();
  const int N = 37, K = 512;  // N not a multiple of the thread chunks
  auto blocks = random_blocks(type, N, K, 11 + static_cast<uint32_t>(type));
  auto dense = io::ggml_dequantize(blocks, type, mx::float32);
  for (int rows : {1, 3, 19}) {
    auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows));
    ASSERT_TRUE(nn::ggml_matmul_is_native(x, blocks, type));
    expect_close(nn::ggml_matmul(x, blocks, type), x, dense);
  }
}

INSTANTIATE_TEST_SUITE_P(All, GgmlMatmulType,
                         ::testing::Values(GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q6_K, GgmlType::IQ4_NL,
                                           GgmlType::IQ4_XS),
                         [](const auto& info) { return io::ggml_mode_name(info.param); });

TEST(GgmlMatmul, Q6KGemvEveryRowCountAndExtremeFields) {
  // 1 to 8 rows take the Q6_K GEMV kernel (one to four rows of x per pass over
  // a weight row), 9 the row-decoding path; K of one and of eight super-blocks;
  // N odd. The blocks hold the extreme fields (q 0 and 63, scales -128 and 127)
  // beside random ones, so sign and high-bit handling are both checked.
  for (int K : {256, 2048}) {
    const int N = 13;
    auto blocks = random_blocks(GgmlType::Q6_K, N, K, 21 + K);
    {
      mx::eval(blocks);
      uint8_t* b = blocks.data<uint8_t>();
      const std::vector<uint8_t> zero(210, 0);
      for (int e : {0, 1}) {  // rows 0 and 1, first super-block: all fields at one extreme
        io::GgmlBlockFields f = io::ggml_unpack_block(GgmlType::Q6_K, zero.data());
        f.d = 0.004f;
        for (int& sc : f.scales) sc = e ? 127 : -128;
        for (int& q : f.q) q = e ? 63 : 0;
        io::ggml_pack_block(GgmlType::Q6_K, f, b + e * blocks.shape(1));
      }
    }
    auto dense = io::ggml_dequantize(blocks, GgmlType::Q6_K, mx::float32);
    for (int rows = 1; rows <= 9; ++rows) {
      auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(100 + rows));
      SCOPED_TRACE(fmt::format("K {} rows {}", K, rows));
      expect_close(nn::ggml_matmul(x, blocks, GgmlType::Q6_K), x, dense);
    }
  }
}

TEST_P(GgmlMatmulType, PortableRowsMatchTheDequantizedMatmul) {
  // The decode-and-dot path run_qmm takes for raw blocks without a kernel of
  // their own (every type but Q6_K on AVX2 CPUs, all of them elsewhere).
  const GgmlType type = GetParam();
  const int N = 11, K = 512, M = 3;
  auto blocks = random_blocks(type, N, K, 31 + static_cast<uint32_t>(type));
  auto dense = io::ggml_dequantize(blocks, type, mx::float32);
  auto x = mx::random::normal({M, K}, mx::float32, mx::random::key(7));
  mx::eval(blocks, x);
  std::vector<float> out(static_cast<size_t>(M) * N, -1.0f);
  nn::cpu::QmmProblem p{.x = x.data<float>(), .w = reinterpret_cast<const uint32_t*>(blocks.data<uint8_t>()),
                        .scales = nullptr, .biases = nullptr, .scale_type = nn::cpu::ScaleType::f32,
                        .out = out.data(), .M = M, .N = N, .K = K, .group_size = 0, .bits = 0,
                        .ggml_type = static_cast<int>(type)};
  nn::cpu::ggml_rows(p, 0, 5);
  nn::cpu::ggml_rows(p, 5, N);
  expect_close(mx::array(out.data(), {M, N}, mx::float32), x, dense);
}

TEST(GgmlMatmul, ManyRowsAndBatchShapes) {
  // 2 048 × 768 weights: split over the compute pool; x (2, 5, K) flattens to rows.
  const int N = 2048, K = 768;
  auto blocks = random_blocks(GgmlType::Q6_K, N, K, 5);
  auto dense = io::ggml_dequantize(blocks, GgmlType::Q6_K, mx::float32);
  auto x = mx::random::normal({2, 5, K}, mx::float32, mx::random::key(2));
  auto got = nn::ggml_matmul(x, blocks, GgmlType::Q6_K);
  EXPECT_EQ(got.shape(), (mx::Shape{2, 5, N}));
  expect_close(mx::reshape(got, {10, N}), mx::reshape(x, {10, K}), dense);
}

TEST(GgmlMatmul, GradientWithRespectToX) {
  const int N = 24, K = 256;
  auto blocks = random_blocks(GgmlType::Q6_K, N, K, 9);
  auto dense = io::ggml_dequantize(blocks, GgmlType::Q6_K, mx::float32);
  auto x = mx::random::normal({3, K}, mx::float32, mx::random::key(4));
  auto f = [&](const mx::array& a) { return mx::sum(mx::square(nn::ggml_matmul(a, blocks, GgmlType::Q6_K))); };
  auto g = [&](const mx::array& a) { return mx::sum(mx::square(mx::matmul(a, mx::transpose(dense)))); };
  auto got = mx::grad(f)(x), want = mx::grad(g)(x);
  EXPECT_LT(mx::max(mx::abs(mx::subtract(got, want))).item<float>(),
            1e-4f * mx::max(mx::abs(want)).item<float>());
}

TEST(GgmlMatmul, ComposesWhereTheKernelDoesNotApply) {
  const int N = 8, K = 256;
  auto blocks = random_blocks(GgmlType::Q3_K, N, K, 3);
  auto dense = io::ggml_dequantize(blocks, GgmlType::Q3_K, mx::float32);
  auto xh = mx::astype(mx::random::normal({2, K}, mx::float32, mx::random::key(1)), mx::float16);
  EXPECT_FALSE(nn::ggml_matmul_is_native(xh, blocks, GgmlType::Q3_K));
  auto y = nn::ggml_matmul(xh, blocks, GgmlType::Q3_K);
  EXPECT_EQ(y.dtype(), mx::float16);
  auto x = mx::astype(xh, mx::float32);
  EXPECT_FALSE(nn::ggml_matmul_is_native(x, blocks, GgmlType::Q3_K, mx::Device::gpu));
  // K not matching the blocks' width is not the kernel's either.
  EXPECT_FALSE(nn::ggml_matmul_is_native(mx::zeros({1, 512}), blocks, GgmlType::Q3_K));
  EXPECT_FALSE(nn::ggml_matmul_is_native(x, blocks, GgmlType::Q4_K));
}

// A GPU has no kernel of lmlab's for raw ggml blocks: there ggml_matmul
// dequantizes with MLX ops and multiplies with MLX's GEMM (and the gradient
// goes through the same composition). Runs with LMLAB_TEST_DEVICE=gpu on a
// CUDA build (scripts/gpu-check.sh); skips elsewhere.
TEST_P(GgmlMatmulType, GpuComposedPathMatchesTheDequantizedMatmul) {
  (void)cpu_context();
  if (mx::default_device() != mx::Device::gpu) GTEST_SKIP() << "needs a GPU";
  const GgmlType type = GetParam();
  const int N = 37, K = 512;
  auto blocks = random_blocks(type, N, K, 11 + static_cast<uint32_t>(type));
  mx::array dense = mx::array(0.0f);
  {
    mx::StreamContext on_cpu(mx::Device::cpu);
    dense = io::ggml_dequantize(blocks, type, mx::float32);
    mx::eval(dense);
  }
  for (int rows : {1, 3, 19}) {
    auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows));
    EXPECT_FALSE(nn::ggml_matmul_is_native(x, blocks, type));
    auto got = nn::ggml_matmul(x, blocks, type);
    // Against the CPU's product of the CPU's dequantization; the GPU's GEMM
    // sums in another order (TF32 off: MLX_ENABLE_TF32=0), hence 1e-4.
    auto want = mx::matmul(x, mx::transpose(dense), mx::Device::cpu);
    auto bound = mx::matmul(mx::abs(x), mx::transpose(mx::abs(dense)), mx::Device::cpu);
    auto excess = mx::max(mx::subtract(mx::abs(mx::subtract(got, want)), mx::multiply(bound, mx::array(1e-4f))));
    EXPECT_LE(excess.item<float>(), 1e-30f) << io::ggml_mode_name(type) << " rows " << rows;
  }
}

}  // namespace
}  // namespace lmlab::test
