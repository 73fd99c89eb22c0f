// Generation options and results: every range check (NaN and infinities
// included), JSON round trips with the CLI's key names, refusals of unknown
// keys and wrong types, and check_tokens on out-of-vocabulary and over-long
// prompts (the tokenizer-from-another-model crash).
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "lmlab/generate.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

using json = nlohmann::json;
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(GenerateOptions, EveryRangeIsChecked) {
  auto bad = [](SamplerConfig c) { return error_of([&] { validate(c); }); };
  EXPECT_NE(bad({.temp = kNan}).find("temp nan"), std::string::npos);
  EXPECT_NE(bad({.temp = kInf}), "");
  EXPECT_NE(bad({.temp = -1}), "");
  EXPECT_NE(bad({.top_p = 0}), "");
  EXPECT_NE(bad({.top_p = kNan}), "");
  EXPECT_NE(bad({.top_p = 1.5f}), "");
  EXPECT_NE(bad({.top_k = -1}), "");
  EXPECT_NE(bad({.min_p = kNan}), "");
  EXPECT_NE(bad({.repetition_penalty = 0}), "");
  EXPECT_NE(bad({.repetition_penalty = kInf}), "");
  EXPECT_NE(bad({.repetition_context = -5}).find("repetition_context_size -5"), std::string::npos);
  EXPECT_EQ(bad({.temp = 0.7f, .top_p = 0.9f, .top_k = 40, .min_p = 0.05f}), "");

  auto bad_gen = [](GenerateOptions o) { return error_of([&] { validate(o); }); };
  EXPECT_EQ(bad_gen({.max_tokens = -1}), "");  // llama.cpp's -n -1: until EOS or the context ends
  EXPECT_NE(bad_gen({.max_tokens = -2}).find("max_tokens -2"), std::string::npos);
  EXPECT_NE(bad_gen({.prefill_step = 0}), "");
  EXPECT_NE(bad_gen({.stop = {""}}), "");
  EXPECT_NE(bad_gen({.stop = {"ok", "\xff"}}).find("UTF-8"), std::string::npos);
  GenerateOptions kv;
  kv.max_kv_size = -3;
  EXPECT_NE(bad_gen(kv), "");
}

TEST(GenerateOptions, JsonRoundTripsWithTheFlagNames) {
  GenerateOptions o{.max_tokens = 32, .sampler = {.temp = 0.5f, .top_k = 7, .seed = 9}, .stop = {"\n\n"}};
  o.max_kv_size = 1024;
  json j = o;
  EXPECT_EQ(j["max_tokens"], 32);
  EXPECT_EQ(j["temp"], 0.5);
  EXPECT_EQ(j["repetition_context_size"], 20);
  EXPECT_EQ(j["prefill_step_size"], 512);
  GenerateOptions back = j.get<GenerateOptions>();
  EXPECT_EQ(json(back), j);
  EXPECT_EQ(back.sampler.seed, 9u);
  // A single stop string is accepted as OpenAI's API sends it.
  EXPECT_EQ((json{{"stop", "END"}}.get<GenerateOptions>().stop), (std::vector<std::string>{"END"}));
}

TEST(GenerateOptions, FromJsonRefusesUnknownKeysAndWrongTypes) {
  auto err = [](const json& j) { return error_of([&] { j.get<GenerateOptions>(); }); };
  EXPECT_NE(err({{"tmep", 1}}).find("did you mean \"temp\""), std::string::npos);
  EXPECT_NE(err({{"temp", "hot"}}).find("temp: expected a number"), std::string::npos);
  EXPECT_NE(err({{"max_tokens", 1.5}}).find("max_tokens: expected an integer"), std::string::npos);
  EXPECT_NE(err({{"seed", -1}}).find("seed: expected a non-negative integer"), std::string::npos);
  EXPECT_NE(err({{"max_tokens", 1e12}}), "");
  EXPECT_NE(err(json::array()).find("expected a JSON object"), std::string::npos);
}

TEST(GenerationResult, JsonHasTheCliShapeAndRoundTrips) {
  GenerationResult r{.text = "Paris", .tokens = {1, 2},
                     .stats = {.prompt_tokens = 5, .generation_tokens = 2, .peak_memory_gb = 0.1,
                               .finish_reason = "stop"}};
  json j = r;
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_FALSE(j["stats"].contains("finish_reason"));
  EXPECT_EQ(j["stats"]["peak_memory_gb"], 0.1);
  GenerationResult back = j.get<GenerationResult>();
  EXPECT_EQ(back.text, "Paris");
  EXPECT_EQ(back.stats.finish_reason, "stop");
  EXPECT_EQ(json(back), j);
}

const LoadedModel& model() {
  static LoadedModel m = load_model(cpu_context(), {});
  return m;
}

TEST(CheckTokens, RefusesIdsTheEmbeddingDoesNotHave) {
  const int vocab = model().model->config().vocab_size;
  EXPECT_NO_THROW(check_tokens(*model().model, std::vector<int>{1, vocab - 1}, "test"));
  std::string e = error_of([&] { check_tokens(*model().model, std::vector<int>{1, vocab}, "test"); });
  EXPECT_NE(e.find("[test] token id 49152 (position 1) is outside the model's vocabulary"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { check_tokens(*model().model, std::vector<int>{-1}, "test"); }), "");
  EXPECT_NE(error_of([&] { check_tokens(*model().model, std::vector<int>{}, "test"); }), "");
  std::vector<int> too_long(context_length(model()) + 1, 1);
  EXPECT_NE(error_of([&] { check_tokens(*model().model, too_long, "test"); }).find("context is 8192"),
            std::string::npos);
  // Generator and the lab go through it: no crash in the embedding, one clear error.
  EXPECT_THROW(Generator(model(), std::vector<int>{vocab + 100}, GenerateOptions{}), std::invalid_argument);
}

TEST(Generator, MaxKvSizeBoundsPromptAndOutput) {
  std::vector<int> ids = build_prompt(model(), "Count from one to fifty.", "", true);
  GenerateOptions o{.max_tokens = 100, .stop_at_eos = false};
  o.max_kv_size = static_cast<int>(ids.size()) + 4;
  GenerationResult r = generate(model(), ids, o);
  EXPECT_EQ(r.tokens.size(), 4u);
  EXPECT_EQ(r.stats.finish_reason, "length");
  o.max_kv_size = static_cast<int>(ids.size());
  EXPECT_NE(error_of([&] { Generator(model(), ids, o); }).find("max_kv_size"), std::string::npos);
}

TEST(Generator, PrefillReportsProgressInChunks) {
  std::vector<int> ids = build_prompt(model(), std::string(600, 'a') + " b c d", "", false);
  ASSERT_GT(ids.size(), 70u);
  std::vector<Progress> seen;
  GenerateOptions o{.max_tokens = 1, .prefill_step = 32};
  o.on_prefill = [&](const Progress& p) { seen.push_back(p); };
  generate(model(), ids, o);
  ASSERT_EQ(seen.size(), (ids.size() - 1 + 31) / 32);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i].done, seen[i - 1].done);
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_TRUE(seen.back().finished);
  EXPECT_EQ(seen.back().unit, "tokens");
}

}  // namespace
}  // namespace lmlab::test
