// The server's engine and request handling without HTTP: generations run in
// turn on the engine thread give exactly the tokens generate() gives alone,
// lab calls run between rounds, a full queue and a shutdown refuse with 503,
// a cancelled job stops early, the prompt cache serves a repeated prompt;
// request parsing fills GenerateOptions and names a bad field; the error
// table maps each exception type to its status.
#include <thread>

#include "analysis/lab_test_util.h"
#include "lmlab/messages.h"
#include "server/errors.h"
#include "server/openai.h"
#include "server/scheduler.h"

namespace lmlab::test {
namespace {

using namespace std::chrono_literals;
using server::JobEvent;
using ojson = nlohmann::ordered_json;

std::vector<int> prompt(const std::string& text) { return build_prompt(default_model(), text, "", true); }

GenerationResult drain(server::Job& job, std::string* text = nullptr) {
  while (true) {
    auto e = job.wait(60s);
    if (!e) throw std::runtime_error("no event within 60 s");
    if (e->kind == JobEvent::Kind::Step && text) *text += e->step.text;
    if (e->kind == JobEvent::Kind::Done) return e->result;
    if (e->kind == JobEvent::Kind::Failed) std::rethrow_exception(e->error);
  }
}

TEST(Scheduler, InterleavedGenerationsEqualSoloRuns) {
  server::Scheduler s(default_model(), {.slots = 4, .max_queue = 8, .prompt_cache_bytes = 0});
  const std::vector<std::string> asks = {"Name a colour.", "Count to five.", "Say hello.", "Name a fish.", "Name a city."};
  std::vector<std::shared_ptr<server::Job>> jobs;
  for (const auto& a : asks) jobs.push_back(s.submit({prompt(a), GenerateOptions{.max_tokens = 12}}));
  for (size_t i = 0; i < asks.size(); ++i) {
    std::string text;
    const GenerationResult r = drain(*jobs[i], &text);
    const GenerationResult solo = generate(default_model(), prompt(asks[i]), GenerateOptions{.max_tokens = 12});
    EXPECT_EQ(r.tokens, solo.tokens) << asks[i];
    EXPECT_EQ(text, solo.text) << asks[i];
  }
  const server::SchedulerStats st = s.stats();
  EXPECT_EQ(st.completed, 5);
  EXPECT_EQ(st.active, 0);
}

TEST(Scheduler, CallsRunOnTheEngineAndRethrow) {
  server::Scheduler s(default_model(), {});
  const auto engine = s.call([](LoadedModel&) { return std::this_thread::get_id(); });
  EXPECT_NE(engine, std::this_thread::get_id());
  EXPECT_EQ(s.call([](LoadedModel& m) { return m.tokenizer.vocab_size(); }), default_model().tokenizer.vocab_size());
  EXPECT_THROW(s.call([](LoadedModel&) -> int { throw std::invalid_argument("bad"); }), std::invalid_argument);
}

TEST(Scheduler, FullQueueAndShutdownRefuse) {
  server::Scheduler s(default_model(), {.slots = 1, .max_queue = 1, .prompt_cache_bytes = 0});
  GenerateOptions long_run{.max_tokens = 64, .stop_at_eos = false};
  auto a = s.submit({prompt("Tell a long story."), long_run});
  auto first = a->wait(60s);  // a runs now
  ASSERT_TRUE(first && first->kind == JobEvent::Kind::Step);
  auto b = s.submit({prompt("Tell another story."), long_run});  // b waits
  for (int i = 0; i < 3; ++i) {
    try {
      s.submit({prompt("One more."), long_run});
      ADD_FAILURE() << "a full queue took a job";
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status, 503);
      EXPECT_EQ(e.code, "server_busy");
    }
  }
  b->cancel();  // dropped from the queue
  a->cancel();  // stopped at its next step
  EXPECT_LT(drain(*a).tokens.size(), 64u);
  try {
    drain(*b);
    ADD_FAILURE() << "a job cancelled in the queue ran";
  } catch (const server::ApiError& e) {
    EXPECT_EQ(e.code, "cancelled");
  }
  EXPECT_EQ(s.stats().cancelled, 2);
  s.shutdown();
  EXPECT_THROW(s.submit({prompt("Late."), long_run}), server::ApiError);
}

TEST(Scheduler, RepeatedPromptIsServedFromTheCache) {
  server::Scheduler s(default_model(), {});
  auto first = s.submit({prompt("Name a planet."), GenerateOptions{.max_tokens = 8}});
  const GenerationResult r1 = drain(*first);
  auto second = s.submit({prompt("Name a planet."), GenerateOptions{.max_tokens = 8}});
  const GenerationResult r2 = drain(*second);
  EXPECT_EQ(r1.stats.cached_tokens, 0);
  EXPECT_EQ(r2.stats.cached_tokens, static_cast<int>(prompt("Name a planet.").size()) - 1);
  EXPECT_EQ(r2.tokens, r1.tokens);
  EXPECT_EQ(s.stats().prompt_cache.hits, 1);
  EXPECT_EQ(s.stats().prompt_cache.tokens_reused, r2.stats.cached_tokens);  // never the last token
}

TEST(OpenAIRequests, FieldsFillGenerateOptions) {
  server::Limits limits{.default_max_tokens = 100, .max_tokens = 200};
  server::ChatRequest r = server::parse_chat_request(ojson::parse(R"({
      "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 7,
      "temperature": 0.5, "top_p": 0.9, "top_k": 3, "min_p": 0.1, "seed": 42, "stop": "x",
      "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 4})"), limits);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.gen.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.gen.sampler.temp, 0.5f);
  EXPECT_FLOAT_EQ(r.gen.sampler.top_p, 0.9f);
  EXPECT_EQ(r.gen.sampler.top_k, 3);
  EXPECT_EQ(*r.gen.sampler.seed, 42u);
  EXPECT_EQ(r.gen.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.gen.logprobs, 4);
  EXPECT_EQ(server::parse_chat_request(ojson::parse(R"({"messages": [{"role": "user", "content": "x"}]})"), limits)
                .gen.max_tokens, 100);
  auto c = server::parse_completion_request(ojson::parse(R"({"prompt": [5, 6], "logprobs": 2, "echo": true})"), limits);
  EXPECT_EQ(c.prompt_ids, (std::vector<int>{5, 6}));
  EXPECT_EQ(c.gen.logprobs, 2);
  try {
    server::parse_chat_request(ojson::parse(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 201})"), limits);
    ADD_FAILURE();
  } catch (const server::ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "max_tokens");
  }
}

TEST(OpenAIRequests, ErrorTable) {
  auto status = [](auto ex) { return server::error_reply(std::make_exception_ptr(ex)).status; };
  EXPECT_EQ(status(std::invalid_argument("x")), 400);
  EXPECT_EQ(status(Unsupported("x")), 501);
  EXPECT_EQ(status(std::runtime_error("x")), 500);
  EXPECT_EQ(status(server::ApiError(404, "invalid_request_error", "model_not_found", "x")), 404);
  const auto body = server::error_reply(std::make_exception_ptr(std::invalid_argument("bad thing"))).body;
  EXPECT_EQ(body["error"]["message"], "bad thing");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
}

}  // namespace
}  // namespace lmlab::test
