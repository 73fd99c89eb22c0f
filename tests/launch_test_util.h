// Running `lmlab launch` (or any command) from a test: to completion under a
// time limit, or in the background to kill it or one of its ranks.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "test_util.h"

namespace lmlab::test {

struct LaunchRun {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// `lmlab launch ARGS`, bounded by coreutils' timeout so that a hang fails the test.
inline LaunchRun launch_cli(const std::string& args, int limit_s = 240) {
  auto dir = temp_dir("launch");
  const std::string cmd = fmt::format("timeout -k 5 {} {} launch {} < /dev/null > {} 2> {}", limit_s, lmlab_binary(),
                                      args, (dir / "out").string(), (dir / "err").string());
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  LaunchRun r{WEXITSTATUS(status), slurp(dir / "out"), slurp(dir / "err")};
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// Starts `lmlab ARGS` in the background with its output in files under `dir`
// (the pid is lmlab's own: the shell execs it).
inline pid_t start_cli(const std::string& args, const std::filesystem::path& dir) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::freopen("/dev/null", "r", stdin);
    ::freopen((dir / "out").c_str(), "w", stdout);
    ::freopen((dir / "err").c_str(), "w", stderr);
    ::execl("/bin/sh", "sh", "-c", ("exec " + lmlab_binary() + " " + args).c_str(), (char*)nullptr);
    ::_exit(127);
  }
  return pid;
}

// Starts `lmlab launch` in the background with its output in files.
inline pid_t start_launch(const std::string& args, const std::filesystem::path& dir) {
  return start_cli("launch " + args, dir);
}

// The pid of the launcher's child whose environment says MLX_RANK=rank.
inline pid_t rank_pid(pid_t launcher, int rank) {
  std::ifstream children(fmt::format("/proc/{}/task/{}/children", launcher, launcher));
  for (pid_t child; children >> child;) {
    std::ifstream env(fmt::format("/proc/{}/environ", child));
    std::string var;
    while (std::getline(env, var, '\0'))
      if (var == fmt::format("MLX_RANK={}", rank)) return child;
  }
  return -1;
}

// Waits up to `limit_s` for the process; its exit code, or -1 if it is still running (then killed).
inline int wait_exit(pid_t pid, double limit_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  int st = 0;
  while (::waitpid(pid, &st, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Kills rank 1 of a running 2-rank launch (output in dir/out, dir/err) and
// expects the job to end within 10 s with SIGKILL's code and, last, one line
// naming the rank. `tag` labels the printed timing.
inline void kill_rank_one_and_expect_one_line(pid_t launcher, const std::filesystem::path& dir, const char* tag) {
  const pid_t victim = rank_pid(launcher, 1);
  ASSERT_GT(victim, 0) << "rank 1 not found; output: " << slurp(dir / "out") << slurp(dir / "err");
  ::kill(victim, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int code = wait_exit(launcher, 30);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string err = slurp(dir / "err");
  std::printf("[ %-8s] ended %.2f s after the kill; stderr:\n%s", tag, s, err.c_str());
  EXPECT_EQ(code, 128 + SIGKILL) << err;
  EXPECT_LT(s, 10.0);
  const size_t at = err.rfind("error: ");
  ASSERT_NE(at, std::string::npos) << err;
  const std::string last = err.substr(at);
  EXPECT_EQ(last.rfind("error: [launch] rank 1 of 2 was killed by signal 9 (SIGKILL)", 0), 0u) << err;
  EXPECT_EQ(std::count(last.begin(), last.end(), '\n'), 1) << last;
}

}  // namespace lmlab::test
