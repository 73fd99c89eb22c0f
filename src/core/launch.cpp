// Running `lmlab launch`: start every rank in its own process group, copy the
// launcher's stdin to each, forward their output, and end the job when one
// rank fails, so that a peer blocked in a collective never waits for a rank
// that is gone (mlx.launch's _launch_with_io does the same in Python).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "lmlab/launch.h"

extern char** environ;

namespace lmlab {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kGrace = std::chrono::seconds(3);       // SIGTERM, then SIGKILL
constexpr auto kDrain = std::chrono::seconds(2);       // output of exited ranks' children
constexpr int kPollMs = 100;

// One output stream of a rank: passed through, or split into prefixed lines.
class Forwarder {
 public:
  Forwarder(int rank, int fd, bool raw) : prefix_(fmt::format("[rank {}] ", rank)), fd_(fd), raw_(raw) {}

  void feed(std::string_view data, const LaunchSink& sink) {
    if (raw_) return sink(fd_, data);
    partial_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1)
      sink(fd_, prefix_ + partial_.substr(start, nl + 1 - start));
    partial_.erase(0, start);
  }
  void finish(const LaunchSink& sink) {
    if (!partial_.empty()) sink(fd_, prefix_ + partial_ + "\n");
    partial_.clear();
  }

 private:
  std::string prefix_, partial_;
  int fd_;
  bool raw_;
};

struct Rank {
  explicit Rank(RankPlan p)
      : plan(std::move(p)), out_fwd(plan.rank, 1, /*raw=*/plan.rank == 0), err_fwd(plan.rank, 2, /*raw=*/false) {}
  RankPlan plan;
  Forwarder out_fwd, err_fwd;
  pid_t pid = -1;
  int out = -1, err = -1, in = -1;  // the launcher's ends of the rank's pipes
  std::string to_send;              // stdin not yet written
  bool running = false;
  RankExit exit;
  Clock::time_point start;
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("signal {} (SIG{})", sig, abbrev) : fmt::format("signal {}", sig);
}

// "rank 1 was killed by signal 9 (SIGKILL)"; `of` > 0 adds "of N" after the rank.
std::string describe(const RankExit& e, size_t of = 0) {
  const std::string who = of ? fmt::format("rank {} of {}", e.rank, of) : fmt::format("rank {}", e.rank);
  return e.signal ? fmt::format("{} was killed by {}", who, signal_name(e.signal))
                  : fmt::format("{} exited with status {}", who, e.status);
}

// The launcher's environment without the variables the plan sets, then the plan's.
std::vector<std::string> environment_for(const RankPlan& p) {
  std::set<std::string> overridden;
  for (const auto& [k, _] : p.env) overridden.insert(k);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (!overridden.count(std::string(kv.substr(0, kv.find('='))))) env.emplace_back(kv);
  }
  for (const auto& [k, v] : p.env) env.push_back(k + "=" + v);
  return env;
}

// fork + exec with the rank's pipes; an exec failure comes back through a
// close-on-exec pipe as errno, so it is reported here rather than as exit 127.
void spawn(Rank& r) {
  std::vector<std::string> env = environment_for(r.plan);
  std::vector<char*> argv, envp;
  for (auto& a : r.plan.argv) argv.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  int in[2], out[2], err[2], status[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC) || ::pipe2(status, O_CLOEXEC))
    throw std::runtime_error(fmt::format("[launch] cannot create pipes for rank {}: {}", r.plan.rank, std::strerror(errno)));
  const pid_t pid = ::fork();
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);  // an ignored signal stays ignored across exec
    ::dup2(in[0], 0), ::dup2(out[1], 1), ::dup2(err[1], 2);
    ::execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    (void)!::write(status[1], &e, sizeof e);
    ::_exit(127);
  }
  for (int fd : {in[0], out[1], err[1], status[1]}) ::close(fd);
  if (pid < 0) {
    for (int fd : {in[1], out[0], err[0], status[0]}) ::close(fd);
    throw std::runtime_error(fmt::format("[launch] cannot start rank {}: {}", r.plan.rank, std::strerror(errno)));
  }
  ::setpgid(pid, pid);  // also here, so that a kill right after fork reaches the group
  int child_errno = 0;
  const ssize_t got = ::read(status[0], &child_errno, sizeof child_errno);
  ::close(status[0]);
  r.pid = pid;
  r.in = in[1], r.out = out[0], r.err = err[0];
  for (int fd : {r.in, r.out, r.err}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  r.running = true;
  r.start = Clock::now();
  r.exit.rank = r.plan.rank;
  r.exit.pid = pid;
  if (got == sizeof child_errno)
    throw std::runtime_error(fmt::format("[launch] cannot run '{}' for rank {}: {}", r.plan.argv[0], r.plan.rank,
                                         std::strerror(child_errno)));
}

void signal_all(std::vector<Rank>& ranks, int sig, bool mark_stopped) {
  for (auto& r : ranks)
    if (r.running) {
      ::kill(-r.pid, sig);
      if (mark_stopped) r.exit.stopped = true;
    }
}

// Reads what a pipe holds now into the forwarder; closes it at EOF.
void pump(int& fd, Forwarder& fwd, const LaunchSink& sink) {
  char buf[65536];
  while (fd >= 0) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) fwd.feed(std::string_view(buf, static_cast<size_t>(n)), sink);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_fd(fd);
    else return;
  }
}

// Writes pending stdin; a rank that closed its stdin just stops receiving it.
void feed_stdin(Rank& r) {
  while (r.in >= 0 && !r.to_send.empty()) {
    const ssize_t n = ::write(r.in, r.to_send.data(), r.to_send.size());
    if (n > 0) r.to_send.erase(0, static_cast<size_t>(n));
    else if (errno == EAGAIN) return;
    else if (errno != EINTR) close_fd(r.in), r.to_send.clear();
  }
}

// Collects ranks that have exited; returns those that failed, worst first
// (killed by a signal before exited non-zero: a peer that lost its connection
// exits with an error, the rank that caused it usually died of a signal).
std::vector<Rank*> reap(std::vector<Rank>& ranks) {
  std::vector<Rank*> failed;
  for (auto& r : ranks) {
    if (!r.running) continue;
    int st = 0;
    rusage ru{};
    if (::wait4(r.pid, &st, WNOHANG, &ru) != r.pid) continue;
    r.running = false;
    r.exit.max_rss_kb = ru.ru_maxrss;
    r.exit.seconds = std::chrono::duration<double>(Clock::now() - r.start).count();
    if (WIFSIGNALED(st)) r.exit.signal = WTERMSIG(st);
    else r.exit.status = WEXITSTATUS(st);
    if (r.exit.signal || r.exit.status != 0) failed.push_back(&r);
  }
  std::stable_sort(failed.begin(), failed.end(), [](Rank* a, Rank* b) { return a->exit.signal && !b->exit.signal; });
  return failed;
}

// Removes a file when the launch ends, however it ends.
struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// Writing to a rank that has exited must give EPIPE, not kill the launcher:
// SIGPIPE is ignored while a launch runs, and restored after.
struct IgnoreSigpipe {
  struct sigaction old {};
  IgnoreSigpipe() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, &old);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &old, nullptr); }
};

// Reserves the hostfile's name first, so the plan can name it.
std::string reserve_name() {
  std::string templ = (std::filesystem::temp_directory_path() / "lmlab-launch-XXXXXX").string();
  int fd = ::mkstemp(templ.data());
  if (fd < 0) throw std::runtime_error(fmt::format("[launch] cannot create a file in {}: {}",
                                                   std::filesystem::temp_directory_path().string(), std::strerror(errno)));
  ::close(fd);
  return templ;
}

class Supervisor {
 public:
  Supervisor(std::vector<Rank>& ranks, const LaunchSink& sink, const std::atomic<int>* interrupt, bool forward_stdin)
      : ranks_(ranks), sink_(sink), interrupt_(interrupt), stdin_open_(forward_stdin && ::fcntl(0, F_GETFD) != -1) {}

  LaunchResult run() {
    while (step()) {
    }
    LaunchResult res;
    for (auto& r : ranks_) {
      r.out_fwd.finish(sink_), r.err_fwd.finish(sink_);
      for (int* fd : {&r.in, &r.out, &r.err}) close_fd(*fd);
      res.ranks.push_back(r.exit);
    }
    res.failed = failed_;
    res.interrupted = interrupted_;
    return res;
  }

 private:
  // One round of poll, forwarding and reaping; false once the job is over.
  bool step() {
    std::vector<pollfd> fds;
    if (stdin_open_ && !stopping_) fds.push_back({0, POLLIN, 0});
    for (auto& r : ranks_) {
      for (int fd : {r.out, r.err})
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
      if (r.in >= 0 && !r.to_send.empty()) fds.push_back({r.in, POLLOUT, 0});
    }
    ::poll(fds.data(), fds.size(), kPollMs);
    if (stdin_open_ && !stopping_ && !fds.empty() && fds[0].fd == 0 && fds[0].revents) read_stdin();
    for (auto& r : ranks_) {
      pump(r.out, r.out_fwd, sink_);
      pump(r.err, r.err_fwd, sink_);
      feed_stdin(r);
      if (!stdin_open_ && r.to_send.empty()) close_fd(r.in);
    }
    for (Rank* f : reap(ranks_))
      if (!stopping_) stop(f->plan.rank, SIGTERM);
    if (interrupt_ && interrupt_->load() && !stopping_) {
      interrupted_ = interrupt_->load();
      stop(-1, interrupted_);
    }
    const auto now = Clock::now();
    if (stopping_ && now >= kill_at_) {
      signal_all(ranks_, SIGKILL, /*mark_stopped=*/false);
      kill_at_ = now + kGrace;
    }
    const bool any_running = std::any_of(ranks_.begin(), ranks_.end(), [](auto& r) { return r.running; });
    if (any_running) return true;
    if (!all_exited_) all_exited_ = true, drain_until_ = now + kDrain;
    const bool open = std::any_of(ranks_.begin(), ranks_.end(), [](auto& r) { return r.out >= 0 || r.err >= 0; });
    return open && now < drain_until_;
  }

  void read_stdin() {
    char buf[65536];
    const ssize_t n = ::read(0, buf, sizeof buf);
    if (n > 0) {
      for (auto& r : ranks_)
        if (r.in >= 0) r.to_send.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      stdin_open_ = false;
    }
  }

  void stop(int failed_rank, int sig) {
    stopping_ = true;
    if (failed_rank >= 0) failed_ = failed_rank;
    signal_all(ranks_, sig, /*mark_stopped=*/true);
    kill_at_ = Clock::now() + kGrace;
  }

  std::vector<Rank>& ranks_;
  const LaunchSink& sink_;
  const std::atomic<int>* interrupt_;
  bool stdin_open_;
  bool stopping_ = false, all_exited_ = false;
  std::optional<int> failed_;
  int interrupted_ = 0;
  Clock::time_point kill_at_, drain_until_;
};

}  // namespace

int LaunchResult::exit_code() const {
  if (interrupted) return 128 + interrupted;
  if (!failed) return 0;
  const RankExit& e = ranks[*failed];
  return e.signal ? 128 + e.signal : e.status;
}

std::string LaunchResult::failure() const {
  if (!failed && !interrupted) return "";
  std::string line = interrupted ? fmt::format("[launch] interrupted by {}", signal_name(interrupted))
                                 : "[launch] " + describe(ranks[*failed], ranks.size());
  std::vector<std::string> stopped;
  for (const auto& e : ranks) {
    if (failed && e.rank == *failed) continue;
    if (e.stopped) stopped.push_back(std::to_string(e.rank));
    else if (e.signal || e.status != 0) line += "; " + describe(e);
  }
  if (!stopped.empty())
    line += fmt::format("; stopped rank{} {}", stopped.size() > 1 ? "s" : "", fmt::join(stopped, ", "));
  return line;
}

LaunchResult launch(const LaunchOptions& opts, const LaunchSink& sink, const std::atomic<int>* interrupt) {
  const bool ring = opts.backend == "ring";
  const std::string hostfile_name = ring ? reserve_name() : "";
  RemoveOnExit remove{hostfile_name};
  LaunchPlan plan = plan_launch(opts, hostfile_name);
  if (!plan.ring_hostfile.empty()) {
    FILE* f = std::fopen(hostfile_name.c_str(), "w");
    if (!f || std::fputs(plan.ring_hostfile.c_str(), f) < 0 || std::fclose(f) != 0)
      throw std::runtime_error(fmt::format("[launch] cannot write the ring hostfile {}: {}", hostfile_name,
                                           std::strerror(errno)));
  }
  std::vector<Rank> ranks;
  ranks.reserve(plan.ranks.size());
  for (auto& p : plan.ranks) ranks.emplace_back(std::move(p));
  IgnoreSigpipe ignore_sigpipe;
  try {
    for (auto& r : ranks) spawn(r);
  } catch (...) {
    signal_all(ranks, SIGKILL, false);
    for (auto& r : ranks) {
      if (r.running) ::waitpid(r.pid, nullptr, 0);
      for (int* fd : {&r.in, &r.out, &r.err}) close_fd(*fd);
    }
    throw;
  }
  return Supervisor(ranks, sink, interrupt, opts.forward_stdin).run();
}

}  // namespace lmlab
