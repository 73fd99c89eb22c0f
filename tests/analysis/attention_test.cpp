// attention capture: every captured row is a probability distribution, equal
// to softmax(q kᵀ / √Dh) recomputed here from the captured q and k with the
// grouped-query mapping (query head h reads kv head h / (H / Hk)); capturing
// leaves the logits unchanged; the SVG writer and the CLI produce heatmaps.
#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

const std::vector<int> kIds = {3, 17, 42, 99, 5, 120, 64, 8, 77, 12};

TEST(Attention, RowsSumToOneAndMatchARecomputationFromQandK) {
  for (const char* name : {"llama", "qwen3_q4", "llama3_scaled"}) {
    auto m = load_tiny(name);
    const ModelConfig& c = m->config();
    an::AttentionCapture cap = an::capture_attention(*m, kIds, {}, {});
    ASSERT_EQ(cap.maps.size(), static_cast<size_t>(c.num_hidden_layers * c.num_attention_heads));
    EXPECT_EQ(cap.q_shape, (std::vector<int>{1, c.num_attention_heads, 10, c.head_dim}));
    EXPECT_EQ(cap.k_shape, (std::vector<int>{1, c.num_key_value_heads, 10, c.head_dim}));
    // Independent recomputation from the captured q, k (after norms and RoPE).
    nn::Hooks hooks;
    hooks.qkv = true;
    m->forward(mx::array(kIds.begin(), {1, 10}, mx::int32), nullptr, &hooks);
    const int group = c.num_attention_heads / c.num_key_value_heads;
    for (const auto& map : cap.maps) {
      EXPECT_EQ(map.kv_head, map.head / group);
      auto key = [&](const char* t) { return fmt::format("layers.{}.self_attn.{}", map.layer, t); };
      mx::array q = mx::take(mx::take(hooks.captured.at(key("q")), 0, 0), map.head, 0);       // (L, Dh)
      mx::array k = mx::take(mx::take(hooks.captured.at(key("k")), 0, 0), map.head / group, 0);
      std::vector<float> s = to_vec(mx::divide(mx::matmul(q, mx::transpose(k)),
                                               mx::array(std::sqrt(float(c.head_dim)))));
      for (int r = 0; r < map.rows; ++r) {
        double mx_ = -1e30, z = 0, sum = 0;
        for (int j = 0; j <= r; ++j) mx_ = std::max(mx_, double(s[r * 10 + j]));
        for (int j = 0; j <= r; ++j) z += std::exp(s[r * 10 + j] - mx_);
        for (int j = 0; j < map.cols; ++j) {
          double want = j <= r ? std::exp(s[r * 10 + j] - mx_) / z : 0.0;
          ASSERT_NEAR(map.probs[r * map.cols + j], want, 1e-5) << name << " L" << map.layer << " H" << map.head;
          sum += map.probs[r * map.cols + j];
        }
        ASSERT_NEAR(sum, 1.0, 1e-5);
      }
    }
  }
}

TEST(Attention, CapturingKeepsTheLogits) {
  auto m = load_tiny("mistral_q4");
  mx::array ids = mx::array(kIds.begin(), {1, 10}, mx::int32);
  nn::Hooks hooks;
  hooks.attention = true;
  float diff = mx::max(mx::abs(mx::subtract(m->forward(ids), m->forward(ids, nullptr, &hooks)))).item<float>();
  EXPECT_LT(diff, 1e-4f);  // explicit softmax path vs the fused kernel
  EXPECT_EQ(hooks.captured.size(), static_cast<size_t>(m->config().num_hidden_layers));
}

TEST(Attention, OutOfRangeLayersAndHeadsAreErrors) {
  auto m = load_tiny("llama");
  EXPECT_THROW(an::capture_attention(*m, kIds, {2}, {}), std::invalid_argument);
  EXPECT_THROW(an::capture_attention(*m, kIds, {0}, {4}), std::invalid_argument);
  auto one = an::capture_attention(*m, kIds, {1}, {3});
  ASSERT_EQ(one.maps.size(), 1u);
  EXPECT_EQ(one.maps[0].kv_head, 1);
  std::string svg = an::attention_svg(one.maps[0], std::vector<std::string>(10, "<a&b>"), "t");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("&lt;a&amp;b&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<a&b>"), std::string::npos);
}

TEST(Attention, CliWritesJsonAndSvgOnTheDefaultModel) {
  auto dir = temp_dir("lab_attention");
  std::string cmd = lmlab_binary() + " attention --no-chat-template -p 'The cat sat on the mat' -l 3 --head 5 --json --svg " +
                    dir.string() + " </dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  ASSERT_EQ(pclose(f), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["q_shape"], (std::vector<int>{1, 9, 6, 64}));
  EXPECT_EQ(j["k_shape"], (std::vector<int>{1, 3, 6, 64}));
  ASSERT_EQ(j["maps"].size(), 1u);
  EXPECT_EQ(j["maps"][0]["kv_head"], 1);
  EXPECT_TRUE(std::filesystem::exists(dir / "attention_L3_H5.svg"));
}

}  // namespace
}  // namespace lmlab::test
