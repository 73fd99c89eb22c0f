#include "server/tool_calls.h"

#include <cstring>
#include <random>

#include <fmt/format.h>

namespace lmlab::server {

namespace {

using json = nlohmann::json;

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("call_{:016x}", rng());
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// One block's JSON as an OpenAI tool call, or null.
json to_call(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return nullptr;
  json args = j.contains("arguments") ? j["arguments"] : j.value("parameters", json::object());
  return {{"id", call_id()},
          {"type", "function"},
          {"function", {{"name", j["name"]}, {"arguments", args.is_string() ? args.get<std::string>() : args.dump()}}}};
}

}  // namespace

ParsedAnswer parse_tool_calls(const std::string& text) {
  ParsedAnswer out;
  std::string content;
  size_t pos = 0;
  const size_t open_len = std::strlen(kToolCallOpen), close_len = std::strlen(kToolCallClose);
  while (true) {
    const size_t open = text.find(kToolCallOpen, pos);
    if (open == std::string::npos) break;
    size_t close = text.find(kToolCallClose, open + open_len);
    // A last block the answer did not close (cut by max_tokens or EOS) is still tried.
    const size_t body_end = close == std::string::npos ? text.size() : close;
    json call = to_call(text.substr(open + open_len, body_end - open - open_len));
    const size_t next = close == std::string::npos ? text.size() : close + close_len;
    content += text.substr(pos, open - pos);
    if (call.is_null()) content += text.substr(open, next - open);
    else out.tool_calls.push_back(std::move(call));
    pos = next;
  }
  content += text.substr(std::min(pos, text.size()));
  out.content = out.tool_calls.empty() ? text : trim(content);
  return out;
}

size_t tool_call_safe_prefix(const std::string& text) {
  const size_t open = text.find(kToolCallOpen);
  if (open != std::string::npos) return open;
  const std::string tag = kToolCallOpen;
  for (size_t n = std::min(tag.size() - 1, text.size()); n > 0; --n)
    if (text.compare(text.size() - n, n, tag, 0, n) == 0) return text.size() - n;
  return text.size();
}

}  // namespace lmlab::server
