// What every route shares: the server's state, JSON bodies in and out, the
// one place exceptions become error responses, and the API-key check.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "lmlab/loader.h"
#include "server/openai.h"
#include "server/scheduler.h"

namespace lmlab::server {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port
  std::string api_key;             // "": no key required
  std::string model_id;            // the name /v1/models lists ("": from the model path)
  SchedulerOptions scheduler;
  Limits limits;
  size_t max_body_bytes = size_t{8} << 20;
  int drain_seconds = 10;          // after SIGINT/SIGTERM, how long running answers may finish
  std::string web_dir;             // serve the lab from this folder instead of the built-in copy
  bool quiet = false;              // no request log on stderr
  std::string device = "cpu";      // shown by the lab
  std::string runs_dir;            // training runs the lab may chart ("": none)
};

struct LabState;  // lab.cpp: the surgery in progress
struct LabJobs;   // lab_sweep.cpp: the sweeps started from the lab

// The state routes share. The model is read by HTTP threads only through
// thread-safe parts (tokenizer, chat template); everything that runs it goes
// through the scheduler.
struct ServerContext {
  LoadedModel& model;
  Scheduler& scheduler;
  const ServeOptions& options;
  std::string model_id;
  std::chrono::system_clock::time_point started;
  std::shared_ptr<LabState> lab;
  std::shared_ptr<LabJobs> lab_jobs;
  std::atomic<int> open_answers{0};  // responses still writing a job's events
};

using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

// Runs `h`, turning any exception into an OpenAI-style JSON error response.
Handler guarded(Handler h);
// Adds the API-key check (when a key is set) in front of `h`.
Handler authorized(const ServerContext& c, Handler h);

void send_json(httplib::Response& res, int status, const nlohmann::json& body);
// The request body as JSON; ApiError 400 for malformed JSON or invalid UTF-8.
nlohmann::ordered_json parse_body(const httplib::Request& req);

void add_openai_routes(httplib::Server& svr, ServerContext& c);
void add_lab_routes(httplib::Server& svr, ServerContext& c);
void add_lab_sweep_routes(httplib::Server& svr, ServerContext& c);
void add_lab_run_routes(httplib::Server& svr, ServerContext& c);
// For the engine thread: whether a surgery edit of the lab is applied now.
bool lab_edit_applied(const ServerContext& c);
// Stops the lab's sweeps at their next point and waits for them (shutdown).
void stop_lab_jobs(ServerContext& c);
void add_web_routes(httplib::Server& svr, ServerContext& c);

// Serves until SIGINT or SIGTERM (then drains: no new connections, running
// answers get drain_seconds to finish, a second signal cuts them short).
// on_listening gets the URL once the socket is bound. Throws
// std::runtime_error when the address cannot be bound.
void serve(LoadedModel& m, const ServeOptions& o, const std::function<void(const std::string& url)>& on_listening);

}  // namespace lmlab::server
