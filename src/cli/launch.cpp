// lmlab launch: N ranks of one command for MLX's distributed backends (ring
// over TCP, NCCL), as mlx.launch starts them; see include/lmlab/launch.h.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <fmt/format.h>

#include "cli/commands.h"
#include "lmlab/launch.h"

namespace lmlab::cli {

namespace {

struct LaunchCliOptions {
  LaunchOptions launch;
  std::string backend;
  std::string hostfile;
  bool dry_run = false;
  bool verbose = false;
};

std::atomic<int> g_interrupt{0};

void on_signal(int sig) { g_interrupt.store(sig); }

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed terminal or pipe: the job goes on
    s.remove_prefix(static_cast<size_t>(n));
  }
}

void print_plan(const LaunchOptions& o) {
  LaunchPlan plan = plan_launch(o, "<temp file>");
  if (!plan.ring_hostfile.empty()) fmt::print("ring hostfile: {}\n", plan.ring_hostfile);
  for (const auto& r : plan.ranks) {
    fmt::print("rank {} ({}):", r.rank, r.local ? "here" : "ssh");
    for (const auto& [k, v] : r.env) fmt::print(" {}={}", k, v);
    fmt::print("\n ");
    for (const auto& a : r.argv)
      fmt::print(" {}", a.find_first_of(" \t\"'") == std::string::npos ? a : "'" + a + "'");
    fmt::print("\n");
  }
}

void run_launch(LaunchCliOptions& o) {
  if (!o.hostfile.empty()) o.launch.hostfile = read_hostfile(o.hostfile);
  o.launch.backend = !o.backend.empty()                           ? o.backend
                     : o.launch.hostfile && !o.launch.hostfile->backend.empty() ? o.launch.hostfile->backend
                     : gpu_available()                            ? "nccl"
                                                                  : "ring";
  if (o.dry_run) return print_plan(o.launch);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, on_signal);
  LaunchResult r = launch(o.launch, write_all, &g_interrupt);
  if (o.verbose)
    for (const auto& e : r.ranks)
      fmt::print(stderr, "[launch] rank {}: pid {}, {} after {:.2f} s, peak resident {:.1f} MB\n", e.rank, e.pid,
                 e.signal ? fmt::format("signal {}", e.signal) : fmt::format("exit {}", e.status), e.seconds,
                 e.max_rss_kb / 1024.0);
  if (r.exit_code() != 0) throw ExitError(r.failure(), r.exit_code());
}

}  // namespace

void setup_launch(CLI::App& app) {
  auto o = std::make_shared<LaunchCliOptions>();
  app.add_option("-n,--ranks", o->launch.ranks, "number of ranks (with --hostfile: one per host entry)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--backend", o->backend,
                 "MLX distributed backend: ring (TCP) or nccl (NVIDIA GPUs); default: the hostfile's, "
                 "else nccl when a GPU is present, else ring")
      ->check(CLI::IsMember({"ring", "nccl"}));
  app.add_option("--hostfile", o->hostfile,
                 "JSON hosts file as mlx.launch reads it: {\"hosts\": [{\"ssh\": \"host\", \"ips\": [\"10.0.0.1\"]}, ...]}; "
                 "remote ranks start over ssh (default: every rank on this machine, over 127.0.0.1)");
  app.add_option("--port", o->launch.port,
                 "first TCP port (ring: one per rank; nccl: rank 0's); default: free loopback ports, 32323 with a hostfile")
      ->check(CLI::Range(1, 65535));
  app.add_option("--init-timeout", o->launch.init_timeout,
                 "seconds each rank waits for the others to join before it gives up")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--env", o->launch.env, "NAME=VALUE for every rank (repeatable)")->allow_extra_args(false);
  app.add_flag("--dry-run", o->dry_run, "print each rank's environment and command, start nothing");
  app.add_flag("--verbose", o->verbose, "after the job, each rank's exit, wall time and peak resident memory");
  app.add_option("command", o->launch.command, "the command every rank runs, after --")->required();
  app.footer("Everything after -- is the command every rank runs, e.g.\n"
             "  lmlab launch -n 2 -- lmlab generate -p \"Why is the sky blue?\"");
  app.callback([o] { run_launch(*o); });
}

}  // namespace lmlab::cli
