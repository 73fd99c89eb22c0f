// ChatSession (lmlab chat's loop): a second turn reuses the first turn's
// cache and answers exactly as a cold run on the whole conversation; a saved
// session loaded in a new one continues identically without the prefill.
#include "lmlab/chat_session.h"

#include "analysis/lab_test_util.h"
#include "lmlab/messages.h"

namespace lmlab::test {
namespace {

const GenerateOptions kGreedy{.max_tokens = 16};

std::vector<int> cold_tokens(const nlohmann::ordered_json& messages) {
  const LoadedModel& m = default_model();
  RenderedPrompt p = render_conversation(m.tokenizer, *m.chat_template, make_conversation(messages));
  return generate(m, p.ids, kGreedy).tokens;
}

TEST(ChatSession, SecondTurnReusesTheCacheAndMatchesAColdRun) {
  ChatSession chat(default_model(), kGreedy, "You are terse.");
  const GenerationResult t1 = chat.send("Name a planet.");
  EXPECT_EQ(t1.stats.cached_tokens, 0);
  const std::vector<int> held = chat.cached_ids();
  EXPECT_GE(held.size() + 1, static_cast<size_t>(t1.stats.prompt_tokens) + t1.tokens.size());
  auto messages = chat.messages();
  messages.push_back({{"role", "user"}, {"content", "And a star?"}});
  const GenerationResult t2 = chat.send("And a star?");
  // Only what follows the cached prefix is prefilled: the new turn's tokens
  // (and the end of the reply the cache had not run yet).
  const LoadedModel& m = default_model();
  const std::vector<int> prompt2 = render_conversation(m.tokenizer, *m.chat_template, make_conversation(messages)).ids;
  EXPECT_EQ(t2.stats.cached_tokens, static_cast<int>(common_prefix(held, prompt2)));
  EXPECT_GE(t2.stats.cached_tokens + 1, t1.stats.prompt_tokens + static_cast<int>(t1.tokens.size()) - 1);
  EXPECT_EQ(t2.tokens, cold_tokens(messages));
  EXPECT_EQ(chat.messages().size(), 5u);  // system, 2 × (user, assistant)
  EXPECT_EQ(chat.messages().back()["content"], t2.text);
}

TEST(ChatSession, SavedSessionContinuesInAnotherSession) {
  auto dir = temp_dir("chat-session");
  ChatSession a(default_model(), kGreedy);
  a.send("Count to three.");
  a.save(dir / "s.cache");
  ChatSession b(default_model(), kGreedy, "a system message the file replaces");
  b.load(dir / "s.cache");
  EXPECT_EQ(b.messages(), a.messages());
  EXPECT_EQ(b.system(), "");
  const GenerationResult rb = b.send("Now to five.");
  const GenerationResult ra = a.send("Now to five.");
  EXPECT_EQ(rb.stats.cached_tokens, ra.stats.cached_tokens);
  EXPECT_GT(rb.stats.cached_tokens, 0);
  EXPECT_EQ(rb.tokens, ra.tokens);
}

TEST(ChatSession, ResetAndSystemStartOver) {
  ChatSession chat(default_model(), GenerateOptions{.max_tokens = 2});
  chat.send("Hi.");
  chat.set_system("Be formal.");
  EXPECT_EQ(chat.messages().size(), 1u);
  EXPECT_TRUE(chat.cached_ids().empty());
  chat.send("Hi.");
  chat.reset();
  EXPECT_EQ(chat.messages().size(), 1u);  // the system message stays
  EXPECT_THROW(chat.save(temp_dir("chat-empty") / "x"), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
