// Helpers the fused-step tests share: tiny checkpoints in float32, and the
// skip for the CPU primitives' tests when the core checks run on a GPU
// (LMLAB_TEST_DEVICE=gpu).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"

namespace lmlab::test::nn_util {

// N rows of K values as valid raw blocks of `type` with random fields: d uniform
// in [d_lo, d_hi], dmin in [0, 1e-2], scales over the type's stored range
// (Q6_K int8, Q2_K 4-bit, else 6-bit), levels over theirs. With `edges`, each
// row's first block holds the fields' extremes instead (d 65504, scales
// alternating lowest/highest, levels 0, the highest and a ramp).
inline mlx::core::array random_ggml_blocks(io::GgmlType type, int N, int K, uint32_t seed, float d_lo = 1e-3f,
                                          float d_hi = 1e-2f, bool edges = false) {
  const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(type));
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(N) * K / b.elements * b.bytes);
  const std::vector<uint8_t> zero(b.bytes, 0);
  const int qmax = (1 << io::ggml_field_bits(type)) - 1;
  const int smin = type == io::GgmlType::Q6_K ? -128 : 0;
  const int smax = type == io::GgmlType::Q6_K ? 127 : type == io::GgmlType::Q2_K ? 15 : 63;
  const size_t row_bytes = bytes.size() / N;
  for (size_t off = 0; off < bytes.size(); off += b.bytes) {
    io::GgmlBlockFields f = io::ggml_unpack_block(type, zero.data());
    if (edges && off % row_bytes == 0) {
      f.d = f.dmin = 65504.0f;
      for (size_t i = 0; i < f.scales.size(); ++i) f.scales[i] = i % 2 ? smax : smin;
      for (int& m : f.mins) m = 15;
      for (size_t i = 0; i < f.q.size(); ++i)
        f.q[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? qmax : static_cast<int>(i) % (qmax + 1);
    } else {
      f.d = std::uniform_real_distribution<float>(d_lo, d_hi)(rng);
      f.dmin = std::uniform_real_distribution<float>(0.0f, 1e-2f)(rng);
      for (int& s : f.scales) s = std::uniform_int_distribution<int>(smin, smax)(rng);
      for (int& m : f.mins) m = std::uniform_int_distribution<int>(0, 15)(rng);
      for (int& q : f.q) q = std::uniform_int_distribution<int>(0, qmax)(rng);
    }
    io::ggml_pack_block(type, f, bytes.data() + off);
  }
  return mlx::core::array(bytes.data(), {N, static_cast<int>(row_bytes)}, mlx::core::uint8);
}

inline std::unique_ptr<Model> load_tiny(const std::string& name) {
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  return make_model(d.config, std::move(d.weights), mlx::core::float32);
}

// The float tiny checkpoint `name` with every projection of every block
// ("layers.N. ... _proj") rounded to IQ4_NL and kept as raw GGML blocks (mode
// "iq4_nl", 32 elements a block, so the tiny models' widths divide): per block
// d = max|w| / 127 and each element the nearest codebook value.
inline std::unique_ptr<Model> load_tiny_raw_blocks(const std::string& name) {
  namespace mx = mlx::core;
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  std::vector<std::string> modules;
  for (const auto& [n, a] : d.weights.items())
    if (n.find("layers.") != std::string::npos && n.ends_with("_proj.weight") && a.ndim() == 2)
      modules.push_back(n.substr(0, n.size() - 7));
  const io::GgmlBlock blk = *io::ggml_block(static_cast<uint32_t>(io::GgmlType::IQ4_NL));
  for (const std::string& m : modules) {
    const mx::array w = mx::astype(d.weights.at(m + ".weight"), mx::float32);
    mx::eval(w);
    const int N = w.shape(0), K = w.shape(1);
    const float* src = w.data<float>();
    std::vector<uint8_t> bytes(static_cast<size_t>(N) * K / blk.elements * blk.bytes);
    const std::vector<uint8_t> zero(blk.bytes, 0);
    for (long b = 0; b < static_cast<long>(N) * K / 32; ++b) {
      io::GgmlBlockFields f = io::ggml_unpack_block(io::GgmlType::IQ4_NL, zero.data());
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(src[32 * b + i]));
      f.d = amax / 127.0f;
      for (int i = 0; i < 32; ++i) {
        int best = 0;
        for (int c = 1; c < 16; ++c)
          if (std::abs(io::kIq4Values[c] * f.d - src[32 * b + i]) < std::abs(io::kIq4Values[best] * f.d - src[32 * b + i]))
            best = c;
        f.q[i] = best;
      }
      io::ggml_pack_block(io::GgmlType::IQ4_NL, f, bytes.data() + b * blk.bytes);
    }
    d.weights.set(m + ".weight", mx::array(bytes.data(), {N, static_cast<int>(bytes.size() / N)}, mx::uint8));
    d.weights.set_quant(m, QuantSpec{.bits = 4, .group_size = blk.elements, .mode = "iq4_nl"});
  }
  return make_model(d.config, std::move(d.weights), mx::float32);
}

// A random (N, K) matrix (normal, σ 0.05, from `seed`) quantized by MLX to
// affine `bits`/`group_size`, its scales and biases in `scale_dtype`.
struct QuantizedWeights {
  mlx::core::array w, scales, biases;
};

inline QuantizedWeights quantized_weights(int N, int K, int group_size, int bits, mlx::core::Dtype scale_dtype,
                                          uint64_t seed) {
  namespace mx = mlx::core;
  auto dense = mx::random::normal({N, K}, mx::float32, 0.0f, 0.05f, mx::random::key(seed));
  auto q = mx::quantize(dense, group_size, bits);
  return {q[0], mx::astype(q[1], scale_dtype), mx::astype(q[2], scale_dtype)};
}

// The largest |a - b|.
inline float max_diff(const mlx::core::array& a, const mlx::core::array& b) {
  return mlx::core::max(mlx::core::abs(mlx::core::subtract(a, b))).item<float>();
}

}  // namespace lmlab::test::nn_util

#define LMLAB_SKIP_OFF_CPU()                                                                     \
  do {                                                                                           \
    (void)::lmlab::test::cpu_context();                                                          \
    if (mlx::core::default_device() != mlx::core::Device::cpu) GTEST_SKIP() << "a CPU primitive"; \
  } while (0)
