// lmlab launch: N processes ("ranks") of one command, each with the
// environment MLX's distributed backends read (mx::distributed::init), their
// output forwarded, and the whole job ended when one rank fails. The same
// variables and hostfile format as mlx.launch, so a job can be started by
// either. MLX-free: frontends include it.
//
//   ring  MLX_RANK, MLX_HOSTFILE (a JSON list of each rank's "ip:port"), MLX_WORLD_SIZE
//   nccl  MLX_RANK, MLX_WORLD_SIZE, NCCL_HOST_IP, NCCL_PORT (rank 0's), NCCL_NVLS_ENABLE=0,
//         CUDA_VISIBLE_DEVICES (one GPU per local rank)
//   both  LMLAB_LAUNCH_BACKEND, LMLAB_INIT_TIMEOUT (read by lmlab::Context when a rank
//         joins), LMLAB_THREADS (the CPUs shared among the local ranks, when unset)
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmlab {

// One host entry of a hostfile: one rank. `ssh` is the name to reach it by
// ("127.0.0.1", "localhost" or "" run here); `ips` the addresses the ranks
// connect to (ring: the first one is this rank's).
struct LaunchHost {
  std::string ssh;
  std::vector<std::string> ips;
  bool is_local() const;
};

// mlx.launch's hostfile: {"backend": "ring", "envs": ["K=V", ...],
// "hosts": [{"ssh": "host1", "ips": ["10.0.0.1"]}, ...]} or the bare hosts list.
struct Hostfile {
  std::string backend;
  std::vector<std::string> envs;
  std::vector<LaunchHost> hosts;
};
// Throws std::invalid_argument naming the file and the field that is wrong.
Hostfile read_hostfile(const std::filesystem::path& path);

struct LaunchOptions {
  int ranks = 0;                      // 0 with a hostfile: one rank per host entry
  std::string backend = "ring";       // "ring" or "nccl"
  std::optional<Hostfile> hostfile;   // none: every rank on this machine, over loopback
  int port = 0;                       // first port; 0: free loopback ports (hostfiles: 32323)
  double init_timeout = 60;           // seconds a rank waits for the others at init
  std::vector<std::string> env;       // extra K=V for every rank
  std::vector<std::string> command;   // argv of every rank
  bool forward_stdin = true;          // copy the launcher's stdin to every rank (else /dev/null)
};

// What one rank runs: argv (an ssh command for a remote host) and the
// variables added to the launcher's environment.
struct RankPlan {
  int rank = 0;
  bool local = true;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
};
struct LaunchPlan {
  std::vector<RankPlan> ranks;
  std::string ring_hostfile;  // JSON contents of MLX_HOSTFILE (ring), written at launch
};
// Validates the options (std::invalid_argument naming the flag) and plans
// each rank. `hostfile_path` is where the ring hostfile will be written.
LaunchPlan plan_launch(const LaunchOptions& opts, const std::string& hostfile_path);

struct RankExit {
  int rank = 0;
  int pid = 0;
  int status = -1;       // exit status, when it exited
  int signal = 0;        // the signal that ended it, 0 when it exited
  bool stopped = false;  // ended by the launcher because another rank failed
  long max_rss_kb = 0;   // peak resident memory (getrusage)
  double seconds = 0;    // wall time from start to exit
};

struct LaunchResult {
  std::vector<RankExit> ranks;
  std::optional<int> failed;  // the rank whose failure ended the job
  int interrupted = 0;        // the signal to the launcher that ended the job, 0 if none
  // 0; else the failed rank's exit status, or 128 + its signal.
  int exit_code() const;
  // One line: "[launch] rank 1 was killed by signal 9 (Killed); ranks 0 were stopped".
  std::string failure() const;
};

// Forwarded output: the launcher's fd (1 or 2) and the bytes to write there.
// Rank 0's stdout passes through unchanged (byte for byte, as it streams);
// every other stream is split into lines prefixed with "[rank R] ".
using LaunchSink = std::function<void(int fd, std::string_view bytes)>;

// Starts every rank (each in its own process group), forwards the launcher's
// stdin to all of them (LaunchOptions::forward_stdin) and their output to
// `sink`, and waits. When a rank
// fails (non-zero exit or a signal) the others get SIGTERM, then SIGKILL after
// a few seconds. `interrupt`, when it becomes non-zero (a signal number set by
// the caller's handler), ends the job the same way. Throws std::runtime_error
// when a rank cannot be started.
LaunchResult launch(const LaunchOptions& opts, const LaunchSink& sink,
                    const std::atomic<int>* interrupt = nullptr);

// This process's rank when it runs under a launcher (MLX_RANK), else -1.
int launched_rank();

}  // namespace lmlab
