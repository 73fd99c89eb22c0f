// The HTTP side of `lmlab serve`: cpp-httplib set up with the limits, the
// error table applied once per handler, JSON errors for unknown routes and
// oversized bodies, the API key, the request log and graceful shutdown.
#include "server/http.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "server/errors.h"

namespace lmlab::server {

using json = nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

Handler guarded(Handler h) {
  return [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    try {
      h(req, res);
    } catch (...) {
      ErrorReply e = error_reply(std::current_exception());
      send_json(res, e.status, e.body);
    }
  };
}

namespace {

// Compares in time independent of where the strings first differ.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Handler authorized(const ServerContext& c, Handler h) {
  if (c.options.api_key.empty()) return h;
  return [&c, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) != 0 || !same_secret(auth.substr(prefix.size()), c.options.api_key)) {
      res.set_header("WWW-Authenticate", "Bearer");
      throw ApiError(401, "authentication_error", "invalid_api_key",
                     "missing or wrong API key (send the header Authorization: Bearer KEY)");
    }
    h(req, res);
  };
}

nlohmann::ordered_json parse_body(const httplib::Request& req) {
  if (req.body.empty()) throw ApiError(400, "invalid_request_error", "invalid_json", "the request body is empty (send a JSON object)");
  try {
    return nlohmann::ordered_json::parse(req.body);
  } catch (const nlohmann::ordered_json::exception& e) {
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    throw ApiError(400, "invalid_request_error", "invalid_json", "the request body is not valid JSON: " + what);
  }
}

namespace {

void install_error_pages(httplib::Server& svr, const ServeOptions& o) {
  // Runs for statuses no handler set a body for: unknown routes and methods,
  // bodies over the limit (413), malformed HTTP (400).
  svr.set_error_handler([&o](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg, code;
    switch (res.status) {
      case 404: msg = fmt::format("no route {} {}", req.method, req.path), code = "not_found"; break;
      case 405: msg = fmt::format("{} is not allowed on {}", req.method, req.path), code = "method_not_allowed"; break;
      case 413: msg = fmt::format("the request body is larger than {} bytes (--max-body-bytes)", o.max_body_bytes),
                code = "body_too_large"; break;
      default: msg = fmt::format("HTTP {}", res.status), code = "http_error";
    }
    send_json(res, res.status, error_body(msg, "invalid_request_error", code));
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    ErrorReply e = error_reply(ep);
    send_json(res, e.status, e.body);
  });
}

void install_logger(httplib::Server& svr, const ServeOptions& o) {
  if (o.quiet) return;
  svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    fmt::print(stderr, "{} {} {} {}\n", req.remote_addr, req.method, req.path, res.status);
  });
}

std::string default_model_id(const LoadedModel& m) {
  std::filesystem::path p(m.path);
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();
  if (auto dot = name.rfind(".gguf"); dot != std::string::npos && dot + 5 == name.size()) name.resize(dot);
  return name.empty() ? "lmlab" : name;
}

// SIGINT and SIGTERM may arrive on any thread (MLX starts its own before
// main), so the handler only writes the signal's number to a pipe; this
// watcher reads it. The first stops new work (503) and lets queued and
// running answers finish for drain_seconds; a second signal or the deadline
// ends them as if stopped. Only then does the listener close: cpp-httplib
// ends open streams at stop().
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_shutdown_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &b, 1);
}

class ShutdownWatcher {
 public:
  ShutdownWatcher(httplib::Server& svr, ServerContext& c) {
    if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
      throw std::runtime_error("[serve] cannot create the signal pipe");
    struct sigaction sa {};
    sa.sa_handler = on_shutdown_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    thread_ = std::thread([this, &svr, &c] { run(svr, c); });
  }
  ~ShutdownWatcher() {
    done_ = true;
    thread_.join();
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
  }

 private:
  static bool idle(const ServerContext& c) {
    SchedulerStats s = c.scheduler.stats();
    return s.active == 0 && s.queued == 0 && c.open_answers == 0;
  }
  static int next_signal() {
    pollfd p{g_signal_pipe[0], POLLIN, 0};
    unsigned char b = 0;
    if (poll(&p, 1, 100) > 0 && read(g_signal_pipe[0], &b, 1) == 1) return b;
    return 0;
  }
  void run(httplib::Server& svr, ServerContext& c) {
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> drain_until, stop_at;
    while (!done_) {
      const int sig = next_signal();
      const auto now = Clock::now();
      if (sig > 0 && !drain_until) {
        fmt::print(stderr, "lmlab serve: {}: finishing the answers in progress (up to {} s; again to stop now)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", c.options.drain_seconds);
        c.scheduler.stop_accepting();
        drain_until = now + std::chrono::seconds(c.options.drain_seconds);
      } else if (drain_until && !stop_at && (sig > 0 || now > *drain_until || idle(c))) {
        c.scheduler.shutdown();  // what still runs ends now, with the text it has
        stop_at = now + std::chrono::seconds(2);
      }
      if (stop_at && (c.open_answers == 0 || now > *stop_at)) {
        svr.stop();
        return;
      }
    }
  }
  std::atomic<bool> done_{false};
  struct sigaction old_int_ {}, old_term_ {};
  std::thread thread_;
};

}  // namespace

void serve(LoadedModel& m, const ServeOptions& o, const std::function<void(const std::string&)>& on_listening) {
  // A client that hangs up mid-write must not end the process.
  signal(SIGPIPE, SIG_IGN);

  Scheduler scheduler(m, o.scheduler);
  ServerContext c{m, scheduler, o, o.model_id.empty() ? default_model_id(m) : o.model_id,
                  std::chrono::system_clock::now(), nullptr, nullptr};
  httplib::Server svr;
  // Every waiting or running request holds a thread; leave room for the
  // lab, health checks and the refusals of a full queue.
  const int threads = o.scheduler.slots + o.scheduler.max_queue + 8;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_payload_max_length(o.max_body_bytes);
  svr.set_keep_alive_timeout(2);
  install_error_pages(svr, o);
  install_logger(svr, o);
  add_openai_routes(svr, c);
  add_lab_routes(svr, c);
  add_lab_sweep_routes(svr, c);
  add_lab_run_routes(svr, c);
  add_web_routes(svr, c);

  int port = o.port;
  if (port == 0) port = svr.bind_to_any_port(o.host);
  else if (!svr.bind_to_port(o.host, port)) port = -1;
  if (port <= 0)
    throw std::runtime_error(fmt::format("[serve] cannot listen on {}:{} (in use, or not an address of this machine)",
                                         o.host, o.port));
  const std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  on_listening(fmt::format("http://{}:{}", host, port));
  {
    ShutdownWatcher watcher(svr, c);
    svr.listen_after_bind();
  }
  stop_lab_jobs(c);
  scheduler.shutdown();
}

}  // namespace lmlab::server
