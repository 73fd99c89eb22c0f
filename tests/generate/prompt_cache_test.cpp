// Prompt caches on the default model: a generation that starts from a cache
// prefills only the tokens after the shared prefix and produces exactly the
// tokens of a cold run (greedy); the shared pool hands entries out by longest
// prefix (moved or copied), drops redundant ones and keeps its byte bound;
// saved caches load in place of the prefill and are refused for another
// model; log-probabilities match a log-softmax of the model's logits.
#include "lmlab/prompt_cache.h"

#include <cmath>
#include <fstream>

#include "analysis/lab_test_util.h"
#include "lmlab/generate.h"
#include "lmlab/messages.h"
#include "lmlab/model.h"
#include "lmlab/nn.h"

namespace lmlab::test {
namespace {

using ojson = nlohmann::ordered_json;

std::vector<int> chat(const std::vector<std::string>& turns) {
  ojson messages = ojson::array();
  for (size_t i = 0; i < turns.size(); ++i)
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", turns[i]}});
  const LoadedModel& m = default_model();
  return render_conversation(m.tokenizer, *m.chat_template, make_conversation(messages)).ids;
}

GenerationResult run(std::span<const int> prompt, CachedPrompt reuse = {}, CachedPrompt* out = nullptr,
                     int max_tokens = 12) {
  Generator g(default_model(), prompt, GenerateOptions{.max_tokens = max_tokens}, std::move(reuse));
  while (g.next()) {
  }
  if (out) *out = g.take_cache();
  return g.result();
}

TEST(PromptCache, NextTurnPrefillsOnlyNewTokensAndMatchesAColdRun) {
  const std::vector<int> first = chat({"Name a colour."});
  CachedPrompt cache;
  const GenerationResult r1 = run(first, {}, &cache);
  EXPECT_EQ(r1.stats.cached_tokens, 0);
  // The cache holds the prompt and every token fed back: the reply but its last
  // token when max_tokens cut it (that one was sampled, never run), EOS too when it ended there.
  ASSERT_GE(cache.ids.size() + 1, first.size() + r1.tokens.size());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), cache.ids.begin()));

  const std::vector<int> second = chat({"Name a colour.", r1.text, "Another one?"});
  const size_t shared = common_prefix(cache.ids, second);
  // The first prompt and the reply are reused (its last token too when the reply ended at EOS).
  EXPECT_GE(shared + 1, first.size() + r1.tokens.size());
  const GenerationResult warm = run(second, std::move(cache));
  const GenerationResult cold = run(second);
  EXPECT_EQ(warm.stats.cached_tokens, static_cast<int>(shared));
  EXPECT_EQ(warm.tokens, cold.tokens);
  EXPECT_EQ(warm.text, cold.text);
}

TEST(PromptCache, RepeatedAndDivergingPromptsMatchColdRuns) {
  const std::vector<int> a = chat({"Tell me about cats."});
  CachedPrompt cache;
  const GenerationResult cold_a = run(a, {}, &cache);
  // The same prompt again: everything but its last token comes from the cache.
  CachedPrompt again = copy_prefix(cache, cache.ids.size());
  const GenerationResult warm_a = run(a, std::move(again));
  EXPECT_EQ(warm_a.stats.cached_tokens, static_cast<int>(a.size()) - 1);
  EXPECT_EQ(warm_a.tokens, cold_a.tokens);
  // Another question: only the template's opening is shared.
  const std::vector<int> b = chat({"Tell me about dogs."});
  const GenerationResult warm_b = run(b, std::move(cache));
  EXPECT_EQ(warm_b.stats.cached_tokens, static_cast<int>(common_prefix(a, b)));
  EXPECT_EQ(warm_b.tokens, run(b).tokens);
}

TEST(PromptCache, PoolHandsOutTheLongestPrefix) {
  const std::vector<int> a = chat({"Name a colour."});
  CachedPrompt ca;
  const GenerationResult ra = run(a, {}, &ca, 4);
  const size_t bytes = ca.nbytes();
  PromptCache pool(10 * bytes);
  pool.put(std::move(ca));
  EXPECT_EQ(pool.stats().entries, 1);

  // A diverging prompt gets a copy of the shared prefix; the entry stays.
  const std::vector<int> b = chat({"Name a fruit."});
  CachedPrompt cb = pool.take(b);
  EXPECT_EQ(cb.ids.size(), common_prefix(a, b));
  EXPECT_EQ(pool.stats().entries, 1);
  // A prompt continuing the whole entry gets the entry itself.
  const std::vector<int> a2 = chat({"Name a colour.", ra.text, "Why?"});
  CachedPrompt moved = pool.take(a2);
  EXPECT_EQ(pool.stats().entries, 0);
  EXPECT_GT(moved.ids.size(), a.size());
  EXPECT_EQ(run(a2, std::move(moved)).tokens, run(a2).tokens);
  // Nothing shared: a miss.
  EXPECT_TRUE(pool.take(std::vector<int>{7, 8, 9}).empty());
  const PromptCacheStats s = pool.stats();
  EXPECT_EQ(s.lookups, 3);
  EXPECT_EQ(s.hits, 2);
  // Two entries sharing a prefix with a prompt: the longer match wins, whichever came first.
  CachedPrompt c1, c2;
  run(chat({"Name a fruit."}), {}, &c1, 2);
  run(a, {}, &c2, 2);
  const size_t longer = c2.ids.size();
  ASSERT_GT(longer, common_prefix(c1.ids, a2));
  pool.put(std::move(c1));
  pool.put(std::move(c2));
  EXPECT_EQ(pool.take(a2).ids.size(), longer);
}

TEST(PromptCache, PoolDropsRedundantEntriesAndKeepsItsBound) {
  CachedPrompt c1, c2, c3;
  run(chat({"One."}), {}, &c1, 2);
  const size_t bytes = c1.nbytes();
  PromptCache pool(2 * bytes + bytes / 2);
  CachedPrompt shorter = copy_prefix(c1, c1.ids.size() - 3);
  pool.put(std::move(shorter));
  pool.put(std::move(c1));  // covers the shorter one, which goes
  EXPECT_EQ(pool.stats().entries, 1);
  run(chat({"Two."}), {}, &c2, 2);
  run(chat({"Three."}), {}, &c3, 2);
  pool.put(std::move(c2));
  pool.put(std::move(c3));  // over the bound: the least recently used ("One.") goes
  const PromptCacheStats s = pool.stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_LE(s.bytes, s.max_bytes);
  EXPECT_EQ(pool.take(chat({"One."})).ids.size(), common_prefix(chat({"One."}), chat({"Two."})));
}

TEST(PromptCache, SavedCacheLoadsInPlaceOfThePrefill) {
  const std::vector<int> a = chat({"Write a haiku about the sea."});
  CachedPrompt cache;
  run(a, {}, &cache, 6);
  auto dir = temp_dir("prompt-cache");
  const auto file = dir / "sea.cache";
  save_prompt_cache(file, *default_model().model, cache, {{"note", "hello"}});
  std::map<std::string, std::string> meta;
  CachedPrompt loaded = load_prompt_cache(file, *default_model().model, &meta);
  EXPECT_EQ(meta["note"], "hello");
  EXPECT_EQ(loaded.ids, cache.ids);
  // Every layer's keys and values come back bit for bit.
  namespace mx = mlx::core;
  const auto before = cache.cache->state(), after = loaded.cache->state();
  ASSERT_EQ(before.size(), after.size());
  const int n = static_cast<int>(cache.ids.size());
  for (size_t i = 0; i < before.size(); ++i) {
    mx::Shape stop = before[i].shape();
    stop[2] = n;
    EXPECT_EQ(to_vec(mx::slice(before[i], {0, 0, 0, 0}, stop)), to_vec(mx::slice(after[i], {0, 0, 0, 0}, stop)));
  }
  const std::vector<int> next = chat({"Write a haiku about the sea.", "Waves.", "Now one about hills."});
  const GenerationResult warm = run(next, std::move(loaded));
  EXPECT_GT(warm.stats.cached_tokens, static_cast<int>(a.size()) - 1);
  EXPECT_EQ(warm.tokens, run(next).tokens);
  // No temp file is left beside it.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(PromptCache, FilesOfAnotherModelOrFormatAreRefused) {
  CachedPrompt cache;
  run(chat({"Hi."}), {}, &cache, 2);
  auto dir = temp_dir("prompt-cache-bad");
  save_prompt_cache(dir / "a.cache", *default_model().model, cache);
  auto tiny = load_tiny("llama");
  try {
    load_prompt_cache(dir / "a.cache", *tiny);
    ADD_FAILURE() << "a cache of another model was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "junk.cache") << "not a cache";
  EXPECT_THROW(load_prompt_cache(dir / "junk.cache", *default_model().model), std::runtime_error);
  EXPECT_THROW(load_prompt_cache(dir / "missing.cache", *default_model().model), std::runtime_error);
  EXPECT_THROW(save_prompt_cache(dir / "empty.cache", *default_model().model, CachedPrompt{}), std::invalid_argument);
}

TEST(PromptCache, LogprobsAreTheModelsLogSoftmax) {
  const std::vector<int> prompt = chat({"The capital of France is"});
  std::vector<float> logits = analysis::next_token_logits(*default_model().model, prompt);
  double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (float l : logits) sum += std::exp(l - mx);
  const double lse = mx + std::log(sum);

  Generator g(default_model(), prompt, GenerateOptions{.max_tokens = 3, .logprobs = 5});
  auto step = g.next();
  ASSERT_TRUE(step);
  ASSERT_EQ(step->top_logprobs.size(), 5u);
  EXPECT_EQ(step->top_logprobs[0].first, step->token);  // greedy picks the most likely
  EXPECT_NEAR(step->logprob, logits[step->token] - lse, 1e-3);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_GE(step->top_logprobs[i - 1].second, step->top_logprobs[i].second);
    const int id = step->top_logprobs[i].first;
    EXPECT_NEAR(step->top_logprobs[i].second, logits[id] - lse, 1e-3);
  }
  Generator off(default_model(), prompt, GenerateOptions{.max_tokens = 1});
  EXPECT_TRUE(off.next()->top_logprobs.empty());
}

}  // namespace
}  // namespace lmlab::test
