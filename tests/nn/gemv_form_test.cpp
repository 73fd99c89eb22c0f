// nn::cuda::gemv_form (the 8-bit form in which the GPU GEMV reads 5-bit and
// raw K-quant weights) and io::ggml_affine_form beneath it: the repacked
// levels, scales and biases give the same weights as the original, bit for
// bit in float32 (the K-quants against ggml's scalar decoder,
// io::ggml_dequantize_row); the cache answers for the same buffers only. MLX
// ops: runs on the CPU, so CI checks what the GPU step will read. (The MLX
// decoder io::ggml_dequantize, which shares the field extraction, is held to
// ggml's bits, signed zeros included, by tests/io/ggml_quants_test.cpp.)

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/ggml.h"
#include "lmlab/io.h"
#include "nn/cuda/gemv_form.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using io::GgmlType;

// ggml's own decoding of the blocks (the scalar reference), float32 (N, K).
std::vector<float> reference(const mx::array& b, GgmlType type, int N, int K) {
  std::vector<float> out(static_cast<size_t>(N) * K);
  mx::array c = mx::contiguous(b);
  mx::eval(c);
  ggml_dequantize_row(type, c.data<uint8_t>(), out.data(), static_cast<int64_t>(N) * K);
  return out;
}

// The weights of an 8-bit form: level · scale + bias in float32, the level
// read as a byte of the packed words (MLX's 8-bit layout on a little-endian machine).
std::vector<float> weights_of(const nn::QuantizedLinear& f) {
  EXPECT_EQ(f.bits, 8);
  EXPECT_EQ(f.w.dtype(), mx::uint32);
  const int N = f.w.shape(0), K = f.w.shape(1) * 4;
  mx::array levels = mx::contiguous(mx::view(f.w, mx::uint8));
  mx::array s = mx::astype(f.scales, mx::float32), b = mx::astype(f.biases, mx::float32);
  mx::eval(levels, s, b);
  std::vector<float> out(static_cast<size_t>(N) * K);
  const int groups = K / f.group_size;
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) {
      const long g = static_cast<long>(n) * groups + k / f.group_size;
      out[static_cast<size_t>(n) * K + k] =
          static_cast<float>(levels.data<uint8_t>()[static_cast<size_t>(n) * K + k]) * s.data<float>()[g] +
          b.data<float>()[g];
    }
  return out;
}

// An evaluated affine QuantizedLinear of N × K normal weights.
nn::QuantizedLinear quantized(int N, int K, int group_size, int bits, uint64_t seed) {
  auto q = mx::quantize(mx::random::normal({N, K}, mx::float32, mx::random::key(seed)), group_size, bits);
  mx::eval(q);
  return nn::QuantizedLinear{q[0], q[1], q[2], std::nullopt, group_size, bits};
}

nn::QuantizedLinear raw(const mx::array& b, GgmlType type) {
  return nn::QuantizedLinear{b, b, b, std::nullopt, 0, io::ggml_field_bits(type), "", static_cast<int>(type)};
}

// Elements whose values differ (as floats: ggml's decoder gives −0.0 where a
// zero level meets a negative scale, the affine form +0.0).
size_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = a.size() == b.size() ? 0 : std::max(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += !(a[i] == b[i]);
  return n;
}

class GemvFormKQuant : public ::testing::TestWithParam<GgmlType> {};

TEST_P(GemvFormKQuant, AffineFormAndEightBitFormGiveGgmlsWeights) {
  const GgmlType type = GetParam();
  const int N = 5, K = 512;
  mx::array b = nn_util::random_ggml_blocks(type, N, K, 7 + static_cast<uint32_t>(type), 1e-4f, 1.0f, /*edges=*/true);
  const std::vector<float> want = reference(b, type, N, K);

  io::GgmlAffine a = io::ggml_affine_form(b, type);
  ASSERT_EQ(a.levels.shape(), (mx::Shape{N, K}));
  ASSERT_EQ(a.scales.shape(), (mx::Shape{N, K / 16}));
  ASSERT_EQ(a.levels.dtype(), mx::uint8);
  const int qmax = (1 << io::ggml_field_bits(type)) - 1;
  EXPECT_EQ(mx::max(a.levels).item<uint8_t>(), qmax);
  EXPECT_EQ(mx::min(a.levels).item<uint8_t>(), 0);

  auto f = nn::cuda::gemv_form(raw(b, type), mx::float32);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->group_size, 16);
  EXPECT_EQ(f->ggml_type, -1);
  EXPECT_EQ(f->scales.dtype(), mx::float32);
  EXPECT_EQ(f->w.shape(), (mx::Shape{N, K / 4}));
  EXPECT_EQ(differing(weights_of(*f), want), 0u) << io::ggml_mode_name(type);

  // In a half compute dtype the sub-block scales and biases are rounded to it.
  auto h = nn::cuda::gemv_form(raw(b, type), mx::bfloat16);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->scales.dtype(), mx::bfloat16);
  EXPECT_TRUE(mx::array_equal(h->scales, mx::astype(f->scales, mx::bfloat16)).item<bool>());
  EXPECT_TRUE(mx::array_equal(h->w, f->w).item<bool>());
}

INSTANTIATE_TEST_SUITE_P(Types, GemvFormKQuant, ::testing::Values(GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q6_K),
                         [](const auto& info) { return io::ggml_mode_name(info.param); });

TEST(GemvForm, OtherAffineWidthsBecomeEightBitLevelsExactly) {
  for (int bits : {2, 3, 5, 6})
    for (int gs : {32, 64, 128}) {
      const nn::QuantizedLinear p = quantized(6, 256, gs, bits, 3);
      auto f = nn::cuda::gemv_form(p, mx::float32);
      ASSERT_TRUE(f) << bits << "-bit, group " << gs;
      EXPECT_EQ(f->group_size, gs);
      EXPECT_EQ(f->scales.id(), p.scales.id());  // the same scales and biases, not copies
      mx::array want = mx::dequantize(p.w, p.scales, p.biases, gs, bits);
      mx::array got = mx::dequantize(f->w, f->scales, f->biases, gs, 8);
      EXPECT_TRUE(mx::array_equal(got, want).item<bool>()) << bits << "-bit, group " << gs;
      // weights_of forms s·q + b unfused: so does MLX's CPU dequantize (a GPU's may fuse it).
      mx::array want_cpu = mx::dequantize(p.w, p.scales, p.biases, gs, bits, "affine", std::nullopt, std::nullopt,
                                          mx::Device::cpu);
      mx::eval(want_cpu);
      EXPECT_EQ(differing(weights_of(*f), std::vector<float>(want_cpu.data<float>(), want_cpu.data<float>() + want_cpu.size())),
                0u);
    }
}

TEST(GemvForm, NativeFormatsPassThroughAndOthersAreDeclined) {
  const nn::QuantizedLinear p = quantized(4, 128, 64, 4, 4);
  auto f = nn::cuda::gemv_form(p, mx::float16);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->w.id(), p.w.id());
  EXPECT_EQ(f->bits, 4);
  // IQ4_NL's codebook is not linear in its index: no exact 8-bit form.
  mx::array iq = mx::zeros({4, 128 / 32 * 18}, mx::uint8);
  EXPECT_FALSE(nn::cuda::gemv_form(raw(iq, GgmlType::IQ4_NL), mx::float16));
  EXPECT_THROW(io::ggml_affine_form(iq, GgmlType::IQ4_NL), std::invalid_argument);
  // Weights not evaluated yet (a lazily loaded file): evaluated, then repacked.
  auto q5 = mx::quantize(mx::random::normal({4, 128}, mx::float32, mx::random::key(4)), 32, 5);
  nn::QuantizedLinear lazy{mx::add(q5[0], mx::array(0u)), q5[1], q5[2], std::nullopt, 32, 5};
  auto repacked = nn::cuda::gemv_form(lazy, mx::float32);
  ASSERT_TRUE(repacked);
  EXPECT_TRUE(lazy.w.is_available());
  EXPECT_TRUE(mx::array_equal(mx::dequantize(repacked->w, repacked->scales, repacked->biases, 32, 8),
                              mx::dequantize(lazy.w, lazy.scales, lazy.biases, 32, 5))
                  .item<bool>());
}

TEST(GemvForm, RepacksOncePerBufferAndAgainWhenABufferChanges) {
  const nn::QuantizedLinear p = quantized(8, 128, 32, 5, 5);
  auto a = nn::cuda::gemv_form(p, mx::float32);
  auto b = nn::cuda::gemv_form(p, mx::float32);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->w.id(), b->w.id());  // the cached form
  // Surgery that replaces the weights (same shapes, new buffer): repacked again.
  nn::QuantizedLinear edited = p;
  edited.w = mx::bitwise_xor(p.w, mx::array(0x1u));
  mx::eval(edited.w);
  auto c = nn::cuda::gemv_form(edited, mx::float32);
  ASSERT_TRUE(c);
  EXPECT_NE(c->w.id(), a->w.id());
  EXPECT_TRUE(mx::array_equal(mx::dequantize(c->w, c->scales, c->biases, 32, 8),
                              mx::dequantize(edited.w, edited.scales, edited.biases, 32, 5))
                  .item<bool>());
  // The additive bias is the caller's, never a cached one.
  nn::QuantizedLinear with_bias = p;
  with_bias.bias = mx::ones({8});
  auto d = nn::cuda::gemv_form(with_bias, mx::float32);
  ASSERT_TRUE(d && d->bias);
  EXPECT_EQ(d->bias->id(), with_bias.bias->id());
}

}  // namespace
}  // namespace lmlab::test
