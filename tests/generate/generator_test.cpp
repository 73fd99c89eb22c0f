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

namespace lmlab::test {
namespace {

// Continuous batching: streams advanced together by step_together() give each
// the tokens and text it gives alone, though they differ in prompt, length,
// options (a penalty, a seeded sampler, stop strings, log-probabilities), join
// late and end at different times.
TEST(Generator, StreamsSteppedTogetherGiveWhatEachGivesAlone) {
  struct Stream {
    std::string prompt;
    GenerateOptions opts;
  };
  GenerateOptions penalty{.max_tokens = 20};
  penalty.sampler.repetition_penalty = 1.3f;
  GenerateOptions sampled{.max_tokens = 16};
  sampled.sampler.temp = 0.8f;
  sampled.sampler.seed = 7;
  GenerateOptions stopped{.max_tokens = 40, .stop = {"."}};
  GenerateOptions logprobs{.max_tokens = 12, .logprobs = 3};
  const std::vector<Stream> streams = {{"Name three colors.", {.max_tokens = 24}},
                                       {"What is the capital of France?", penalty},
                                       {"Write a haiku about the sea.", sampled},
                                       {"Count from one to ten.", stopped},
                                       {"Hi", logprobs},
                                       {"Tell me about the moon.", {.max_tokens = 5}}};
  std::vector<GenerationResult> alone;
  std::vector<std::vector<GenerationStep>> alone_steps(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    Generator g(model(), build_prompt(model(), streams[i].prompt, "", true), streams[i].opts);
    while (auto s = g.next()) alone_steps[i].push_back(*s);
    alone.push_back(g.result());
  }
  // Together: the last two join after three rounds.
  std::vector<std::unique_ptr<Generator>> gens;
  std::vector<std::vector<GenerationStep>> steps(streams.size());
  auto join = [&](size_t i) {
    gens.push_back(std::make_unique<Generator>(model(), build_prompt(model(), streams[i].prompt, "", true),
                                               streams[i].opts));
    gens.back()->set_batched(true);
  };
  for (size_t i = 0; i + 2 < streams.size(); ++i) join(i);
  std::vector<bool> ended(streams.size(), false);
  int rounds = 0, batched = 0;
  while (true) {
    if (rounds == 3)
      for (size_t i = streams.size() - 2; i < streams.size(); ++i) join(i);
    std::vector<Generator*> all;
    int awaiting = 0;
    for (auto& g : gens) {
      all.push_back(g.get());
      awaiting += g->awaiting_step();
    }
    step_together(all);
    batched += awaiting > 1;
    bool any = false;
    for (size_t i = 0; i < gens.size(); ++i) {
      if (ended[i]) continue;
      EXPECT_FALSE(gens[i]->awaiting_step());
      if (auto s = gens[i]->next()) {
        steps[i].push_back(*s);
        any = true;
      } else {
        ended[i] = true;
      }
    }
    ++rounds;
    if (!any && gens.size() == streams.size()) break;
  }
  EXPECT_GT(batched, 5);
  for (size_t i = 0; i < streams.size(); ++i) {
    EXPECT_EQ(gens[i]->result().tokens, alone[i].tokens) << streams[i].prompt;
    EXPECT_EQ(gens[i]->result().text, alone[i].text) << streams[i].prompt;
    EXPECT_EQ(gens[i]->result().stats.finish_reason, alone[i].stats.finish_reason) << streams[i].prompt;
    ASSERT_EQ(steps[i].size(), alone_steps[i].size()) << streams[i].prompt;
    for (size_t k = 0; k < steps[i].size(); ++k) {
      EXPECT_EQ(steps[i][k].text, alone_steps[i][k].text);
      EXPECT_NEAR(steps[i][k].logprob, alone_steps[i][k].logprob, 1e-4);
      ASSERT_EQ(steps[i][k].top_logprobs.size(), alone_steps[i][k].top_logprobs.size());
      for (size_t j = 0; j < steps[i][k].top_logprobs.size(); ++j)
        EXPECT_EQ(steps[i][k].top_logprobs[j].first, alone_steps[i][k].top_logprobs[j].first);
    }
  }
  EXPECT_EQ(alone[3].stats.finish_reason, "stop");  // the stop string ended it
  // The caches they leave hold what each fed, as alone.
  CachedPrompt c = gens[0]->take_cache();
  EXPECT_EQ(c.cache->offset(), static_cast<int>(c.ids.size()));
}

TEST(Generator, BatchingOffComputesTheAwaitedStepAlone) {
  GenerateOptions opts{.max_tokens = 10};
  const GenerationResult whole = generate(model(), prompt_ids(), opts);
  Generator g(model(), prompt_ids(), opts);
  g.set_batched(true);
  ASSERT_TRUE(g.next());
  EXPECT_TRUE(g.awaiting_step());
  EXPECT_THROW(g.next(), std::logic_error);  // nobody computed its step
  g.set_batched(false);
  EXPECT_FALSE(g.awaiting_step());
  while (g.next()) {
  }
  EXPECT_EQ(g.result().tokens, whole.tokens);
}

}  // namespace
}  // namespace lmlab::test
