// weights view: the n-bit fields read from the packed words, times the scale
// plus the bias, equal MLX's own dequantize, for every bit width MLX packs;
// names and globs resolve, and a bad name is one clear error.
#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

class FieldBits : public ::testing::TestWithParam<int> {};

TEST_P(FieldBits, UnpackedFieldsDequantizeLikeMlx) {
  (void)cpu_context();
  const int bits = GetParam(), gs = 32, rows = 3, cols = 128;
  mx::array w = mx::random::normal({rows, cols}, mx::float32, 0.0f, 1.0f, mx::random::key(7));
  auto q = mx::quantize(w, gs, bits);
  mx::array ref = mx::dequantize(q[0], q[1], q[2], gs, bits);
  mx::eval(q[0], q[1], q[2], ref);
  const int words_per_row = q[0].shape(1);
  for (int r = 0; r < rows; ++r) {
    const uint32_t* p = q[0].data<uint32_t>() + r * words_per_row;
    std::vector<int> f = an::unpack_fields({p, p + words_per_row}, bits, cols);
    for (int c = 0; c < cols; ++c) {
      float s = q[1].data<float>()[r * (cols / gs) + c / gs], b = q[2].data<float>()[r * (cols / gs) + c / gs];
      ASSERT_FLOAT_EQ(s * f[c] + b, ref.data<float>()[r * cols + c]) << "bits " << bits << " row " << r << " col " << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Mlx, FieldBits, ::testing::Values(2, 3, 4, 5, 6, 8));

TEST(WeightsView, QuantizedGroupsAgreeWithDequantizedRow) {
  auto m = load_tiny("llama_q4");
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"}) {
    an::TensorView v = an::view_tensor(*m, name, {.row = 3, .col = 20, .count = 30});
    ASSERT_GT(v.bits, 0);
    ASSERT_EQ(v.groups.size(), 2u);  // columns 20..49 touch groups 0 and 1
    for (size_t i = 0; i < v.values.size(); ++i) {
      int c = 20 + static_cast<int>(i);
      const auto& g = v.groups[c / 32 - v.groups[0].group];
      EXPECT_FLOAT_EQ(g.values[c % 32], v.values[i]) << name << " col " << c;
    }
    EXPECT_EQ(v.groups[0].words.size(), static_cast<size_t>(32 * v.bits / 32));
    ASSERT_TRUE(v.scale_stats.has_value());
  }
}

// Stacked experts (E, rows, cols): row e·rows + r is expert e's row r, its
// packed groups those of that expert, as MLX dequantizes the whole stack.
TEST(WeightsView, StackedExpertRowsAreCountedAcrossExperts) {
  auto m = load_tiny("mixtral_q4");
  const std::string name = "model.layers.1.block_sparse_moe.switch_mlp.down_proj.weight";  // (4, 64, 96), 8-bit
  an::TensorView v = an::view_tensor(*m, name, {.row = 2 * 64 + 5, .col = 30, .count = 10});
  EXPECT_EQ(v.shape, (std::vector<int>{4, 64, 96}));
  EXPECT_EQ(v.bits, 8);
  const std::string p = "model.layers.1.block_sparse_moe.switch_mlp.down_proj";
  const Weights& w = m->weights();
  mx::array want = mx::dequantize(w.at(p + ".weight"), w.at(p + ".scales"), w.at(p + ".biases"), 32, 8);
  std::vector<float> row = to_vec(mx::slice(want, {2, 5, 30}, {3, 6, 40}));
  ASSERT_EQ(v.values.size(), row.size());
  for (size_t i = 0; i < row.size(); ++i) EXPECT_FLOAT_EQ(v.values[i], row[i]) << "column " << 30 + i;
  ASSERT_EQ(v.groups.size(), 2u);  // columns 30..39 touch groups 0 and 1
  EXPECT_FLOAT_EQ(v.groups[1].values[39 % 32], row.back());
  EXPECT_EQ(v.stats.count, 4 * 64 * 96);
  EXPECT_THROW(an::view_tensor(*m, name, {.row = 4 * 64}), std::invalid_argument);
}

TEST(WeightsView, StatsAndHistogramCoverTheTensor) {
  auto m = load_tiny("llama");
  an::TensorView v = an::view_tensor(*m, "model.embed_tokens.weight", {.bins = 10});
  EXPECT_EQ(v.stats.count, 160 * 64);
  int64_t total = 0;
  for (auto c : v.histogram.counts) total += c;
  EXPECT_EQ(total, v.stats.count);
  EXPECT_EQ(v.values.size(), 16u);
}

TEST(WeightsView, NamesGlobsAndErrors) {
  auto m = load_tiny("llama_q4");
  EXPECT_EQ(an::match_tensors(*m, "model.layers.0.self_attn.q_proj"),
            std::vector<std::string>{"model.layers.0.self_attn.q_proj.weight"});
  EXPECT_EQ(an::match_tensors(*m, "model.layers.*.self_attn.q_proj.weight").size(), 2u);
  try {
    an::match_tensors(*m, "model.nothing.*");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[weights] no tensor matches 'model.nothing.*'"), std::string::npos);
  }
  EXPECT_THROW(an::view_tensor(*m, "model.layers.0.self_attn.q_proj.weight", {.row = 100000}),
               std::invalid_argument);
}

TEST(WeightsView, CliPrintsJsonAndFailsOnBadName) {
  std::string cmd = lmlab_binary() + " weights model.layers.0.self_attn.k_proj.weight --json --count 8 2>&1 </dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  ASSERT_EQ(pclose(f), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["bits"], 4);
  EXPECT_EQ(j["values"].size(), 8u);
  EXPECT_EQ(j["groups"][0]["fields"].size(), 32u);
  EXPECT_NE(std::system((lmlab_binary() + " weights no.such.tensor >/dev/null 2>&1").c_str()), 0);
}

}  // namespace
}  // namespace lmlab::test
