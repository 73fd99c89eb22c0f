// libFuzzer target for the chat-template engine: the input is a template
// (optionally followed by a NUL and a JSON messages array). Parsing and
// rendering may throw std::invalid_argument; anything else (a crash, a
// sanitizer report, another exception, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "lmlab/chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string source = input;
  nlohmann::ordered_json messages = nlohmann::ordered_json::array({
      {{"role", "system"}, {"content", "Be brief."}},
      {{"role", "user"}, {"content", "Hi <b>\u00e9\n"}},
      {{"role", "assistant"}, {"content", "<think>x</think>ok"}, {"reasoning_content", nullptr}},
      {{"role", "tool"}, {"content", "{\"a\": [1, 2.5]}"}, {"tool_call_id", "abc123def"}},
  });
  size_t nul = input.find('\0');
  if (nul != std::string::npos) {
    source = input.substr(0, nul);
    auto parsed = nlohmann::ordered_json::parse(input.substr(nul + 1), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_array()) messages = std::move(parsed);
  }
  lmlab::ChatOptions opts;
  opts.bos_token = "<s>";
  opts.eos_token = "</s>";
  opts.extra = {{"enable_thinking", false}};
  nlohmann::ordered_json tools = nlohmann::ordered_json::array(
      {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}}});
  try {
    lmlab::ChatTemplate tpl(source);
    tpl.apply_ordered(messages, opts, tools);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
