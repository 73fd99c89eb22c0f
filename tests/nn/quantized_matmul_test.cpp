// nn::quantized_matmul (lmlab's CPU kernel) against mx::quantized_matmul (MLX's
// scalar CPU path) as the oracle: bits × group size × rows × batch shapes,
// float16/bfloat16/float32 scales, strided x, gradients, and the fallbacks.
#include <cmath>
#include <cstring>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "nn/cpu/quantized_matmul.h"
#include "nn/cpu/quantized_matmul_kernels.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

using Quantized = nn_util::QuantizedWeights;
constexpr auto make_weights = nn_util::quantized_weights;

// |got - want| ≤ tol · (|x| @ (|s·q| + |b|)ᵀ): float32 rounding of the sums,
// measured against the magnitude of what is summed.
void expect_close(const mx::array& got, const mx::array& want, const mx::array& x, const Quantized& q,
                  int group_size, int bits, float tol = 2e-5f) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.dtype(), mx::float32);
  auto sq = mx::dequantize(q.w, mx::abs(q.scales), mx::zeros_like(q.biases), group_size, bits,
                           "affine", std::nullopt, mx::float32);
  auto babs = mx::repeat(mx::abs(mx::astype(q.biases, mx::float32)), group_size, 1);
  auto bound = mx::matmul(mx::abs(x), mx::transpose(mx::add(sq, babs)));
  auto excess = mx::max(mx::subtract(mx::abs(mx::subtract(got, want)), mx::multiply(bound, mx::array(tol))));
  EXPECT_LE(excess.item<float>(), 1e-30f);
}

using Case = std::tuple<int, int, int>;  // bits, group size, rows
class QuantizedMatmulCase : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizedMatmulCase, MatchesMlx) {
  const auto [bits, group_size, rows] = GetParam();
  const int N = 44, K = 384;  // N not a multiple of the 16-row panels or 4-row blocks
  for (auto scale_dtype : {mx::float16, mx::float32}) {
    auto q = make_weights(N, K, group_size, bits, scale_dtype, 7 + bits + group_size);
    auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows));
    ASSERT_TRUE(nn::quantized_matmul_is_native(x, q.w, q.scales, q.biases, group_size, bits));
    auto got = nn::quantized_matmul(x, q.w, q.scales, q.biases, group_size, bits);
    auto want = mx::quantized_matmul(x, q.w, q.scales, q.biases, /*transpose=*/true, group_size, bits);
    expect_close(got, want, x, q, group_size, bits);
  }
}

INSTANTIATE_TEST_SUITE_P(All, QuantizedMatmulCase,
                         ::testing::Combine(::testing::Values(4, 5, 8), ::testing::Values(32, 64, 128),
                                            ::testing::Values(1, 3, 17, 64)),
                         [](const auto& info) {
                           return "b" + std::to_string(std::get<0>(info.param)) + "_g" +
                                  std::to_string(std::get<1>(info.param)) + "_m" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(QuantizedMatmul, BatchShapesAndLongK) {
  // Leading batch dims flatten to rows; K = 1536 spans several 256-wide panels.
  const int N = 37, K = 1536;
  for (int bits : {4, 8}) {
    auto q = make_weights(N, K, 32, bits, mx::float16, 3);
    for (mx::Shape shape : {mx::Shape{K}, mx::Shape{1, 1, K}, mx::Shape{3, 5, K}, mx::Shape{2, 3, 1, K},
                            mx::Shape{7, 1, K}}) {
      auto x = mx::random::normal(shape, mx::float32, mx::random::key(shape.size()));
      auto got = nn::quantized_matmul(x, q.w, q.scales, q.biases, 32, bits);
      auto want = mx::quantized_matmul(x, q.w, q.scales, q.biases, true, 32, bits);
      auto x2 = mx::reshape(x, {-1, K});
      expect_close(mx::reshape(got, {-1, N}), mx::reshape(want, {-1, N}), x2, q, 32, bits);
      EXPECT_EQ(got.shape(), want.shape());
    }
  }
}

TEST(QuantizedMatmul, BFloat16Scales) {
  auto q = make_weights(24, 256, 64, 4, mx::bfloat16, 5);
  auto x = mx::random::normal({5, 256}, mx::float32, mx::random::key(9));
  auto got = nn::quantized_matmul(x, q.w, q.scales, q.biases, 64, 4);
  auto want = mx::quantized_matmul(x, q.w, q.scales, q.biases, true, 64, 4);
  expect_close(got, want, x, q, 64, 4);
}

TEST(QuantizedMatmul, StridedInputs) {
  const int N = 40, K = 128;
  auto q = make_weights(N, K, 32, 4, mx::float16, 11);
  for (int rows : {1, 9}) {
    // A transposed view: x[i, k] = xt[k, i].
    auto xt = mx::random::normal({K, rows}, mx::float32, mx::random::key(rows));
    auto x = mx::transpose(xt);
    auto got = nn::quantized_matmul(x, q.w, q.scales, q.biases, 32, 4);
    auto want = mx::quantized_matmul(mx::contiguous(x), q.w, q.scales, q.biases, true, 32, 4);
    expect_close(got, want, x, q, 32, 4);
    // A broadcast row and a sliced (offset, strided) batch.
    auto xb = mx::broadcast_to(mx::random::normal({1, K}, mx::float32, mx::random::key(2)), {rows, K});
    expect_close(nn::quantized_matmul(xb, q.w, q.scales, q.biases, 32, 4),
                 mx::quantized_matmul(mx::contiguous(xb), q.w, q.scales, q.biases, true, 32, 4), xb, q, 32, 4);
    auto big = mx::random::normal({2 * rows, K + 32}, mx::float32, mx::random::key(4));
    auto xs = mx::slice(big, {1, 16}, {2 * rows, K + 16}, {2, 1});
    expect_close(nn::quantized_matmul(xs, q.w, q.scales, q.biases, 32, 4),
                 mx::quantized_matmul(mx::contiguous(xs), q.w, q.scales, q.biases, true, 32, 4), xs, q, 32, 4);
  }
  // Strided scales and biases (columns of a wider array).
  auto wide = mx::concatenate({q.scales, q.scales}, 1);
  auto sv = mx::slice(wide, {0, 0}, {N, 2 * (K / 32)}, {1, 2});
  auto x = mx::random::normal({3, K}, mx::float32, mx::random::key(8));
  expect_close(nn::quantized_matmul(x, q.w, sv, q.biases, 32, 4),
               mx::quantized_matmul(x, q.w, mx::contiguous(sv), q.biases, true, 32, 4), x,
               {q.w, mx::contiguous(sv), q.biases}, 32, 4);
}

TEST(QuantizedMatmul, GradientWithRespectToX) {
  const int N = 48, K = 256;
  auto q = make_weights(N, K, 64, 4, mx::float32, 13);
  auto x = mx::random::normal({2, 3, K}, mx::float32, mx::random::key(1));
  auto ct = mx::random::normal({2, 3, N}, mx::float32, mx::random::key(2));
  auto ours = [&](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{nn::quantized_matmul(in[0], q.w, q.scales, q.biases, 64, 4)};
  };
  auto theirs = [&](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{mx::quantized_matmul(in[0], q.w, q.scales, q.biases, true, 64, 4)};
  };
  auto [out1, g1] = mx::vjp(ours, {x}, {ct});
  auto [out2, g2] = mx::vjp(theirs, {x}, {ct});
  EXPECT_TRUE(mx::allclose(g1[0], g2[0], 1e-5, 1e-5).item<bool>());
  auto [jo1, jt1] = mx::jvp(ours, {x}, {x});
  auto [jo2, jt2] = mx::jvp(theirs, {x}, {x});
  EXPECT_TRUE(mx::allclose(jt1[0], jt2[0], 1e-4, 1e-4).item<bool>());
  // d/dx sum(x Wᵀ) through mx::grad as a model loss would.
  auto loss = [&](const mx::array& in) { return mx::sum(nn::quantized_matmul(in, q.w, q.scales, q.biases, 64, 4)); };
  auto loss_ref = [&](const mx::array& in) {
    return mx::sum(mx::quantized_matmul(in, q.w, q.scales, q.biases, true, 64, 4));
  };
  EXPECT_TRUE(mx::allclose(mx::grad(loss)(x), mx::grad(loss_ref)(x), 1e-5, 1e-5).item<bool>());
}

TEST(QuantizedMatmul, FallsBackToMlx) {
  const int N = 16, K = 128;
  auto dense = mx::random::normal({N, K}, mx::float32, mx::random::key(3));
  auto x = mx::random::normal({2, K}, mx::float32, mx::random::key(4));
  // 3-bit and float16 activations go to mx::quantized_matmul and still agree.
  auto q3 = mx::quantize(dense, 32, 3);
  EXPECT_FALSE(nn::quantized_matmul_is_native(x, q3[0], q3[1], q3[2], 32, 3));
  EXPECT_TRUE(mx::array_equal(nn::quantized_matmul(x, q3[0], q3[1], q3[2], 32, 3),
                              mx::quantized_matmul(x, q3[0], q3[1], q3[2], true, 32, 3))
                  .item<bool>());
  // Int8 activations are lmlab's kernel's at every bit width it takes.
  EXPECT_TRUE(nn::cpu::native_activations(5, "q8_0"));
  EXPECT_FALSE(nn::cpu::native_activations(5, "q4"));
  auto q4 = mx::quantize(dense, 32, 4);
  q4[1] = mx::astype(q4[1], mx::float16);
  q4[2] = mx::astype(q4[2], mx::float16);
  auto xh = mx::astype(x, mx::float16);
  EXPECT_FALSE(nn::quantized_matmul_is_native(xh, q4[0], q4[1], q4[2], 32, 4));
  EXPECT_EQ(nn::quantized_matmul(xh, q4[0], q4[1], q4[2], 32, 4).dtype(), mx::float16);
  EXPECT_FALSE(nn::quantized_matmul_is_native(x, q4[0], q4[1], q4[2], 32, 4, "affine", mx::Device::gpu));
}

// llama.cpp's activation rounding and integer dot products, written here from
// its definition, independently of the kernels: per block of 32, d = max|x|/127
// kept as fp16, q = round-half-even(x · 127/max|x|), s = d·Σq (q8_1: from the
// unrounded d, rounded to fp16); y = Σ_blocks scale·d·Σ q_w·q + bias·s, where
// 8-bit fields count as signed (q_w - 128, with 128·scale added to the bias:
// the same y, but s's fp16 rounding then meets only the stored bias).
struct Int8Reference {
  std::vector<double> y, bound;  // bound: Σ of |terms|, for the rounding tolerance
};

Int8Reference int8_reference(const mx::array& x, const Quantized& qw, int group_size, int bits, bool q8_1) {
  const int M = x.shape(0), K = x.shape(1), N = qw.w.shape(0), B = K / 32;
  auto fields = mx::dequantize(qw.w, mx::ones({N, K / group_size}), mx::zeros({N, K / group_size}), group_size,
                               bits, "affine", std::nullopt, mx::float32);
  auto sc = mx::astype(qw.scales, mx::float32), bi = mx::astype(qw.biases, mx::float32);
  auto xf = mx::contiguous(x);
  mx::eval(fields, sc, bi, xf);
  const float *xp = xf.data<float>(), *fp = fields.data<float>();
  std::vector<int> q(static_cast<size_t>(M) * K);
  std::vector<double> d(static_cast<size_t>(M) * B), s(static_cast<size_t>(M) * B);
  for (int m = 0; m < M; ++m)
    for (int b = 0; b < B; ++b) {
      const float* xb = xp + m * K + 32 * b;
      float amax = 0;
      for (int k = 0; k < 32; ++k) amax = std::max(amax, std::abs(xb[k]));
      const float dd = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
      int sum = 0;
      for (int k = 0; k < 32; ++k) sum += q[m * K + 32 * b + k] = static_cast<int>(std::nearbyint(xb[k] * id));
      d[m * B + b] = static_cast<float>(mx::float16_t(dd));
      s[m * B + b] = q8_1 ? static_cast<double>(static_cast<float>(mx::float16_t(dd * static_cast<float>(sum))))
                          : d[m * B + b] * sum;
    }
  Int8Reference r{std::vector<double>(static_cast<size_t>(M) * N), std::vector<double>(static_cast<size_t>(M) * N)};
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n)
      for (int b = 0; b < B; ++b) {
        const int g = b * 32 / group_size;
        long dot = 0, adot = 0;
        for (int k = 32 * b; k < 32 * (b + 1); ++k) {
          const long t = (static_cast<long>(fp[static_cast<long>(n) * K + k]) - (bits == 8 ? 128 : 0)) * q[m * K + k];
          dot += t;
          adot += std::labs(t);
        }
        const double scale = sc.data<float>()[n * (K / group_size) + g];
        const double bias = bi.data<float>()[n * (K / group_size) + g] + (bits == 8 ? 128 * scale : 0.0);
        r.y[m * N + n] += scale * d[m * B + b] * dot + bias * s[m * B + b];
        r.bound[m * N + n] += std::abs(scale * d[m * B + b]) * adot + std::abs(bias * s[m * B + b]);
      }
  return r;
}

void expect_int8_close(const std::vector<float>& got, const Int8Reference& want, const std::string& label) {
  ASSERT_EQ(got.size(), want.y.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - want.y[i]) / std::max(want.bound[i], 1e-30));
  EXPECT_LT(worst, 4e-6) << label;
}

TEST(QuantizedMatmul, Int8ActivationsMatchTheirDefinition) {
  // Both kernel sets (the best one through nn::quantized_matmul, and the scalar
  // one) against int8_reference: bits × group size × rows × act; K = 13 and 67
  // groups (an odd block count, and more groups than one parameter chunk).
  for (int bits : {4, 5, 8})
    for (int gs : {32, 64, 128})
      for (int groups : {13, 67})
        for (int rows : {1, 3, 17})
          for (bool q8_1 : {false, true}) {
            const int N = 20, K = gs * groups;
            auto q = make_weights(N, K, gs, bits, mx::float16, bits * 1000 + gs + groups);
            auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows + groups));
            const std::string act = q8_1 ? "q8_1" : "q8_0";
            const auto label = fmt::format("bits {} gs {} K {} rows {} {}", bits, gs, K, rows, act);
            auto want = int8_reference(x, q, gs, bits, q8_1);
            auto got = nn::quantized_matmul(x, q.w, q.scales, q.biases, gs, bits, "affine", act);
            mx::eval(got);
            expect_int8_close(std::vector<float>(got.data<float>(), got.data<float>() + got.size()), want,
                              label + " (best kernels)");

            const auto& k = nn::cpu::scalar_qmm_kernels();
            nn::cpu::QmmProblem p{.x = x.data<float>(), .w = q.w.data<uint32_t>(), .scales = q.scales.data<void>(),
                                     .biases = q.biases.data<void>(), .scale_type = nn::cpu::ScaleType::f16,
                                     .out = nullptr, .M = rows, .N = N, .K = K, .group_size = gs, .bits = bits,
                                     .act = q8_1 ? nn::cpu::ActQuant::q8_1 : nn::cpu::ActQuant::q8_0};
            std::vector<int8_t> xq(static_cast<size_t>(rows) * K);
            std::vector<float> xd(static_cast<size_t>(rows) * K / 32), xs(static_cast<size_t>(rows) * groups);
            std::vector<float> out(static_cast<size_t>(rows) * N);
            p.out = out.data();
            k.prepare_q8(p, xq.data(), xd.data(), xs.data());
            k.gemv_q8(p, xq.data(), xd.data(), xs.data(), 0, N);
            expect_int8_close(out, want, label + " (scalar kernels)");
          }
}

// The VNNI set is the AVX2 set compiled again with vpdpbusd for the int8
// block sums: the same bits for every width, group size, scale type, row count
// and activation rounding (the float GEMV and prefill GEMM too: same source).
TEST(QuantizedMatmul, VnniKernelsGiveTheAvx2Bits) {
  const nn::cpu::QmmKernels* avx2 = nn::cpu::avx2_qmm_kernels();
  const nn::cpu::QmmKernels* vnni = nn::cpu::vnni_qmm_kernels();
  if (!avx2 || !vnni || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("avx512f") ||
      !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
      !__builtin_cpu_supports("avx512vnni"))
    GTEST_SKIP() << "this CPU or build has no AVX-512 VNNI kernel set";
  int cases = 0;
  for (int bits : {4, 5, 8})
    for (auto dtype : {mx::float16, mx::bfloat16, mx::float32})
      for (int gs : {32, 64, 128})
        for (int rows : {1, 3, 9}) {
          const int N = 12, K = gs * 5;
          auto q = make_weights(N, K, gs, bits, dtype, 11 * bits + gs + rows);
          auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(bits + rows));
          mx::eval({q.w, q.scales, q.biases, x});
          for (auto act : {nn::cpu::ActQuant::none, nn::cpu::ActQuant::q8_0, nn::cpu::ActQuant::q8_1}) {
            nn::cpu::QmmProblem p{.x = x.data<float>(), .w = q.w.data<uint32_t>(), .scales = q.scales.data<void>(),
                                  .biases = q.biases.data<void>(), .scale_type = nn::cpu::scale_type(dtype),
                                  .out = nullptr, .M = rows, .N = N, .K = K, .group_size = gs, .bits = bits,
                                  .act = act};
            auto run = [&](const nn::cpu::QmmKernels& k) {
              std::vector<float> out(static_cast<size_t>(rows) * N);
              p.out = out.data();
              if (act != nn::cpu::ActQuant::none) {
                std::vector<int8_t> xq(static_cast<size_t>(rows) * K);
                std::vector<float> xd(static_cast<size_t>(rows) * K / 32), xs(static_cast<size_t>(rows) * K / gs);
                k.prepare_q8(p, xq.data(), xd.data(), xs.data());
                k.gemv_q8(p, xq.data(), xd.data(), xs.data(), 0, N);
              } else if (rows > 4) {
                k.gemm(p, 0, N);
              } else {
                std::vector<float> xp(static_cast<size_t>(rows) * K), xs(static_cast<size_t>(rows) * K / gs);
                k.prepare_gemv(p, xp.data(), xs.data());
                k.gemv(p, xp.data(), xs.data(), 0, N);
              }
              return out;
            };
            const auto want = run(*avx2), got = run(*vnni);
            EXPECT_EQ(got, want) << fmt::format("bits {} dtype {} gs {} rows {} act {}", bits,
                                                static_cast<int>(dtype.val()), gs, rows, static_cast<int>(act));
            ++cases;
          }
        }
  EXPECT_EQ(cases, 243);
}

TEST(QuantizedMatmul, Int8ActivationsStayCloseToFloat) {
  // The rounding moves results by about 1/127 of each block's largest |x|.
  const int N = 64, K = 576;
  auto q = make_weights(N, K, 32, 4, mx::float16, 17);
  auto x = mx::random::normal({4, K}, mx::float32, mx::random::key(3));
  auto exact = nn::quantized_matmul(x, q.w, q.scales, q.biases, 32, 4);
  auto rounded = nn::quantized_matmul(x, q.w, q.scales, q.biases, 32, 4, "affine", "q8_1");
  auto rel = mx::divide(mx::max(mx::abs(mx::subtract(exact, rounded))), mx::max(mx::abs(exact)));
  EXPECT_LT(rel.item<float>(), 0.02f);
  EXPECT_GT(rel.item<float>(), 0.0f);  // and it does round
  EXPECT_THROW(nn::quantized_matmul(x, q.w, q.scales, q.biases, 32, 4, "affine", "q4"), std::invalid_argument);
}

TEST(QuantizedMatmul, ConcurrentCallers) {
  // Plain threads calling the kernel at once share its thread pool; each result
  // must equal MLX's. (MLX graphs are built and evaluated on this thread only.)
  const int N = 512, K = 512, M = 2;
  auto q = make_weights(N, K, 32, 4, mx::float16, 21);
  auto x = mx::random::normal({M, K}, mx::float32, mx::random::key(6));
  auto want = mx::quantized_matmul(x, q.w, q.scales, q.biases, true, 32, 4);
  mx::eval({q.w, q.scales, q.biases, x, want});
  std::vector<std::vector<float>> outs(4, std::vector<float>(M * N));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      nn::cpu::QmmProblem p{.x = x.data<float>(), .w = q.w.data<uint32_t>(), .scales = q.scales.data<void>(),
                               .biases = q.biases.data<void>(), .scale_type = nn::cpu::ScaleType::f16,
                               .out = outs[t].data(), .M = M, .N = N, .K = K, .group_size = 32, .bits = 4};
      for (int i = 0; i < 50; ++i) nn::cpu::run_qmm(p);
    });
  for (auto& th : threads) th.join();
  for (auto& o : outs) expect_close(mx::array(o.begin(), {M, N}), want, x, q, 32, 4);
}

}  // namespace
}  // namespace lmlab::test

namespace lmlab::test {
namespace {

// run_qmm_many (one pool pass over several matmuls, as the fused decoder step
// runs q/k/v) gives each problem exactly what run_qmm gives it alone: mixed
// sizes (one below the parallel threshold), bits, rows, int8 activations, an
// empty problem.
TEST(QuantizedMatmul, SeveralProblemsInOnePassEqualEachAlone) {
  struct Case {
    int M, N, K, bits;
    nn::cpu::ActQuant act;
  };
  const std::vector<Case> cases = {{1, 576, 576, 4, nn::cpu::ActQuant::none}, {1, 192, 576, 4, nn::cpu::ActQuant::none},
                                   {3, 1536, 576, 8, nn::cpu::ActQuant::q8_1}, {1, 8, 64, 4, nn::cpu::ActQuant::none},
                                   {0, 64, 64, 4, nn::cpu::ActQuant::none},     {2, 300, 128, 4, nn::cpu::ActQuant::q8_0}};
  std::vector<Quantized> weights;
  std::vector<mx::array> xs;
  for (size_t i = 0; i < cases.size(); ++i) {
    weights.push_back(make_weights(cases[i].N, cases[i].K, 32, cases[i].bits, mx::float16, 100 + i));
    xs.push_back(mx::random::normal({cases[i].M, cases[i].K}, mx::float32, mx::random::key(200 + i)));
    mx::eval({weights.back().w, weights.back().scales, weights.back().biases, xs.back()});
  }
  std::vector<std::vector<float>> together(cases.size()), alone(cases.size());
  std::vector<nn::cpu::QmmProblem> problems;
  for (size_t i = 0; i < cases.size(); ++i) {
    together[i].assign(static_cast<size_t>(cases[i].M) * cases[i].N, -1.0f);
    alone[i].assign(together[i].size(), -2.0f);
    problems.push_back({.x = xs[i].data<float>(), .w = weights[i].w.data<uint32_t>(),
                        .scales = weights[i].scales.data<void>(), .biases = weights[i].biases.data<void>(),
                        .scale_type = nn::cpu::ScaleType::f16, .out = together[i].data(), .M = cases[i].M,
                        .N = cases[i].N, .K = cases[i].K, .group_size = 32, .bits = cases[i].bits, .act = cases[i].act});
  }
  nn::cpu::run_qmm_many(problems.data(), static_cast<int>(problems.size()));
  for (size_t i = 0; i < cases.size(); ++i) {
    nn::cpu::QmmProblem p = problems[i];
    p.out = alone[i].data();
    nn::cpu::run_qmm(p);
    EXPECT_EQ(together[i], alone[i]) << "problem " << i;
  }
}

// Weights whose every bias is −2^(bits−1)·scale (GGUF's Q4_0, Q5_0 and Q8_0
// after repacking) are detected, and the AVX2 kernels then take the bias terms
// from the scales: the same bits as reading the biases, without reading them
// (poisoned with NaN below), for float and int8 activations, the GEMV, the
// int8 tile of several rows and the prefill GEMM, every scale type.
TEST(QuantizedMatmul, SymmetricWeightsGiveTheSameBitsWithoutTheBiases) {
  LMLAB_SKIP_OFF_CPU();
  const bool avx2 = nn::cpu::avx2_qmm_kernels() != nullptr && __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  for (int bits : {4, 5, 8})
    for (auto dtype : {mx::float16, mx::bfloat16, mx::float32})
      for (int gs : {32, 64}) {
        const int N = 24, K = 8 * gs;
        auto q = make_weights(N, K, gs, bits, dtype, 7 * bits + gs);
        auto sym = mx::multiply(q.scales, mx::array(-static_cast<float>(1 << (bits - 1)), dtype));
        auto poison = mx::full(q.biases.shape(), std::nanf(""), dtype);
        // One bias off by one scale step: no longer symmetric.
        auto first = mx::reshape(mx::equal(mx::arange(static_cast<int>(sym.size())), mx::array(5)), sym.shape());
        auto nudged = mx::where(first, mx::add(sym, q.scales), sym);
        mx::eval({q.w, q.scales, q.biases, sym, poison, nudged});
        EXPECT_TRUE(nn::cpu::symmetric_biases(q.scales, sym, bits, q.scales.data_shared_ptr(), sym.data_shared_ptr()));
        EXPECT_FALSE(nn::cpu::symmetric_biases(q.scales, q.biases, bits, q.scales.data_shared_ptr(),
                                               q.biases.data_shared_ptr()));
        EXPECT_FALSE(nn::cpu::symmetric_biases(q.scales, nudged, bits, q.scales.data_shared_ptr(),
                                               nudged.data_shared_ptr()));
        for (int rows : {1, 3, 9})
          for (auto act : {nn::cpu::ActQuant::none, nn::cpu::ActQuant::q8_0}) {
            const auto label = fmt::format("bits {} {} gs {} rows {} act {}", bits, static_cast<int>(dtype.val()), gs,
                                           rows, static_cast<int>(act));
            auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows + bits));
            mx::eval(x);
            std::vector<float> read(static_cast<size_t>(rows) * N), skipped(read.size());
            nn::cpu::QmmProblem p{.x = x.data<float>(), .w = q.w.data<uint32_t>(), .scales = q.scales.data<void>(),
                                  .biases = sym.data<void>(), .scale_type = nn::cpu::scale_type(dtype),
                                  .out = read.data(), .M = rows, .N = N, .K = K, .group_size = gs, .bits = bits,
                                  .act = act};
            nn::cpu::run_qmm(p);
            p.symmetric = true;
            p.out = skipped.data();
            if (avx2) p.biases = poison.data<void>();
            nn::cpu::run_qmm(p);
            EXPECT_EQ(read, skipped) << label;
            // And through nn::quantized_matmul, which finds the symmetry itself.
            auto got = nn::quantized_matmul(x, q.w, q.scales, sym, gs, bits, "affine",
                                            act == nn::cpu::ActQuant::none ? "" : "q8_0");
            mx::eval(got);
            EXPECT_EQ(std::vector<float>(got.data<float>(), got.data<float>() + got.size()), read) << label;
          }
      }
  {
    // A buffer freed and its memory reused for other biases (a new array at
    // the same address) is scanned again, not answered from memory.
    auto half_bits = [](float f) {
      const mx::float16_t h(f);
      uint16_t u;
      std::memcpy(&u, &h, 2);
      return u;
    };
    std::vector<uint16_t> scale_bits(64), bias_bits(64);
    for (int i = 0; i < 64; ++i) {
      scale_bits[i] = half_bits(0.01f * (i + 1));
      bias_bits[i] = half_bits(-8.0f * static_cast<float>(mx::float16_t(0.01f * (i + 1))));
    }
    auto sc = mx::array(scale_bits.begin(), {4, 16}, mx::uint16);
    sc = mx::view(sc, mx::float16);
    mx::eval(sc);
    // One block of MLX's memory, wrapped twice: first the symmetric biases, then others.
    mx::allocator::Buffer block = mx::allocator::allocator().malloc(bias_bits.size() * 2);
    std::memcpy(block.raw_ptr(), bias_bits.data(), bias_bits.size() * 2);
    {
      mx::array bi(mx::allocator::Data(block, [](mx::allocator::Buffer) {}), {4, 16}, mx::float16);
      EXPECT_TRUE(nn::cpu::symmetric_biases(sc, bi, 4, sc.data_shared_ptr(), bi.data_shared_ptr()));
    }
    bias_bits[17] = half_bits(0.5f);
    std::memcpy(block.raw_ptr(), bias_bits.data(), bias_bits.size() * 2);
    mx::array other(mx::allocator::Data(block, [](mx::allocator::Buffer b) { mx::allocator::allocator().free(b); }),
                    {4, 16}, mx::float16);
    EXPECT_FALSE(nn::cpu::symmetric_biases(sc, other, 4, sc.data_shared_ptr(), other.data_shared_ptr()));
  }

  // Scales at the edges of the half range: zero, subnormal, and one whose
  // bias overflows to −inf (not symmetric: −128·512 is finite).
  for (auto dtype : {mx::float16, mx::bfloat16}) {
    const std::vector<float> edge{0.0f, 1.0f / (1 << 20), 1.0f / (1 << 24), 0.75f, -3.0f};
    auto sc = mx::astype(mx::array(edge.begin(), {1, 5}), dtype);
    auto bi = mx::multiply(sc, mx::array(-128.0f, dtype));
    auto big = mx::astype(mx::array({512.0f, 1.0f}, {1, 2}), mx::float16);
    auto big_b = mx::astype(mx::array({-INFINITY, -128.0f}, {1, 2}), mx::float16);
    mx::eval({sc, bi, big, big_b});
    EXPECT_TRUE(nn::cpu::symmetric_biases(sc, bi, 8, sc.data_shared_ptr(), bi.data_shared_ptr()))
        << static_cast<int>(dtype.val());
    EXPECT_FALSE(nn::cpu::symmetric_biases(big, big_b, 8, big.data_shared_ptr(), big_b.data_shared_ptr()));
  }
}

// A prompt's rows through the int8 kernels (blocks of 4 rows of x against two
// weight rows, the fields formed once) give each row exactly what that row
// gives alone (the decode GEMV), symmetric weights included, every scale type.
TEST(QuantizedMatmul, Int8PromptRowsEqualEachRowAlone) {
  for (int bits : {4, 5, 8})
    for (auto dtype : {mx::float16, mx::float32})
      for (bool symmetric : {false, true})
        for (int rows : {2, 6, 9}) {
          const int N = 20, gs = 32, K = 7 * gs;
          auto q = make_weights(N, K, gs, bits, dtype, 31 * bits + rows);
          auto biases = symmetric ? mx::multiply(q.scales, mx::array(-static_cast<float>(1 << (bits - 1)), dtype))
                                  : q.biases;
          auto x = mx::random::normal({rows, K}, mx::float32, mx::random::key(rows * bits));
          mx::eval({q.w, q.scales, biases, x});
          std::vector<float> together(static_cast<size_t>(rows) * N), alone(together.size());
          nn::cpu::QmmProblem p{.x = x.data<float>(), .w = q.w.data<uint32_t>(), .scales = q.scales.data<void>(),
                                .biases = biases.data<void>(), .scale_type = nn::cpu::scale_type(dtype),
                                .out = together.data(), .M = rows, .N = N, .K = K, .group_size = gs, .bits = bits,
                                .act = nn::cpu::ActQuant::q8_0, .symmetric = symmetric};
          nn::cpu::run_qmm(p);
          for (int m = 0; m < rows; ++m) {
            nn::cpu::QmmProblem one = p;
            one.x = x.data<float>() + static_cast<long>(m) * K;
            one.out = alone.data() + static_cast<long>(m) * N;
            one.M = 1;
            nn::cpu::run_qmm(one);
          }
          EXPECT_EQ(together, alone) << fmt::format("bits {} dtype {} symmetric {} rows {}", bits,
                                                    static_cast<int>(dtype.val()), symmetric, rows);
        }
}

}  // namespace
}  // namespace lmlab::test
