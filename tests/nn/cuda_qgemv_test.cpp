// nn::quantized_matmul on a GPU stream: decode-sized products take lmlab's
// GEMV kernel (nn::cuda::qgemv), prompt-sized ones multiply the dequantized
// weights with MLX's GEMM; both against mx::quantized_matmul, MLX's own, on the
// same quantized weights (mx::quantize) and a float32 product of the
// dequantized weights, with the gradient with respect to x.
// Runs with LMLAB_TEST_DEVICE=gpu on a CUDA build (scripts/gpu-check.sh, whose
// fused-step filter *CudaStep* includes these); skips elsewhere.
#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "models/model_test_util.h"
#include "nn/cpu/quantized_matmul.h"
#include "nn/cuda/qgemv.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

struct GemvCase {
  int rows, K, N, bits, group;
  mx::Dtype dtype;
  bool gemv = true;  // lmlab's GEMV takes it (else MLX's quantized matmul or the dense GEMM)
};

// max |a - b| / max |b|.
float rel_diff(const mx::array& a, const mx::array& b) {
  auto f = [](const mx::array& x) { return mx::astype(x, mx::float32); };
  const float d = mx::max(mx::abs(mx::subtract(f(a), f(b)))).item<float>();
  return d / std::max(1e-6f, mx::max(mx::abs(f(b))).item<float>());
}

class CudaStepGemv : public ::testing::TestWithParam<GemvCase> {};

TEST_P(CudaStepGemv, MatchesMlxQuantizedMatmul) {
  (void)cpu_context();
  if (mx::default_device() != mx::Device::gpu) GTEST_SKIP() << "needs a GPU";
  const GemvCase c = GetParam();
  mx::random::seed(7);
  mx::array w = mx::astype(mx::random::normal({c.N, c.K}), c.dtype);
  auto q = mx::quantize(w, c.group, c.bits);
  mx::array x = mx::astype(mx::random::normal({1, c.rows, c.K}), c.dtype);
  mx::array ours = nn::quantized_matmul(x, q[0], q[1], q[2], c.group, c.bits);
  mx::array mlx = mx::quantized_matmul(x, q[0], q[1], q[2], true, c.group, c.bits);
  // The reference: the same dequantized weights times x in float32.
  mx::array dense = mx::dequantize(q[0], q[1], q[2], c.group, c.bits, "affine", std::nullopt, mx::float32);
  mx::array ref = mx::matmul(mx::astype(x, mx::float32), mx::transpose(dense));
  ASSERT_TRUE(ours.has_primitive());
  EXPECT_EQ(std::string(ours.primitive().name()) == "LmlabCudaQGemv", c.gemv) << c.rows << " rows";
  mx::eval({ours, mlx, ref});
  const float diff = rel_diff(ours, ref), diff_mlx = rel_diff(mlx, ref);
  // Sums in float32 rounded once to the 16-bit type: a unit or two in its last
  // place of the largest output (MLX's own is printed beside it).
  std::printf("[ cuda     ] gemv %d×%d→%d b%d g%d %s: max |diff| / max |y| vs float32 = %.3g (MLX's: %.3g)\n", c.rows,
              c.K, c.N, c.bits, c.group, c.dtype == mx::float16 ? "f16" : "bf16", diff, diff_mlx);
  EXPECT_LT(diff, c.dtype == mx::float16 ? 2e-3f : 1e-2f);

  // d/dx of sum(y · r) for a fixed r, through both.
  mx::array r = mx::astype(mx::random::normal(mlx.shape()), c.dtype);
  auto grad = [&](bool lmlab_path) {
    auto f = [&](const std::vector<mx::array>& in) {
      mx::array y = lmlab_path ? nn::quantized_matmul(in[0], q[0], q[1], q[2], c.group, c.bits)
                               : mx::quantized_matmul(in[0], q[0], q[1], q[2], true, c.group, c.bits);
      return std::vector<mx::array>{mx::sum(mx::astype(mx::multiply(y, r), mx::float32))};
    };
    return mx::vjp(f, {x}, {mx::array(1.0f)}).second.at(0);
  };
  EXPECT_LT(rel_diff(grad(true), grad(false)), c.dtype == mx::float16 ? 4e-3f : 2e-2f);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaStepGemv,
    ::testing::Values(GemvCase{1, 576, 49152, 4, 32, mx::float16},    // the default model's head
                      GemvCase{1, 4096, 4224, 4, 64, mx::bfloat16},   // an 8B-shaped projection, odd rows
                      GemvCase{3, 2048, 1000, 8, 128, mx::float16},   // odd output count
                      GemvCase{8, 1536, 512, 4, 128, mx::bfloat16},   // a launch's full 8 rows
                      GemvCase{1, 14336, 256, 4, 64, mx::float16},    // a down projection's K
                      GemvCase{4, 14336, 256, 4, 64, mx::float16},    // one launch of 4 rows
                      GemvCase{5, 14336, 256, 4, 64, mx::float16, false},   // two launches: MLX's
                      GemvCase{5, 14336, 256, 4, 64, mx::bfloat16, false},
                      GemvCase{5, 4096, 256, 4, 64, mx::float16},     // one launch of 8 rows
                      GemvCase{40, 1024, 768, 4, 64, mx::float16, false},    // prompt rows: dense GEMM
                      GemvCase{12, 512, 256, 8, 32, mx::bfloat16, false}));  // between: MLX's quantized matmul

}  // namespace
}  // namespace lmlab::test
