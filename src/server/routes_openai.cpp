// The OpenAI-compatible routes: GET /v1/models, POST /v1/chat/completions and
// /v1/completions (also without the /v1 prefix, as mlx_lm.server answers),
// and GET /health.
#include <fmt/format.h>

#include "server/errors.h"
#include "server/http.h"
#include "server/lab_json.h"
#include "server/streaming.h"

namespace lmlab::server {

namespace {

using json = nlohmann::json;

void check_model(const ServerContext& c, const std::string& requested) {
  if (requested.empty() || requested == c.model_id || requested == c.model.path) return;
  throw ApiError(404, "invalid_request_error", "model_not_found",
                 fmt::format("the model '{}' does not exist here; this server has '{}'", requested, c.model_id),
                 "model");
}

void check_prompt(const ServerContext& c, const std::vector<int>& ids) {
  if (ids.empty()) throw ApiError(400, "invalid_request_error", "empty_prompt", "the prompt has no tokens", "prompt");
  const int ctx = context_length(c.model);
  int limit = ctx > 0 ? ctx - 1 : 0;
  if (c.options.limits.max_prompt_tokens > 0 && (limit == 0 || c.options.limits.max_prompt_tokens < limit))
    limit = c.options.limits.max_prompt_tokens;
  if (limit > 0 && static_cast<int>(ids.size()) > limit)
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   fmt::format("the prompt has {} tokens; this server takes at most {} (model context {})",
                               ids.size(), limit, ctx),
                   "messages");
  const int vocab = c.model.tokenizer.vocab_size();
  for (int id : ids)
    if (id < 0 || id >= vocab)
      throw ApiError(400, "invalid_request_error", "invalid_token",
                     fmt::format("token id {} is outside the vocabulary (0..{})", id, vocab - 1), "prompt");
}

void chat_completions(ServerContext& c, const httplib::Request& req, httplib::Response& res) {
  ChatRequest r = parse_chat_request(parse_body(req), c.options.limits);
  check_model(c, r.model);
  if (!c.model.chat_template)
    throw ApiError(400, "invalid_request_error", "no_chat_template",
                   "this model has no chat template; use /v1/completions with a plain prompt");
  RenderedPrompt p = render_conversation(c.model.tokenizer, *c.model.chat_template, r.conversation);
  check_prompt(c, p.ids);
  auto rb = std::make_shared<ResponseBuilder>(Endpoint::Chat, c.model_id, c.model.tokenizer, r.gen.logprobs, false);
  if (!r.conversation.tools.is_null()) rb->expect_tool_calls();
  auto job = c.scheduler.submit({std::move(p.ids), r.gen});
  if (r.stream) stream_answer(res, c.open_answers, job, rb, r.include_usage);
  else whole_answer(res, c.open_answers, job, rb);
}

void completions(ServerContext& c, const httplib::Request& req, httplib::Response& res) {
  CompletionRequest r = parse_completion_request(parse_body(req), c.options.limits);
  check_model(c, r.model);
  std::vector<int> ids = r.prompt_text ? c.model.tokenizer.encode(*r.prompt_text, /*add_special_tokens=*/true)
                                       : r.prompt_ids;
  check_prompt(c, ids);
  std::string echo;
  if (r.echo) echo = r.prompt_text ? *r.prompt_text : c.model.tokenizer.decode(ids);
  auto rb = std::make_shared<ResponseBuilder>(Endpoint::Completion, c.model_id, c.model.tokenizer, r.logprobs, true);
  if (r.stream && r.echo)
    throw ApiError(400, "invalid_request_error", "invalid_value", "echo is not supported with stream", "echo");
  auto job = c.scheduler.submit({std::move(ids), r.gen});
  if (r.stream) {
    stream_answer(res, c.open_answers, job, rb, r.include_usage);
  } else {
    whole_answer(res, c.open_answers, job, rb, echo);
  }
}

json models_list(const ServerContext& c) {
  const auto created = std::chrono::duration_cast<std::chrono::seconds>(c.started.time_since_epoch()).count();
  return {{"object", "list"},
          {"data", json::array({{{"id", c.model_id},
                                 {"object", "model"},
                                 {"created", created},
                                 {"owned_by", "lmlab"},
                                 {"context_length", context_length(c.model)},
                                 {"path", c.model.path}}})}};
}

}  // namespace

void add_openai_routes(httplib::Server& svr, ServerContext& c) {
  auto post = [&](const std::string& path, void (*fn)(ServerContext&, const httplib::Request&, httplib::Response&)) {
    Handler h = guarded(authorized(c, [&c, fn](const httplib::Request& req, httplib::Response& res) { fn(c, req, res); }));
    svr.Post(path, h);
    svr.Post("/v1" + path, h);
  };
  post("/chat/completions", chat_completions);
  post("/completions", completions);
  Handler models = guarded(authorized(c, [&c](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, models_list(c));
  }));
  svr.Get("/v1/models", models);
  svr.Get("/models", models);
  svr.Get("/health", [&c](const httplib::Request&, httplib::Response& res) {
    json h = lab_json::scheduler(c.scheduler.stats());
    h["status"] = "ok";
    send_json(res, 200, h);
  });
}

}  // namespace lmlab::server
