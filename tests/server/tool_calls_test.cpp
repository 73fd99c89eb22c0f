// Tool calls in answers: <tool_call> blocks parsed into OpenAI tool_calls
// (arguments as JSON text), malformed blocks left as text, and the streamed
// answer holding back everything from the first tag so clients never see a
// half-written call, then sending the calls and finish_reason "tool_calls".
#include "server/tool_calls.h"

#include "server/openai.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

using nlohmann::json;

TEST(ToolCalls, BlocksBecomeCalls) {
  auto a = server::parse_tool_calls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"get_time\", \"arguments\": \"{\\\"tz\\\": \\\"CET\\\"}\"}</tool_call>");
  ASSERT_EQ(a.tool_calls.size(), 2u);
  EXPECT_EQ(a.content, "Let me check.");
  EXPECT_EQ(a.tool_calls[0]["type"], "function");
  EXPECT_EQ(a.tool_calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(a.tool_calls[0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(a.tool_calls[1]["function"]["arguments"], "{\"tz\": \"CET\"}");
  EXPECT_TRUE(a.tool_calls[0]["id"].get<std::string>().starts_with("call_"));
  EXPECT_NE(a.tool_calls[0]["id"], a.tool_calls[1]["id"]);
}

TEST(ToolCalls, MalformedBlocksStayText) {
  const std::string text = "<tool_call>{not json}</tool_call> and <tool_call>{\"arguments\": {}}</tool_call>";
  auto a = server::parse_tool_calls(text);
  EXPECT_TRUE(a.tool_calls.empty());
  EXPECT_EQ(a.content, text);
  auto unclosed = server::parse_tool_calls("<tool_call>{\"name\": \"f\", \"arguments\": {}}");
  EXPECT_EQ(unclosed.tool_calls.size(), 1u);  // cut before its closing tag
  EXPECT_EQ(server::parse_tool_calls("plain answer").content, "plain answer");
}

TEST(ToolCalls, SafePrefixStopsBeforeATag) {
  EXPECT_EQ(server::tool_call_safe_prefix("hello"), 5u);
  EXPECT_EQ(server::tool_call_safe_prefix("hello <tool_c"), 6u);
  EXPECT_EQ(server::tool_call_safe_prefix("a<tool_call>{"), 1u);
  EXPECT_EQ(server::tool_call_safe_prefix("a < b"), 5u);
}

TEST(ToolCalls, StreamHoldsTheCallBackAndSendsItAtTheEnd) {
  const Tokenizer tok = load_tokenizer("");
  server::ResponseBuilder rb(server::Endpoint::Chat, "m", tok, -1, false);
  rb.expect_tool_calls();
  std::string shown;
  for (const char* piece : {"Sure. <tool", "_call>{\"name\": \"f\", ", "\"arguments\": {\"x\": 1}}</tool_call>"}) {
    json c = rb.step_chunk(GenerationStep{.token = 1, .text = piece, .logprob = 0, .top_logprobs = {}});
    if (!c.is_null()) shown += c["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(shown, "Sure. ");
  GenerationResult r;
  r.text = "Sure. <tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}</tool_call>";
  r.stats.finish_reason = "stop";
  auto closing = rb.closing_chunks(r, false);
  ASSERT_EQ(closing.size(), 2u);
  const json& calls = closing[0]["choices"][0]["delta"]["tool_calls"];
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["name"], "f");
  EXPECT_EQ(closing[1]["choices"][0]["finish_reason"], "tool_calls");
  json whole = rb.response(r);
  EXPECT_TRUE(whole["choices"][0]["message"]["content"] == "Sure.");
  EXPECT_EQ(whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "tool_calls");
}

TEST(ToolCalls, WithoutToolsTheTextPassesThrough) {
  const Tokenizer tok = load_tokenizer("");
  server::ResponseBuilder rb(server::Endpoint::Chat, "m", tok, -1, false);
  json c = rb.step_chunk(GenerationStep{.token = 1, .text = "<tool_call>{}", .logprob = 0, .top_logprobs = {}});
  EXPECT_EQ(c["choices"][0]["delta"]["content"], "<tool_call>{}");
}

}  // namespace
}  // namespace lmlab::test
