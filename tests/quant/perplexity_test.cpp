// ppl and KL: the window plan by hand; perplexity against mlx-lm's own
// eval_ppl (disjoint windows) and against a numpy evaluation of mlx-lm's
// logits (sliding windows, KL against the float32 copy, top-1 agreement) on
// the same tokens, which mlx-lm's CompletionsDataset made from Super Bowl JSONL
// lines (tokenize_file must make the same); statistics by hand; bad files.
#include <cmath>
#include <fstream>

#include "lmlab/quant.h"
#include "quant/scoring.h"
#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace q = lmlab::quant;

std::filesystem::path quant_fixtures() { return fixtures_dir() / "quant"; }

std::unique_ptr<Model> tiny(const std::string& name) {
  io::ModelDir d = io::read_model_dir(fixtures_dir() / "model" / "tiny" / name);
  return make_model(d.config, std::move(d.weights), mlx::core::float32);
}

TEST(Perplexity, WindowsScoreEveryTokenOnceWithTheirContext) {
  // 10 tokens, context 4, stride 2: [0,4) scores 1..3, [2,6) 4..5, [4,8) 6..7, [6,10) 8..9.
  auto w = q::plan_windows(10, {.context = 4, .stride = 2});
  ASSERT_EQ(w.size(), 4u);
  const int64_t want[4][3] = {{0, 4, 1}, {2, 6, 4}, {4, 8, 6}, {6, 10, 8}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i].begin, want[i][0]);
    EXPECT_EQ(w[i].end, want[i][1]);
    EXPECT_EQ(w[i].first_target, want[i][2]);
  }
  // Disjoint windows (stride = context) leave each window's first token unscored, as mlx_lm does.
  auto d = q::plan_windows(10, {.context = 4, .stride = 4});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[1].first_target, 5);
  EXPECT_EQ(d[2].begin, 8);
  EXPECT_EQ(d[2].first_target, 9);
  EXPECT_THROW(q::plan_windows(1, {}), std::invalid_argument);
  EXPECT_THROW(q::plan_windows(10, {.context = 1, .stride = 1}), std::invalid_argument);
  EXPECT_THROW(q::plan_windows(10, {.context = 4, .stride = 5}), std::invalid_argument);
  EXPECT_THROW(q::plan_windows(10, {.context = 4, .stride = 0}), std::invalid_argument);
}

TEST(Perplexity, BatchesHoldWindowsOfOneWidth) {
  // 297 tokens in windows of 256: [0,256) and the 41-token tail [256,297). Padded into one
  // batch they would cost 512 positions; each runs alone, 297 positions in all.
  auto w = q::plan_windows(297, {.context = 256, .stride = 256});
  ASSERT_EQ(w.size(), 2u);
  auto b = q::detail::batches(w, {.context = 256, .stride = 256});
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].size(), 1u);
  EXPECT_EQ(b[1][0].end - b[1][0].begin, 41);
  // Full windows still share a batch up to batch_tokens / context rows.
  auto s = q::plan_windows(10, {.context = 4, .stride = 2});  // four windows of width 4
  auto sb = q::detail::batches(s, {.context = 4, .stride = 2, .batch_tokens = 12});
  ASSERT_EQ(sb.size(), 2u);
  EXPECT_EQ(sb[0].size(), 3u);
  EXPECT_EQ(sb[1].size(), 1u);
  auto t = q::plan_windows(11, {.context = 4, .stride = 2});  // widths 4, 4, 4, 4, 3
  auto tb = q::detail::batches(t, {.context = 4, .stride = 2});
  ASSERT_EQ(tb.size(), 2u);
  EXPECT_EQ(tb[0].size(), 4u);
  EXPECT_EQ(tb[1].size(), 1u);
}

TEST(Perplexity, SummaryMatchesHandComputedValues) {
  q::Summary s = q::summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  // Population variance 1.25; standard error sqrt(1.25 / 3), as llama.cpp computes it.
  EXPECT_DOUBLE_EQ(s.se, std::sqrt(1.25 / 3));
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_DOUBLE_EQ(s.p90, 3.7);  // linear interpolation between order statistics
  EXPECT_NEAR(s.ci95_high - s.mean, 1.959964 * s.se, 1e-6);
}

TEST(Perplexity, TokenizeFileMakesMlxLmsDatasetTokens) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "ppl_llamacpp.json");
  LoadedModel m = load_model(cpu_context(), {.model = (fixtures_dir() / "model" / "smollm2-f32").string()});
  std::vector<int> ids = q::tokenize_file(m, quant_fixtures() / "superbowl12.jsonl");
  EXPECT_EQ(ids, read_json(quant_fixtures() / "ppl_llamacpp.json")["tokens"].get<std::vector<int>>());
  EXPECT_EQ(q::tokenize_file(m, quant_fixtures() / "superbowl12.jsonl", 100).size(), 100u);
}

TEST(Perplexity, DisjointWindowsMatchMlxLmEvalPpl) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "ppl_tiny.json");
  nlohmann::json g = read_json(quant_fixtures() / "ppl_tiny.json");
  const auto& d = g["disjoint"];
  std::vector<int> tokens = g["tokens"].get<std::vector<int>>();
  tokens.resize(d["tokens"].get<size_t>());
  const int context = g["context"];
  q::Perplexity p = q::perplexity(*tiny("llama_q4"), tokens, {.context = context, .stride = context});
  const double want = d["ppl"], want_se = d["se"];
  std::printf("mlx_lm eval_ppl %.6f ± %.6f, lmlab %.6f ± %.6f (%lld tokens)\n", want, want_se, p.ppl, p.ppl_se,
              static_cast<long long>(p.scored));
  // The same weights in float32 in both engines: per-token log-likelihoods agree to ~1e-6.
  EXPECT_NEAR(p.ppl / want, 1.0, 1e-5);
  EXPECT_NEAR(p.ppl_se / want_se, 1.0, 2e-5);
  EXPECT_EQ(p.scored, static_cast<int64_t>(tokens.size() / context * (context - 1)));
}

TEST(Perplexity, SlidingWindowsAndKlMatchNumpyOnMlxLmLogits) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "ppl_tiny.json");
  nlohmann::json g = read_json(quant_fixtures() / "ppl_tiny.json");
  const auto& s = g["sliding"];
  std::vector<int> tokens = g["tokens"].get<std::vector<int>>();
  q::WindowOptions w{.context = g["context"], .stride = g["stride"]};
  q::KlComparison k = q::compare(*tiny("llama_q4"), *tiny("llama"), tokens, w);
  std::vector<double> kl = s["kl"], nll = s["nll"];
  ASSERT_EQ(k.model.scored, static_cast<int64_t>(kl.size()));
  ASSERT_GE(kl.size(), 600u);
  std::printf("ppl q4 %.6f (mlx-lm %.6f), float %.6f (%.6f); KL %.6f (%.6f); top-1 %.5f (%.5f)\n", k.model.ppl,
              s["ppl"].get<double>(), k.reference.ppl, s["ppl_ref"].get<double>(), k.kl.mean, s["kl_mean"].get<double>(),
              k.top1, s["top1"].get<double>());
  EXPECT_NEAR(k.model.ppl / s["ppl"].get<double>(), 1.0, 1e-5);
  EXPECT_NEAR(k.reference.ppl / s["ppl_ref"].get<double>(), 1.0, 1e-5);
  EXPECT_NEAR(k.kl.mean / s["kl_mean"].get<double>(), 1.0, 1e-3);
  EXPECT_NEAR(k.top1, s["top1"].get<double>(), 1.5 / kl.size());  // a near-tie may flip one argmax
  EXPECT_GT(k.kl.mean, 1e-3);  // the 4-bit copy really differs from the float one
  // The median of the sample is the numpy median of the per-token values.
  std::sort(kl.begin(), kl.end());
  const size_t n = kl.size();
  const double median = n % 2 ? kl[n / 2] : (kl[n / 2 - 1] + kl[n / 2]) / 2;
  EXPECT_NEAR(k.kl.median / median, 1.0, 1e-3);
}

TEST(Perplexity, RealModelMatchesLlamaCppOnTheFloatGguf) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "ppl_llamacpp.json");
  nlohmann::json g = read_json(quant_fixtures() / "ppl_llamacpp.json");
  const auto& s = g["sliding"];
  std::vector<double> want = s["nll"];
  std::vector<int> tokens = g["tokens"].get<std::vector<int>>();
  tokens.resize(want.size() + 1);
  LoadedModel m = load_model(cpu_context(), {.model = (fixtures_dir() / "model" / "smollm2-f32.gguf").string()});
  q::Perplexity p = q::perplexity(*m.model, tokens, {.context = g["context"], .stride = g["stride"]});
  ASSERT_EQ(p.scored, static_cast<int64_t>(want.size()));
  std::printf("llama.cpp ppl %.6f, lmlab %.6f over %zu tokens\n", s["ppl"].get<double>(), p.ppl, want.size());
  // Float32 logits of the two engines differ by up to ~2e-3 (tests/models/oracle_test.cpp); the mean
  // log-likelihood by ~1e-4 (measured 9.5e-5 relative in perplexity).
  EXPECT_NEAR(p.ppl / s["ppl"].get<double>(), 1.0, 5e-4);
}

TEST(Perplexity, AModelAgainstItselfHasZeroDivergence) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "ppl_tiny.json");
  std::vector<int> tokens = read_json(quant_fixtures() / "ppl_tiny.json")["tokens"].get<std::vector<int>>();
  auto m = tiny("llama_q4");
  q::KlComparison k = q::compare(*m, *m, tokens, {.context = 64, .stride = 32});
  EXPECT_EQ(k.kl.max, 0.0);
  EXPECT_EQ(k.top1, 1.0);
  EXPECT_EQ(k.delta_p.max, 0.0);
  EXPECT_EQ(k.model.ppl, k.reference.ppl);
  EXPECT_THROW(q::compare(*m, *tiny("llama"), std::vector<int>{1}, {}), std::invalid_argument);
}

TEST(Perplexity, BadFilesNameTheFileAndLine) {
  LoadedModel& m = default_model();
  auto dir = temp_dir("ppl-bad");
  std::ofstream(dir / "bad.jsonl") << "{\"text\": \"fine\"}\n{not json\n";
  std::ofstream(dir / "keys.jsonl") << "{\"question\": \"no text\"}\n";
  std::ofstream(dir / "empty.txt") << "";
  auto message = [&](const std::filesystem::path& p) {
    try {
      q::tokenize_file(m, p);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(dir / "bad.jsonl").find("bad.jsonl:2"), std::string::npos) << message(dir / "bad.jsonl");
  EXPECT_NE(message(dir / "keys.jsonl").find("keys.jsonl:1"), std::string::npos) << message(dir / "keys.jsonl");
  EXPECT_NE(message(dir / "empty.txt").find("at least 2"), std::string::npos);
  EXPECT_THROW(q::tokenize_file(m, dir / "missing.txt"), std::runtime_error);
}

}  // namespace
}  // namespace lmlab::test
