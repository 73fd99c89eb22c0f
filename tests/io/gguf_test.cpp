// GGUF loading: every metadata type, every supported tensor type against a
// hand dequantization of the blocks, and truncated / corrupt / unsupported files.
#include <cmath>
#include <fstream>
#include <random>

#include <mlx/mlx.h>

#include "io/gguf_writer.h"
#include "lmlab/io.h"
#include "models/gguf.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using io::GgmlType;

uint16_t f16_bits(float f) {
  mx::float16_t h(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float f16_value(uint16_t b) {
  mx::float16_t h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}
void push16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(x & 0xFF);
  v.push_back(x >> 8);
}

// Random blocks of a type for a rows×cols tensor, plus the values GGML means.
struct Blocks {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Blocks make_blocks(GgmlType type, int rows, int cols, std::mt19937& rng) {
  Blocks b;
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  b.values.resize(static_cast<size_t>(rows) * cols);
  for (int blk = 0; blk < rows * cols / 32; ++blk) {
    float* out = b.values.data() + blk * 32;
    uint16_t d = f16_bits(u(rng)), m = f16_bits(u(rng));
    push16(b.bytes, d);
    if (type == GgmlType::Q4_1) push16(b.bytes, m);
    if (type == GgmlType::Q8_0) {
      for (int j = 0; j < 32; ++j) {
        int8_t q = static_cast<int8_t>(byte(rng) - 128);
        b.bytes.push_back(static_cast<uint8_t>(q));
        out[j] = q * f16_value(d);
      }
      continue;
    }
    for (int j = 0; j < 16; ++j) {
      uint8_t x = byte(rng);
      b.bytes.push_back(x);
      int lo = x & 15, hi = x >> 4;
      if (type == GgmlType::Q4_0) {
        out[j] = (lo - 8) * f16_value(d);
        out[j + 16] = (hi - 8) * f16_value(d);
      } else {
        out[j] = lo * f16_value(d) + f16_value(m);
        out[j + 16] = hi * f16_value(d) + f16_value(m);
      }
    }
  }
  return b;
}

std::vector<float> to_floats(mx::array a) {
  a = mx::astype(a, mx::float32);
  mx::eval(a);
  return std::vector<float>(a.data<float>(), a.data<float>() + a.size());
}

TEST(Gguf, ReadsEveryMetadataType) {
  GgufWriter w;
  w.add_u32("a.u32", 7);
  w.add_i32("a.i32", -3);
  w.add_f32("a.f32", 1.5f);
  w.add_f64("a.f64", 2.25);
  w.add_u64("a.u64", 1ull << 40);
  w.add_bool("a.bool", true);
  w.add_str("a.str", "héllo");
  w.add_strs("a.strs", {"x", "", "zz"});
  w.add_i32s("a.ints", {1, -2, 3});
  w.add_str("after", "still aligned");  // a key after an f64 must still parse
  auto path = temp_dir("gguf-meta") / "m.gguf";
  w.write(path);
  auto g = io::read_gguf(path);
  EXPECT_EQ(meta_int(g.meta, "a.u32"), 7);
  EXPECT_EQ(meta_int(g.meta, "a.i32"), -3);
  EXPECT_DOUBLE_EQ(*meta_float(g.meta, "a.f32"), 1.5);
  EXPECT_DOUBLE_EQ(*meta_float(g.meta, "a.f64"), 2.25);
  EXPECT_EQ(meta_int(g.meta, "a.u64"), 1ll << 40);
  EXPECT_EQ(meta_bool(g.meta, "a.bool"), true);
  EXPECT_EQ(meta_string(g.meta, "a.str"), "héllo");
  EXPECT_EQ(*meta_strings(g.meta, "a.strs"), (std::vector<std::string>{"x", "", "zz"}));
  EXPECT_EQ(*meta_ints(g.meta, "a.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(meta_string(g.meta, "after"), "still aligned");
  EXPECT_THROW(meta_int(g.meta, "a.str"), std::invalid_argument);
}

TEST(Gguf, QuantizedBlocksBecomeExactMlxAffine) {
  std::mt19937 rng(1);
  for (auto type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
    const int rows = 3, cols = 64;
    Blocks b = make_blocks(type, rows, cols, rng);
    GgufWriter w;
    w.add_tensor("blk.0.attn_q.weight", {cols, rows}, static_cast<uint32_t>(type), b.bytes);
    auto path = temp_dir("gguf-q") / "q.gguf";
    w.write(path);
    Weights ws = io::read_gguf_tensors(io::read_gguf(path));
    const QuantSpec* q = ws.quant("blk.0.attn_q");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->group_size, 32);
    EXPECT_EQ(q->bits, type == GgmlType::Q8_0 ? 8 : 4);
    // Scales/biases widened to float32 first, as the model does before its matmuls.
    auto f32 = [&](const char* n) { return mx::astype(ws.at(n), mx::float32); };
    mx::array deq = mx::dequantize(ws.at("blk.0.attn_q.weight"), f32("blk.0.attn_q.scales"),
                                   f32("blk.0.attn_q.biases"), q->group_size, q->bits, "affine",
                                   std::nullopt, mx::float32);
    EXPECT_EQ(deq.shape(), (mx::Shape{rows, cols}));
    auto got = to_floats(deq);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], b.values[i], 1e-6f * (1 + std::abs(b.values[i])))
          << io::ggml_type_name(static_cast<uint32_t>(type)) << " element " << i;
  }
}

TEST(Gguf, DenseTypesKeepValues) {
  std::vector<float> v = {1.0f, -2.5f, 3.25f, 1e-3f, 65504.0f, -0.0f};
  std::vector<uint8_t> f32(v.size() * 4), f16, bf16;
  std::memcpy(f32.data(), v.data(), f32.size());
  for (float x : v) {
    push16(f16, f16_bits(x));
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    push16(bf16, bits >> 16);  // these values are exact in bf16's 8-bit mantissa or close
  }
  GgufWriter w;
  w.add_tensor("a.weight", {3, 2}, 0, f32);
  w.add_tensor("b.weight", {3, 2}, 1, f16);
  w.add_tensor("c.weight", {3, 2}, 30, bf16);
  auto path = temp_dir("gguf-dense") / "d.gguf";
  w.write(path);
  Weights ws = io::read_gguf_tensors(io::read_gguf(path));
  EXPECT_EQ(ws.at("a.weight").shape(), (mx::Shape{2, 3}));
  EXPECT_EQ(ws.at("c.weight").dtype(), mx::bfloat16);  // not squeezed through float16
  EXPECT_EQ(to_floats(ws.at("a.weight")), v);
  auto h = to_floats(ws.at("b.weight"));
  auto bf = to_floats(ws.at("c.weight"));
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_NEAR(h[i], v[i], std::abs(v[i]) * 1e-3f + 1e-6f);
    EXPECT_NEAR(bf[i], v[i], std::abs(v[i]) * 1e-2f + 1e-6f);
  }
}

TEST(Gguf, TruncatedFileIsAClearError) {
  std::mt19937 rng(2);
  GgufWriter w;
  w.add_str("general.architecture", "llama");
  w.add_tensor("t.weight", {64, 4}, 3, make_blocks(GgmlType::Q4_1, 4, 64, rng).bytes);
  std::string full = w.bytes();
  auto dir = temp_dir("gguf-trunc");
  for (size_t cut : {size_t{3}, size_t{20}, size_t{60}, full.size() - 10}) {
    auto path = dir / ("t" + std::to_string(cut) + ".gguf");
    std::ofstream(path, std::ios::binary) << full.substr(0, cut);
    try {
      io::read_gguf(path);
      FAIL() << "no error for a file cut at " << cut;
    } catch (const std::runtime_error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
      EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("bad magic") != std::string::npos) << msg;
    }
  }
}

TEST(Gguf, CorruptHeaderIsAClearError) {
  auto dir = temp_dir("gguf-corrupt");
  std::ofstream(dir / "magic.gguf", std::ios::binary) << "GGML and more bytes here";
  EXPECT_THROW(io::read_gguf(dir / "magic.gguf"), std::runtime_error);
  GgufWriter w;
  w.add_str("k", "v");
  std::string b = w.bytes();
  b[4] = 9;  // version 9
  std::ofstream(dir / "version.gguf", std::ios::binary) << b;
  EXPECT_THROW(io::read_gguf(dir / "version.gguf"), std::runtime_error);
  std::string huge = w.bytes();
  uint64_t n = 1ull << 60;  // absurd string length in the first key
  std::memcpy(huge.data() + 24, &n, 8);
  std::ofstream(dir / "len.gguf", std::ios::binary) << huge;
  EXPECT_THROW(io::read_gguf(dir / "len.gguf"), std::runtime_error);
  EXPECT_THROW(io::read_gguf(dir / "missing.gguf"), std::runtime_error);
}

TEST(Gguf, UnsupportedTensorTypeNamesTheTensor) {
  GgufWriter w;
  w.add_tensor("blk.0.ffn_up.weight", {256, 1}, 16, std::vector<uint8_t>(66, 0));  // IQ2_XXS
  auto path = temp_dir("gguf-unsup") / "u.gguf";
  w.write(path);
  try {
    io::read_gguf_tensors(io::read_gguf(path));
    FAIL();
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos);
  }
}

TEST(Gguf, UnknownArchitectureIsUnsupported) {
  GgufWriter w;
  w.add_str("general.architecture", "mamba");
  auto path = temp_dir("gguf-arch") / "a.gguf";
  w.write(path);
  EXPECT_THROW(models::gguf_config(io::read_gguf(path)), Unsupported);
}

// llama.cpp writes Mixtral as architecture "llama" with an expert count: a
// clear refusal before any tensor is read, not a missing-tensor error.
TEST(Gguf, MixtureOfExpertsIsUnsupported) {
  GgufWriter w;
  w.add_str("general.architecture", "llama");
  w.add_u32("llama.expert_count", 8);
  w.add_u32("llama.expert_used_count", 2);
  auto path = temp_dir("gguf-moe") / "a.gguf";
  w.write(path);
  try {
    models::gguf_config(io::read_gguf(path));
    FAIL() << "no throw";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("a mixture of 8 experts"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lmlab::test
