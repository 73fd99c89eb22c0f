#include "server/streaming.h"

#include "server/errors.h"
#include "server/http.h"

namespace lmlab::server {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// Cancels the job when the response ends before the job did (a write failed,
// the connection dropped or the server stopped).
// It also counts the answers still open, which shutdown waits for.
struct JobGuard {
  JobGuard(std::shared_ptr<Job> j, std::atomic<int>& open) : job(std::move(j)), open(open) { ++open; }
  ~JobGuard() {
    if (!done) job->cancel();
    --open;
  }
  std::shared_ptr<Job> job;
  std::atomic<int>& open;
  bool done = false;
};

}  // namespace

void stream_answer(httplib::Response& res, std::atomic<int>& open, std::shared_ptr<Job> job,
                   std::shared_ptr<ResponseBuilder> rb, bool include_usage) {
  auto guard = std::make_shared<JobGuard>(std::move(job), open);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto opened = std::make_shared<bool>(false);
  res.set_chunked_content_provider(
      "text/event-stream",
      [guard, rb, include_usage, opened](size_t, httplib::DataSink& sink) {
        if (!*opened) {
          *opened = true;
          json first = rb->opening_chunk();
          if (!first.is_null() && first["object"] == "chat.completion.chunk") {
            std::string s = sse(first);
            if (!sink.write(s.data(), s.size())) return false;
          }
        }
        std::optional<JobEvent> e = guard->job->wait(1000ms);
        std::string out;
        if (!e) out = ": keep-alive\n\n";
        else if (e->kind == JobEvent::Kind::Step) {
          json c = rb->step_chunk(e->step);
          if (c.is_null()) return true;
          out = sse(c);
        } else {
          if (e->kind == JobEvent::Kind::Done)
            for (const json& c : rb->closing_chunks(e->result, include_usage)) out += sse(c);
          else out = sse(error_reply(e->error).body);
          out += "data: [DONE]\n\n";
          guard->done = true;
          if (!sink.write(out.data(), out.size())) return false;
          sink.done();
          return true;
        }
        return sink.write(out.data(), out.size());
      },
      [guard](bool) {});
}

void whole_answer(httplib::Response& res, std::atomic<int>& open, std::shared_ptr<Job> job,
                  std::shared_ptr<ResponseBuilder> rb, std::string prefix) {
  auto guard = std::make_shared<JobGuard>(std::move(job), open);
  // Wait here for the first event: a failure before any token (a job that
  // cannot start) still gets its own status code.
  std::optional<JobEvent> first;
  while (!(first = guard->job->wait(1000ms))) {
  }
  if (first->kind == JobEvent::Kind::Failed) {
    guard->done = true;
    ErrorReply e = error_reply(first->error);
    send_json(res, e.status, e.body);
    return;
  }
  auto pending = std::make_shared<std::optional<JobEvent>>(std::move(first));
  auto checked = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  res.set_chunked_content_provider(
      "application/json",
      [guard, rb, pending, checked, prefix](size_t, httplib::DataSink& sink) {
        std::optional<JobEvent> e = std::exchange(*pending, std::nullopt);
        if (!e) e = guard->job->wait(1000ms);
        if (!e || e->kind == JobEvent::Kind::Step) {
          if (e) rb->add(e->step);
          // Every second, a space (JSON allows leading whitespace) checks
          // that the client is still there.
          const auto now = std::chrono::steady_clock::now();
          if (now - *checked < 1s) return true;
          *checked = now;
          return sink.write(" ", 1);
        }
        json body = e->kind == JobEvent::Kind::Done ? rb->response(e->result, prefix) : error_reply(e->error).body;
        std::string s = body.dump(-1, ' ', false, json::error_handler_t::replace);
        guard->done = true;
        if (!sink.write(s.data(), s.size())) return false;
        sink.done();
        return true;
      },
      [guard](bool) {});
}

}  // namespace lmlab::server
