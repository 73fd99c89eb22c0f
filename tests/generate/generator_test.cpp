// Generator (the token stream behind generate()) on the default model: steps
// concatenate to generate()'s text and tokens, greedy output with a repetition
// penalty and chunked prefill is mlx-lm's, stop() ends the stream, stop
// strings never reach the text, max_tokens bounds it, bad prompts throw.
#include "lmlab/generate.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

const LoadedModel& model() {
  static LoadedModel m = load_model(cpu_context(), {});
  return m;
}

std::vector<int> prompt_ids() { return build_prompt(model(), "Name three colors.", "", true); }

TEST(Generator, StepsMakeUpGenerateResult) {
  GenerateOptions opts{.max_tokens = 24};
  const GenerationResult whole = generate(model(), prompt_ids(), opts);
  Generator g(model(), prompt_ids(), opts);
  std::string text;
  std::vector<int> tokens;
  while (auto step = g.next()) {
    text += step->text;
    if (step->token >= 0) tokens.push_back(step->token);
    else EXPECT_TRUE(g.finished());  // a text-only step comes last
  }
  EXPECT_TRUE(g.finished());
  EXPECT_EQ(tokens, whole.tokens);
  EXPECT_EQ(text, whole.text);
  EXPECT_EQ(g.result().text, whole.text);
  EXPECT_EQ(g.result().tokens, whole.tokens);
  EXPECT_EQ(g.result().stats.generation_tokens, static_cast<int>(tokens.size()));
  EXPECT_GT(g.result().stats.prompt_tps, 0);
  EXPECT_FALSE(g.next());  // stays ended
}

TEST(Generator, GreedyWithRepetitionPenaltyMatchesMlxLm) {
  // mlx-lm's generate_step on the float32 copy of the same weights
  // (model_golden.py): 5-token prefill chunks, a repetition penalty over the
  // last 20 tokens of prompt and output, greedy picks. The logits agree within
  // ~1e-4, so every step whose penalized top-2 margin exceeds 1e-3 must pick
  // the same token; the comparison ends at the first closer call. The last
  // prompt is longer than the window: only its last 20 tokens are penalized.
  const auto path = fixtures_dir() / "model" / "mlxlm_generate_penalty.json";
  LMLAB_REQUIRE_FILE(path);
  const auto golden = read_json(path);
  ASSERT_GE(golden["cases"].size(), 5u);
  ASSERT_GT(golden["cases"].back()["ids"].size(), golden["repetition_context"].get<size_t>() + 10);
  GenerateOptions opts{.max_tokens = 32, .stop_at_eos = false, .prefill_step = golden["prefill_step"].get<int>()};
  opts.sampler.repetition_penalty = golden["repetition_penalty"].get<float>();
  opts.sampler.repetition_context = golden["repetition_context"].get<int>();
  int compared = 0, compared_long = 0;
  for (const auto& c : golden["cases"]) {
    const auto want = c["greedy"].get<std::vector<int>>();
    const auto margins = c["margins"].get<std::vector<float>>();
    const auto got = generate(model(), c["ids"].get<std::vector<int>>(), opts).tokens;
    ASSERT_EQ(got.size(), want.size());
    size_t i = 0;
    for (; i < want.size() && margins[i] > 1e-3f; ++i) ASSERT_EQ(got[i], want[i]) << "step " << i;
    compared += static_cast<int>(i);
    compared_long = static_cast<int>(i);
  }
  EXPECT_GE(compared, 100);
  EXPECT_GE(compared_long, 8);  // past the first steps where a whole-prompt window would differ
  std::printf("[ generate ] %d penalized greedy steps match mlx-lm\n", compared);
}

// The model's end-of-turn token ends a greedy answer (finish_reason "stop",
// the token itself not in the output); with stop_at_eos off the same greedy
// stream runs past it to max_tokens.
TEST(Generator, EndOfTurnTokenEndsTheAnswer) {
  const auto ids = build_prompt(model(), "What is the capital of France?", "", true);
  const GenerationResult r = generate(model(), ids, GenerateOptions{.max_tokens = 48});
  EXPECT_EQ(r.stats.finish_reason, "stop");
  ASSERT_LT(r.tokens.size(), 48u);
  EXPECT_NE(r.text.find("Paris"), std::string::npos) << r.text;
  const GenerationResult past = generate(model(), ids, GenerateOptions{.max_tokens = 48, .stop_at_eos = false});
  EXPECT_EQ(past.stats.finish_reason, "length");
  ASSERT_EQ(past.tokens.size(), 48u);
  EXPECT_TRUE(std::equal(r.tokens.begin(), r.tokens.end(), past.tokens.begin()));  // same greedy prefix
  const auto& eos = model().tokenizer.eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), past.tokens[r.tokens.size()]), eos.end()) << "the token that ended it";
}

TEST(Generator, StopEndsTheStream) {
  Generator g(model(), prompt_ids(), GenerateOptions{.max_tokens = 64, .stop_at_eos = false});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(g.next());
  g.stop();
  EXPECT_TRUE(g.finished());
  while (auto step = g.next()) EXPECT_EQ(step->token, -1);  // only held-back text
  EXPECT_EQ(g.result().tokens.size(), 3u);
  EXPECT_EQ(g.result().stats.finish_reason, "stop");
}

TEST(Generator, MaxTokensAndStopStrings) {
  Generator g(model(), prompt_ids(), GenerateOptions{.max_tokens = 5, .stop_at_eos = false});
  int n = 0;
  while (auto step = g.next()) n += step->token >= 0;
  EXPECT_EQ(n, 5);
  EXPECT_EQ(g.result().stats.finish_reason, "length");

  // Stop at the first word the model writes after the greedy continuation's start.
  const GenerationResult free_run = generate(model(), prompt_ids(), GenerateOptions{.max_tokens = 24});
  ASSERT_GE(free_run.text.size(), 8u);
  const std::string stop = free_run.text.substr(4, 3);
  Generator s(model(), prompt_ids(), GenerateOptions{.max_tokens = 24, .stop = {stop}});
  std::string text;
  while (auto step = s.next()) text += step->text;
  EXPECT_EQ(s.result().stats.finish_reason, "stop");
  EXPECT_EQ(text, free_run.text.substr(0, free_run.text.find(stop)));
  EXPECT_EQ(text.find(stop), std::string::npos);
}

TEST(Generator, RejectsBadPrompts) {
  EXPECT_THROW(Generator(model(), std::vector<int>{}, GenerateOptions{}), std::invalid_argument);
  std::vector<int> too_long(context_length(model()) + 1, 1);
  EXPECT_THROW(Generator(model(), too_long, GenerateOptions{}), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
