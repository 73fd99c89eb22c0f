// The OpenAI-compatible API's requests and responses: request bodies parsed
// and checked into the library's GenerateOptions (every field's type and
// range, with the field named in the error), and the JSON of responses and
// stream chunks built from Generator steps and results.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/generate.h"
#include "lmlab/messages.h"

namespace lmlab::server {

// What requests may ask for.
struct Limits {
  int default_max_tokens = 512;  // when a request gives none
  int max_tokens = 4096;         // a request asking for more is refused
  int max_prompt_tokens = 0;     // 0: the model's context length
};

struct ChatRequest {
  std::string model;
  Conversation conversation;
  GenerateOptions gen;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;
};

struct CompletionRequest {
  std::string model;
  std::optional<std::string> prompt_text;  // a string prompt
  std::vector<int> prompt_ids;             // or token ids
  GenerateOptions gen;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  int logprobs = -1;  // legacy: -1 off, else the top-n alternatives per token (0-5)
};

// Throw ApiError 400 naming the offending parameter.
ChatRequest parse_chat_request(const nlohmann::ordered_json& body, const Limits& limits);
CompletionRequest parse_completion_request(const nlohmann::ordered_json& body, const Limits& limits);

enum class Endpoint { Chat, Completion };

// Builds the JSON of one answer, streamed (chunks) or whole (response).
class ResponseBuilder {
 public:
  ResponseBuilder(Endpoint kind, std::string model, const Tokenizer& tok, int logprobs, bool legacy_logprobs);

  // Streaming: the chunk for one step (null when it carries nothing), the
  // role-opening chunk (chat), and the closing chunks (finish reason, then
  // usage when asked for).
  nlohmann::json opening_chunk() const;
  nlohmann::json step_chunk(const GenerationStep& step);
  std::vector<nlohmann::json> closing_chunks(const GenerationResult& r, bool include_usage) const;

  // Whole: every step seen through add(), then the response.
  void add(const GenerationStep& step);
  nlohmann::json response(const GenerationResult& r, const std::string& prefix = "") const;

  const std::string& id() const { return id_; }
  // The request offered tools: <tool_call> blocks in the answer become
  // message.tool_calls (streamed text is held back from the first tag on).
  void expect_tool_calls() { tools_ = true; }

 private:
  nlohmann::json logprob_entry(const GenerationStep& step) const;
  nlohmann::json chunk_base() const;
  nlohmann::json usage(const GenerationResult& r) const;
  std::string finish_reason(const GenerationResult& r) const;

  Endpoint kind_;
  std::string model_, id_;
  int64_t created_;
  const Tokenizer& tok_;
  int logprobs_;  // -1 off
  bool legacy_;   // completions' {tokens, token_logprobs, top_logprobs, text_offset}
  std::string text_;
  std::vector<GenerationStep> steps_;  // steps with logprobs (whole responses)
  bool tools_ = false;
  std::string held_;                   // streamed text held back while a tool call may be starting
};

// "lmlab-<version>": the system_fingerprint field.
std::string system_fingerprint();

}  // namespace lmlab::server
