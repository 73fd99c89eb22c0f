// MLX's CPU float matmuls call cblas_sgemm; lmlab links OpenBLAS so that call
// resolves to it rather than to the wheel's bundled reference BLAS. Checks the
// resolution and the arithmetic against a plain double-precision loop.
#include <dlfcn.h>

#include <string>

#include <mlx/mlx.h>

#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

TEST(Blas, MlxSgemmResolvesToOpenblas) {
#ifndef LMLAB_OPENBLAS
  GTEST_SKIP() << "built without LMLAB_OPENBLAS";
#else
  void* sym = dlsym(RTLD_DEFAULT, "cblas_sgemm");
  ASSERT_NE(sym, nullptr);
  Dl_info info{};
  ASSERT_NE(dladdr(sym, &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("openblas"), std::string::npos) << info.dli_fname;
#endif
}

TEST(Blas, FloatMatmulMatchesAPlainLoop) {
  const int M = 37, K = 300, N = 51;
  auto a = mx::random::normal({M, K}, mx::float32, mx::random::key(1));
  auto b = mx::random::normal({K, N}, mx::float32, mx::random::key(2));
  auto c = mx::matmul(a, b, mx::Device::cpu);
  mx::eval(a, b, c);
  const float *pa = a.data<float>(), *pb = b.data<float>(), *pc = c.data<float>();
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double want = 0;
      for (int k = 0; k < K; ++k) want += static_cast<double>(pa[i * K + k]) * pb[k * N + j];
      ASSERT_NEAR(pc[i * N + j], want, 1e-4 * std::sqrt(K)) << i << "," << j;
    }
}

}  // namespace
}  // namespace lmlab::test
