// io::write_gguf against lmlab's reader: every metadata type and the tensor
// data round-trip; bad keys, values and tensors are refused with nothing
// written. (tests/train/export_gguf_test.py reads exported models with the
// gguf package and runs them in llama.cpp.)
#include <gtest/gtest.h>

#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using io::GgmlType;
using io::GgufType;

io::GgufOut every_type() {
  io::GgufOut g;
  auto put = [&](const std::string& key, MetaValue v, GgufType t, GgufType e = GgufType::U8) {
    g.meta[key] = std::move(v);
    g.types[key] = {t, e};
  };
  put("t.u8", int64_t{200}, GgufType::U8);
  put("t.i8", int64_t{-100}, GgufType::I8);
  put("t.u16", int64_t{60000}, GgufType::U16);
  put("t.i16", int64_t{-30000}, GgufType::I16);
  put("t.u32", int64_t{4000000000}, GgufType::U32);
  put("t.i32", int64_t{-2000000000}, GgufType::I32);
  put("t.u64", int64_t{1} << 40, GgufType::U64);
  put("t.i64", -(int64_t{1} << 40), GgufType::I64);
  put("t.f32", 0.25, GgufType::F32);
  put("t.f64", 1e-300, GgufType::F64);
  put("t.bool", true, GgufType::Bool);
  put("t.str", std::string("héllo"), GgufType::String);
  put("t.strs", std::vector<std::string>{"a", "", "ccc"}, GgufType::Array, GgufType::String);
  put("t.i32s", std::vector<int64_t>{-1, 0, 7}, GgufType::Array, GgufType::I32);
  put("t.bools", std::vector<int64_t>{1, 0}, GgufType::Array, GgufType::Bool);
  put("t.f32s", std::vector<double>{0.5, -2.0}, GgufType::Array, GgufType::F32);
  put("general.alignment", int64_t{64}, GgufType::U32);
  std::vector<float> v(15);
  for (int i = 0; i < 15; ++i) v[i] = 0.5f * i - 3;
  g.tensors.push_back({"a.weight", {5, 3}, GgmlType::F32, mx::array(v.data(), {3, 5}, mx::float32)});
  g.tensors.push_back({"b.weight", {64, 2}, GgmlType::F16, mx::astype(mx::arange(128), mx::float16)});
  return g;
}

TEST(GgufWrite, EveryTypeRoundTripsThroughTheReader) {
  auto dir = temp_dir("gguf_write");
  const io::GgufOut g = every_type();
  io::write_gguf(dir / "m.gguf", g);
  io::GgufFile f = io::read_gguf(dir / "m.gguf");
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.meta, g.meta);
  for (const auto& [key, t] : g.types) {
    EXPECT_EQ(f.meta_types.at(key).type, t.type) << key;
    if (t.type == GgufType::Array) EXPECT_EQ(f.meta_types.at(key).element, t.element) << key;
  }
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.data_offset % 64, 0u);
  EXPECT_EQ(f.tensors[1].offset % 64, 0u);
  Weights w = io::read_gguf_tensors(f);
  EXPECT_TRUE(mx::array_equal(w.at("a.weight"), g.tensors[0].data).item<bool>());
  EXPECT_TRUE(mx::array_equal(w.at("b.weight"), mx::reshape(g.tensors[1].data, {2, 64})).item<bool>());
}

void expect_refused(const io::GgufOut& g, const std::string& what) {
  auto dir = temp_dir("gguf_write_refused");
  try {
    io::write_gguf(dir / "m.gguf", g);
    ADD_FAILURE() << "no error; expected one naming " << what;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "a refused write left a file";
}

TEST(GgufWrite, RefusesBadKeysValuesAndTensorsWritingNothing) {
  io::GgufOut g = every_type();
  g.types.erase("t.str");
  expect_refused(g, "'t.str' has no GGUF type");
  g = every_type();
  g.meta["t.u8"] = int64_t{256};
  expect_refused(g, "'t.u8' value 256 is out of range");
  g = every_type();
  g.meta["t.f32"] = std::string("x");
  expect_refused(g, "'t.f32' holds a value");
  g = every_type();
  g.tensors[0].dims = {4, 3};
  expect_refused(g, "'a.weight' has 60 bytes of data");
  g = every_type();
  g.tensors.push_back({"q.weight", {16, 1}, GgmlType::Q4_1, mx::zeros({20}, mx::uint8)});
  expect_refused(g, "'q.weight' row length 16 is not a multiple of the Q4_1 block 32");
  g = every_type();
  g.tensors.push_back(g.tensors[0]);
  expect_refused(g, "'a.weight' given twice");
}

}  // namespace
}  // namespace lmlab::test
