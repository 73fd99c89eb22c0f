// Tool calls in a model's answer, in the format most open chat templates
// teach their models (Hermes, Qwen 2.5 and 3, SmolLM3):
//   <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
// turned into OpenAI's message.tool_calls. A block whose JSON does not parse
// or lacks a name stays in the text.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lmlab::server {

inline constexpr const char* kToolCallOpen = "<tool_call>";
inline constexpr const char* kToolCallClose = "</tool_call>";

struct ParsedAnswer {
  std::string content;  // the text outside the tool-call blocks (trimmed)
  nlohmann::json tool_calls = nlohmann::json::array();  // [{"id", "type", "function": {"name", "arguments"}}]
};

ParsedAnswer parse_tool_calls(const std::string& text);

// How much of `text` can be shown before a tool call may begin: up to the
// first "<tool_call>", or before a trailing partial "<tool_c".
size_t tool_call_safe_prefix(const std::string& text);

}  // namespace lmlab::server
