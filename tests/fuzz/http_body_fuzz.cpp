// libFuzzer target for the request bodies of lmlab serve: the input is an
// HTTP body. Whatever parses as JSON goes through the chat and completion
// request parsers and, when a chat request is accepted, through the message
// checks and a ChatML template. The parsers may throw the server's ApiError
// (a 4xx answer) and rendering std::invalid_argument; anything else (a crash,
// a sanitizer report, another exception, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "lmlab/messages.h"
#include "server/errors.h"
#include "server/openai.h"

namespace {

const char* kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n'}}{% if message.tool_calls %}{{ message.tool_calls | tojson }}{% endif %}{% endfor %}"
    "{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = nlohmann::ordered_json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  static const lmlab::ChatTemplate tpl(kChatML);
  const lmlab::server::Limits limits;
  try {
    lmlab::server::ChatRequest r = lmlab::server::parse_chat_request(body, limits);
    lmlab::ChatOptions o{.add_generation_prompt = true, .bos_token = "", .eos_token = "",
                         .extra = r.conversation.template_kwargs};
    try {
      tpl.apply_ordered(r.conversation.messages, o, r.conversation.tools);
    } catch (const std::invalid_argument&) {
    }
  } catch (const lmlab::server::ApiError&) {
  }
  try {
    lmlab::server::parse_completion_request(body, limits);
  } catch (const lmlab::server::ApiError&) {
  }
  return 0;
}
