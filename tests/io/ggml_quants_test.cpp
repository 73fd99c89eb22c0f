// GGML quant types against the gguf package's dequantization (fixtures from
// tests/golden/ggml_quants_golden.py: blocks from the gguf package's and
// llama.cpp's quantizers, and random blocks). Bit for bit: the scalar decoder on
// the raw blocks, and what read_gguf_tensors makes of them (the MLX affine
// repack through mx::dequantize, or the raw blocks kept for the other types).
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/ggml.h"
#include "lmlab/io.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using io::GgmlType;

const char* const kTypes[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                              "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};
const char* const kSources[] = {"quantized", "random"};

std::filesystem::path fixture() { return fixtures_dir() / "quants" / "ggml_quants.gguf"; }

const io::GgufTensorInfo& info(const io::GgufFile& g, const std::string& name) {
  for (const auto& t : g.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("fixture has no tensor " + name);
}

std::vector<uint8_t> raw_bytes(const io::GgufFile& g, const io::GgufTensorInfo& t) {
  std::ifstream f(g.path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(g.data_offset + t.offset));
  std::vector<uint8_t> out(t.nbytes);
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  return out;
}

std::vector<float> floats(const mx::array& a) {
  mx::array c = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(c);
  return {c.data<float>(), c.data<float>() + c.size()};
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(GgmlQuants, ScalarDecoderEqualsGgufPackageBitForBit) {
  LMLAB_REQUIRE_FILE(fixture());
  io::GgufFile g = io::read_gguf(fixture());
  Weights expected = io::read_gguf_tensors(g);  // the F32 tensors only are read here
  for (const char* type : kTypes)
    for (const char* source : kSources) {
      const std::string name = fmt::format("{}.{}", type, source);
      const auto& t = info(g, name + ".weight");
      std::vector<uint8_t> raw = raw_bytes(g, t);
      const int64_t n = t.dims[0] * t.dims[1];
      std::vector<float> got(n);
      io::ggml_dequantize_row(static_cast<GgmlType>(t.type), raw.data(), got.data(), n);
      std::vector<float> want = floats(expected.at(name + ".expected"));
      ASSERT_EQ(want.size(), got.size());
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(bits_of(got[i]), bits_of(want[i])) << name << " element " << i << ": " << got[i]
                                                      << " vs " << want[i];
    }
}

TEST(GgmlQuants, LoadedTensorsDequantizeExactly) {
  LMLAB_REQUIRE_FILE(fixture());
  io::GgufFile g = io::read_gguf(fixture());
  Weights w = io::read_gguf_tensors(g);
  for (const char* type : kTypes)
    for (const char* source : kSources) {
      const std::string name = fmt::format("{}.{}", type, source);
      const QuantSpec* q = w.quant(name);
      ASSERT_NE(q, nullptr) << name;
      std::vector<float> want = floats(w.at(name + ".expected"));
      std::vector<float> got;
      if (io::is_ggml_mode(q->mode)) {
        const mx::array& blocks = w.at(name + ".weight");
        EXPECT_EQ(blocks.dtype(), mx::uint8);
        mx::eval(blocks);
        got.resize(want.size());
        io::ggml_dequantize_row(io::ggml_mode_type(q->mode), blocks.data<uint8_t>(), got.data(),
                                static_cast<int64_t>(got.size()));
        EXPECT_EQ(q->group_size, io::ggml_block(static_cast<uint32_t>(io::ggml_mode_type(q->mode)))->elements);
        // The same blocks through MLX ops (the path GPU streams take), bit for bit.
        std::vector<float> ops = floats(io::ggml_dequantize(blocks, io::ggml_mode_type(q->mode)));
        ASSERT_EQ(ops.size(), want.size());
        for (size_t i = 0; i < ops.size(); ++i)
          ASSERT_EQ(bits_of(ops[i]), bits_of(want[i])) << name << " (MLX ops) element " << i;
      } else {
        EXPECT_EQ(q->mode, "affine") << name;
        EXPECT_EQ(q->group_size, 32) << name;
        // Legacy types keep float16 scales; K-quant sub-block products need float32.
        const bool k_quant = std::string(type).ends_with("_K");
        EXPECT_EQ(w.at(name + ".scales").dtype(), k_quant ? mx::float32 : mx::float16) << name;
        // Scales/biases widened to float32 first (MLX dequantizes in the scales' dtype),
        // as lmlab's kernels read them.
        auto f32 = [&](const char* part) { return mx::astype(w.at(name + part), mx::float32); };
        got = floats(mx::dequantize(w.at(name + ".weight"), f32(".scales"), f32(".biases"), q->group_size,
                                    q->bits, "affine", std::nullopt, mx::float32));
      }
      ASSERT_EQ(got.size(), want.size()) << name;
      // Exact equality (a repacked Q5_0 zero is +0 where ggml's d·0 may be -0).
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << name << " element " << i;
    }
}

// The value of element i from its unpacked fields (the formulas in lmlab/ggml.h).
float field_value(GgmlType t, const io::GgmlBlockFields& f, int i) {
  const int sc = f.scales.empty() ? 0 : f.scales[i / f.sub_block];
  switch (t) {
    case GgmlType::Q2_K:
      return f.d * static_cast<float>(sc) * static_cast<float>(f.q[i]) -
             f.dmin * static_cast<float>(f.mins[i / f.sub_block]);
    case GgmlType::Q3_K: return f.d * static_cast<float>(sc - 32) * static_cast<float>(f.q[i] - 4);
    case GgmlType::Q6_K: return f.d * static_cast<float>(sc) * static_cast<float>(f.q[i] - 32);
    case GgmlType::IQ4_NL: return f.d * static_cast<float>(io::kIq4Values[f.q[i]]);
    default: return f.d * static_cast<float>(sc - 32) * static_cast<float>(io::kIq4Values[f.q[i]]);
  }
}

TEST(GgmlQuants, BlockFieldsUnpackAndPackExactly) {
  LMLAB_REQUIRE_FILE(fixture());
  io::GgufFile g = io::read_gguf(fixture());
  Weights w = io::read_gguf_tensors(g);
  int blocks_checked = 0;
  for (const char* type : {"Q2_K", "Q3_K", "Q6_K", "IQ4_NL", "IQ4_XS"})
    for (const char* source : kSources) {
      const std::string name = fmt::format("{}.{}", type, source);
      const GgmlType t = io::ggml_mode_type(w.quant(name)->mode);
      const auto blk = *io::ggml_block(static_cast<uint32_t>(t));
      const auto& t_info = info(g, name + ".weight");
      std::vector<uint8_t> raw = raw_bytes(g, t_info);
      std::vector<float> want = floats(w.at(name + ".expected"));
      for (size_t b = 0; b * blk.bytes < raw.size(); ++b, ++blocks_checked) {
        const uint8_t* block = raw.data() + b * blk.bytes;
        io::GgmlBlockFields f = io::ggml_unpack_block(t, block);
        ASSERT_EQ(static_cast<int>(f.q.size()), blk.elements);
        std::vector<uint8_t> packed(blk.bytes);
        io::ggml_pack_block(t, f, packed.data());
        ASSERT_EQ(packed, std::vector<uint8_t>(block, block + blk.bytes)) << name << " block " << b;
        for (int i = 0; i < blk.elements; ++i)
          ASSERT_EQ(field_value(t, f, i), want[b * blk.elements + i]) << name << " block " << b << " element " << i;
      }
    }
  EXPECT_GT(blocks_checked, 100);
  io::GgmlBlockFields bad = io::ggml_unpack_block(GgmlType::Q6_K, std::vector<uint8_t>(210, 0).data());
  bad.q[3] = 64;
  std::vector<uint8_t> out(210);
  EXPECT_THROW(io::ggml_pack_block(GgmlType::Q6_K, bad, out.data()), std::invalid_argument);
}

TEST(GgmlQuants, BlockTableAndModes) {
  EXPECT_EQ(io::ggml_block(14)->bytes, 210);
  EXPECT_EQ(io::ggml_block(23)->bytes, 136);
  EXPECT_EQ(io::ggml_block(20)->elements, 32);
  EXPECT_FALSE(io::ggml_block(99));
  EXPECT_EQ(io::ggml_type_name(99), "type99");
  EXPECT_EQ(io::ggml_mode_name(GgmlType::Q6_K), "q6_k");
  EXPECT_TRUE(io::is_ggml_mode("iq4_xs"));
  EXPECT_FALSE(io::is_ggml_mode("affine"));
  EXPECT_FALSE(io::is_ggml_mode("q4_k"));  // repacked, never a block mode
  EXPECT_THROW(io::ggml_mode_type("affine"), std::invalid_argument);
  std::vector<float> out(32);
  uint8_t block[64] = {};
  EXPECT_THROW(io::ggml_dequantize_row(GgmlType::IQ2_XXS, block, out.data(), 256), Unsupported);
  EXPECT_THROW(io::ggml_dequantize_row(GgmlType::Q4_0, block, out.data(), 31), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
