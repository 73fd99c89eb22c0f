// OpenAI-style conversations: every malformed field refused with its path
// named, the normalisations templates rely on (content parts joined, null
// content, tool-call arguments parsed), and rendering that matches the
// template applied by hand. transformers' own rendering is the oracle in
// tests/cli/messages_oracle.py.
#include "lmlab/messages.h"

#include "lmlab/generate.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

using ojson = nlohmann::ordered_json;

const LoadedModel& model() {
  static LoadedModel m = load_model(cpu_context(), {});
  return m;
}

void expect_error(const std::string& body, const std::string& needle) {
  try {
    parse_conversation(ojson::parse(body));
    ADD_FAILURE() << "accepted " << body;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Messages, MalformedFieldsAreNamed) {
  expect_error(R"([])", "body: expected an object");
  expect_error(R"({})", "messages: missing");
  expect_error(R"({"messages": {}})", "messages: expected an array");
  expect_error(R"({"messages": []})", "messages: empty");
  expect_error(R"({"messages": [3]})", "messages[0]: expected an object");
  expect_error(R"({"messages": [{"content": "hi"}]})", "messages[0].role: missing");
  expect_error(R"({"messages": [{"role": 1, "content": "hi"}]})", "messages[0].role: expected a non-empty string");
  expect_error(R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content: expected a string");
  expect_error(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
               "messages[0].content[0].type: \"image_url\" parts are not supported");
  expect_error(R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", "messages[0].content[0].text");
  expect_error(R"({"messages": [{"role": "assistant", "tool_calls": {}}]})", "messages[0].tool_calls: expected an array");
  expect_error(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]})",
               "messages[0].tool_calls[0].function.arguments: not valid JSON");
  expect_error(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]})",
               "messages[0].tool_calls[0].function.name");
  expect_error(R"({"messages": [{"role": "tool", "content": "1", "tool_call_id": 7}]})", "messages[0].tool_call_id");
  expect_error(R"({"messages": [{"role": "user", "content": "x"}], "tools": {}})", "tools: expected an array");
  expect_error(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
               "tools[0].function");
  expect_error(R"({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": []})",
               "chat_template_kwargs");
}

TEST(Messages, NormalisedForTemplates) {
  Conversation c = parse_conversation(ojson::parse(R"({"messages": [
      {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"C\"}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "21"}],
    "tools": [], "chat_template_kwargs": {"enable_thinking": false}})"));
  EXPECT_EQ(c.messages[0]["content"], "Hello, world");
  EXPECT_EQ(c.messages[1]["content"], "");
  const ojson& args = c.messages[1]["tool_calls"][0]["function"]["arguments"];
  ASSERT_TRUE(args.is_object());
  EXPECT_EQ(args.dump(), R"({"city":"Paris","unit":"C"})");  // key order kept
  EXPECT_TRUE(c.tools.is_null());  // an empty list renders as no tools, as in transformers
  EXPECT_EQ(c.template_kwargs["enable_thinking"], false);
}

TEST(Messages, RenderingMatchesTheTemplateAppliedByHand) {
  const LoadedModel& m = model();
  ASSERT_TRUE(m.chat_template);
  ojson messages = ojson::parse(R"([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "What is 2+2?"},
                                    {"role": "assistant", "content": "4"},
                                    {"role": "user", "content": "And 3+3?"}])");
  for (bool gen : {true, false}) {
    RenderedPrompt r = render_conversation(m.tokenizer, *m.chat_template, make_conversation(messages), gen);
    ChatOptions o{.add_generation_prompt = gen, .bos_token = m.tokenizer.bos_token(),
                  .eos_token = m.tokenizer.eos_token()};
    const std::string text = m.chat_template->apply(nlohmann::json::parse(messages.dump()), o);
    EXPECT_EQ(r.text, text);
    EXPECT_EQ(r.ids, m.tokenizer.encode(text, /*add_special_tokens=*/false));
    EXPECT_EQ(r.text.ends_with("<|im_start|>assistant\n"), gen) << r.text;
  }
  // build_chat_prompt (generate's chat prompts) is the same rendering.
  EXPECT_EQ(build_chat_prompt(m, nlohmann::json::parse(messages.dump())),
            render_conversation(m.tokenizer, *m.chat_template, make_conversation(messages)).ids);
}

}  // namespace
}  // namespace lmlab::test
