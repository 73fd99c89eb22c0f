// predict and the logit lens: the lens at the last layer is the model's own
// logits; hooks that capture nothing leave the logits bit-identical; top-k and
// temperature behave as softmax says; the default model's next-token
// probabilities against mlx-lm's.
#include <cmath>
#include <numeric>

#include "analysis/lab_test_util.h"
#include "lmlab/generate.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

const std::vector<int> kIds = {3, 17, 42, 99, 5, 120, 64, 8};

TEST(Predict, TopKIsSortedSoftmaxAndTemperatureSharpens) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.0f};
  auto t1 = an::top_k(logits, 4, 1.0f);
  ASSERT_EQ(t1.size(), 4u);
  EXPECT_EQ(t1[0].id, 1);
  EXPECT_EQ(t1[1].id, 2);
  double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + 1.0;
  EXPECT_NEAR(t1[0].prob, std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(std::accumulate(t1.begin(), t1.end(), 0.0, [](double s, auto& t) { return s + t.prob; }), 1.0, 1e-6);
  EXPECT_GT(an::top_k(logits, 1, 0.5f)[0].prob, t1[0].prob);
  EXPECT_EQ(an::top_k(logits, 1, 0.0f)[0].prob, 1.0f);
  EXPECT_NEAR(an::entropy_bits({0, 0, 0, 0}), 2.0f, 1e-6);
  EXPECT_LT(an::entropy_bits(logits, 0.5f), an::entropy_bits(logits, 2.0f));
}

TEST(Predict, HooksOffGiveTheSameLogitsBitForBit) {
  for (const char* name : {"llama", "qwen3_q4"}) {
    auto m = load_tiny(name);
    mx::array ids = mx::array(kIds.begin(), {1, (int)kIds.size()}, mx::int32);
    mx::array plain = m->forward(ids);
    nn::Hooks off;  // nothing requested
    mx::array hooked = m->forward(ids, nullptr, &off);
    EXPECT_TRUE(mx::array_equal(plain, hooked).item<bool>()) << name;
    EXPECT_TRUE(off.captured.empty());
    // Residual capture observes without changing the result either.
    nn::Hooks res;
    res.residual = true;
    EXPECT_TRUE(mx::array_equal(plain, m->forward(ids, nullptr, &res)).item<bool>()) << name;
  }
}

TEST(Predict, LogitLensAtTheLastLayerIsTheModelsLogits) {
  for (const char* name : {"llama", "llama_q4", "qwen2"}) {
    auto m = load_tiny(name);
    std::vector<float> logits = an::next_token_logits(*m, kIds);
    auto lens = an::logit_lens(*m, kIds, 5);
    ASSERT_EQ(lens.size(), static_cast<size_t>(m->config().num_hidden_layers + 1));
    EXPECT_EQ(lens.front().name, "embed");
    auto top = an::top_k(logits, 5);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(lens.back().top[i].id, top[i].id) << name;
      EXPECT_NEAR(lens.back().top[i].logit, top[i].logit, 1e-5) << name;
    }
    EXPECT_NEAR(lens.back().entropy, an::entropy_bits(logits), 1e-4);
  }
}

TEST(Predict, DefaultModelKnowsTheCapitalOfFrance) {
  // The independent value: mlx-lm's next-token distribution on the dequantized
  // copy of the same weights (tests/golden/model_golden.py, the first prompt),
  // top-5 tokens and their probabilities at temperatures 1 and 0.5. The logits
  // agree within ~1e-4 (Oracle tests), which moves these probabilities by
  // ~2e-5 (measured 1.3e-5); the bound is 2e-4.
  const auto path = fixtures_dir() / "model" / "mlxlm_f32.json";
  LMLAB_REQUIRE_FILE(path);
  const auto golden = read_json(path)["cases"][0];
  LoadedModel& m = default_model();
  auto preds = an::predict(m, {"The capital of France is"}, {.k = 5, .temperatures = {1.0f, 0.5f}, .chat_template = false});
  ASSERT_EQ(preds.size(), 2u);
  ASSERT_EQ(preds[0].ids, golden["ids"].get<std::vector<int>>());
  EXPECT_EQ(preds[0].top[0].piece, " Paris");
  const auto& top = golden["top"];
  ASSERT_EQ(top.size(), 5u);
  double worst = 0;
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(preds[t].top[i].id, top[i][0].get<int>()) << "temperature " << preds[t].temperature << " rank " << i;
      const double want = top[i][1 + t].get<double>();
      EXPECT_NEAR(preds[t].top[i].prob, want, 2e-4) << "temperature " << preds[t].temperature << " rank " << i;
      worst = std::max(worst, std::abs(preds[t].top[i].prob - want));
    }
  std::printf("[ predict  ] \" Paris\" %.4f (mlx-lm %.4f); top-5 at t = 1, 0.5 within %.2g of mlx-lm\n",
              preds[0].top[0].prob, top[0][1].get<double>(), worst);
  auto lens = an::logit_lens(*m.model, preds[0].ids, 1);
  EXPECT_EQ(lens.back().top[0].id, preds[0].top[0].id);
}

}  // namespace
}  // namespace lmlab::test
