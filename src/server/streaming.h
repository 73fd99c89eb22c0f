// Answers built from a Job's events. Streams are server-sent events: one
// chunk per piece, the closing chunks, then "data: [DONE]"; while nothing is
// ready a comment line keeps the connection checked, so a client that left
// is noticed at the next write and its generation cancelled. Whole answers
// wait for the end of the job; past the first seconds they write leading
// whitespace (valid before JSON) for the same check.
#pragma once

#include <atomic>
#include <memory>

#include <httplib.h>

#include "server/openai.h"
#include "server/scheduler.h"

namespace lmlab::server {

// `open` counts the answers still writing (shutdown waits for them).
void stream_answer(httplib::Response& res, std::atomic<int>& open, std::shared_ptr<Job> job,
                   std::shared_ptr<ResponseBuilder> rb, bool include_usage);

// `prefix` is echoed text put before the answer (completions' echo).
void whole_answer(httplib::Response& res, std::atomic<int>& open, std::shared_ptr<Job> job,
                  std::shared_ptr<ResponseBuilder> rb, std::string prefix = "");

}  // namespace lmlab::server
