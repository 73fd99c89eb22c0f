// lmlab launch without MLX: each rank's environment for the ring and NCCL
// backends (mlx.launch's variables; NCCL_NVLS_ENABLE=0 whatever the caller
// says), the hostfile format and its errors, the ssh command of a remote rank
// (run here through sh to check its quoting), and the supervisor: exit codes,
// forwarded and prefixed output, stdin copied to every rank, and a rank that
// dies ending the others with one line naming it.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/launch.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

using Env = std::map<std::string, std::string>;

Env env_of(const RankPlan& p) { return Env(p.env.begin(), p.env.end()); }

LaunchOptions options(int n, std::vector<std::string> command, std::string backend = "ring") {
  return LaunchOptions{.ranks = n, .backend = std::move(backend), .command = std::move(command), .forward_stdin = false};
}

std::filesystem::path write_hostfile(const std::string& text) {
  auto p = temp_dir("hostfile") / "hosts.json";
  std::ofstream(p) << text;
  return p;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Launch, RingRanksGetMlxsVariablesAndDistinctLoopbackPorts) {
  LaunchPlan plan = plan_launch(options(3, {"true"}), "/tmp/h.json");
  ASSERT_EQ(plan.ranks.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    Env e = env_of(plan.ranks[r]);
    EXPECT_EQ(e["MLX_RANK"], std::to_string(r));
    EXPECT_EQ(e["MLX_WORLD_SIZE"], "3");
    EXPECT_EQ(e["MLX_HOSTFILE"], "/tmp/h.json");
    EXPECT_EQ(e["LMLAB_LAUNCH_BACKEND"], "ring");
    EXPECT_EQ(e["LMLAB_INIT_TIMEOUT"], "60");
    EXPECT_TRUE(plan.ranks[r].local);
  }
  auto hosts = nlohmann::json::parse(plan.ring_hostfile);
  ASSERT_EQ(hosts.size(), 3u);
  std::set<std::string> addresses;
  for (auto& h : hosts) {
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].get<std::string>().rfind("127.0.0.1:", 0), 0u);
    addresses.insert(h[0].get<std::string>());
  }
  EXPECT_EQ(addresses.size(), 3u);
  // One rank needs no ring: no hostfile, so a rank alone runs as a single process.
  EXPECT_TRUE(plan_launch(options(1, {"true"}), "/tmp/h.json").ring_hostfile.empty());
}

TEST(Launch, NcclRanksMeetAtRankZeroWithMulticastOff) {
  setenv("NCCL_NVLS_ENABLE", "1", 1);
  setenv("CUDA_VISIBLE_DEVICES", "4,5", 1);
  LaunchOptions o = options(2, {"true"}, "nccl");
  o.env = {"NCCL_NVLS_ENABLE=1", "FOO=bar"};
  LaunchPlan plan = plan_launch(o, "");
  unsetenv("NCCL_NVLS_ENABLE");
  unsetenv("CUDA_VISIBLE_DEVICES");
  Env e0 = env_of(plan.ranks[0]), e1 = env_of(plan.ranks[1]);
  EXPECT_EQ(e0["NCCL_NVLS_ENABLE"], "0");
  EXPECT_EQ(e1["NCCL_NVLS_ENABLE"], "0");
  EXPECT_EQ(plan.ranks[0].env.size(), e0.size()) << "a variable is set twice";
  EXPECT_EQ(e0["NCCL_HOST_IP"], "127.0.0.1");
  EXPECT_EQ(e0["NCCL_PORT"], e1["NCCL_PORT"]);
  EXPECT_EQ(e0["MLX_WORLD_SIZE"], "2");
  EXPECT_EQ(e0["CUDA_VISIBLE_DEVICES"], "4");
  EXPECT_EQ(e1["CUDA_VISIBLE_DEVICES"], "5");
  EXPECT_EQ(e1["FOO"], "bar");
  EXPECT_EQ(e0.count("MLX_HOSTFILE"), 0u);
  EXPECT_TRUE(plan.ring_hostfile.empty());
}

TEST(Launch, HostfileInMlxLaunchsFormat) {
  auto path = write_hostfile(R"({"backend": "ring", "envs": ["A=1"],
    "hosts": [{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}, {"ssh": "node2", "ips": ["10.0.0.2", "10.0.1.2"]}]})");
  Hostfile h = read_hostfile(path);
  EXPECT_EQ(h.backend, "ring");
  EXPECT_EQ(h.envs, std::vector<std::string>{"A=1"});
  ASSERT_EQ(h.hosts.size(), 2u);
  EXPECT_TRUE(h.hosts[0].is_local());
  EXPECT_FALSE(h.hosts[1].is_local());
  LaunchOptions o = options(0, {"lmlab", "generate", "-p", "it's"});
  o.hostfile = h;
  LaunchPlan plan = plan_launch(o, "/tmp/h.json");
  EXPECT_EQ(plan.ring_hostfile, R"([["127.0.0.1:32323"],["10.0.0.2:32324"]])");
  EXPECT_EQ(env_of(plan.ranks[0])["A"], "1");
  EXPECT_EQ(plan.ranks[1].argv.front(), "ssh");
  EXPECT_EQ(plan.ranks[1].argv[plan.ranks[1].argv.size() - 2], "node2");
  // The bare list form.
  EXPECT_EQ(read_hostfile(write_hostfile(R"([{"ssh": "a", "ips": ["1.2.3.4"]}])")).hosts.size(), 1u);
}

TEST(Launch, RemoteRankScriptQuotesItsArguments) {
  LaunchOptions o = options(0, {"printf", "%s|%s|%s|%s", "it's", "$HOME", "a b"});
  o.hostfile = Hostfile{.backend = "", .envs = {}, .hosts = {{"127.0.0.1", {"127.0.0.1"}}, {"node2", {"10.0.0.2"}}}};
  o.env = {"QUOTED=x'y"};
  LaunchPlan plan = plan_launch(o, "/tmp/h.json");
  const std::string script = plan.ranks[1].argv.back();
  // Run the script ssh would run remotely, here: the arguments arrive unexpanded.
  auto dir = temp_dir("remote");
  std::string cmd = "sh -c '" ;
  for (char c : script) cmd += c == '\'' ? std::string("'\\''") : std::string(1, c);
  cmd += "' > " + (dir / "out").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << script;
  std::ifstream f(dir / "out");
  std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(out, "it's|$HOME|a b|");
  EXPECT_NE(script.find("MLX_RANK='1'"), std::string::npos) << script;
  EXPECT_NE(script.find("QUOTED='x'\\''y'"), std::string::npos) << script;
}

TEST(Launch, BadOptionsAndHostfilesNameTheProblem) {
  EXPECT_NE(message_of([] { plan_launch(options(2, {}), ""); }).find("no command: give it after --"), std::string::npos);
  EXPECT_NE(message_of([] { plan_launch(options(2, {"x"}, "mpi"), ""); }).find("unknown backend 'mpi'"),
            std::string::npos);
  LaunchOptions o = options(3, {"x"});
  o.hostfile = Hostfile{.backend = "", .envs = {}, .hosts = {{"a", {"1.2.3.4"}}, {"b", {"1.2.3.5"}}}};
  EXPECT_NE(message_of([&] { plan_launch(o, ""); }).find("-n 3 but the hostfile lists 2 hosts"), std::string::npos);
  o.ranks = 0;
  o.hostfile->hosts[1].ips.clear();
  EXPECT_NE(message_of([&] { plan_launch(o, ""); }).find("hosts[1] (b) has no \"ips\""), std::string::npos);
  for (const char* bad : {"NOEQUALS", "1BAD=x"}) {
    LaunchOptions bad_env = options(2, {"x"});
    bad_env.env = {bad};
    EXPECT_NE(message_of([&] { plan_launch(bad_env, ""); }).find(fmt::format("--env '{}' is not NAME=VALUE", bad)),
              std::string::npos);
  }
  EXPECT_NE(message_of([] { read_hostfile(write_hostfile("{not json")); }).find("not JSON"), std::string::npos);
  EXPECT_NE(message_of([] { read_hostfile(write_hostfile(R"({"hosts": [{"ips": []}]})")); })
                .find("hosts[0] needs an \"ssh\" string"),
            std::string::npos);
  EXPECT_NE(message_of([] { read_hostfile(write_hostfile(R"({"hosts": []})")); }).find("non-empty list"),
            std::string::npos);
}

struct Captured {
  std::string out, err;
  LaunchSink sink() {
    return [this](int fd, std::string_view s) { (fd == 1 ? out : err).append(s); };
  }
};

TEST(Launch, OutputOfRankZeroPassesThroughOthersArePrefixed) {
  Captured c;
  LaunchResult r = launch(options(2, {"sh", "-c", "printf 'a\\nb' ; echo e$MLX_RANK >&2"}), c.sink());
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_FALSE(r.failed);
  // Rank 0's partial last line stays partial; rank 1's is completed with its
  // prefix. Rank 1's lines are whole but need not be adjacent: rank 0's bytes
  // may pass between them.
  EXPECT_NE(c.out.find("a\nb"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("[rank 1] a\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("[rank 1] b\n"), std::string::npos) << c.out;
  EXPECT_NE(c.err.find("[rank 0] e0\n"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("[rank 1] e1\n"), std::string::npos) << c.err;
  EXPECT_EQ(r.ranks[1].status, 0);
  EXPECT_GT(r.ranks[1].max_rss_kb, 0);
}

TEST(Launch, FailingRankSetsTheExitCodeAndIsNamed) {
  Captured c;
  LaunchResult r = launch(options(3, {"sh", "-c", "exit $((MLX_RANK == 2 ? 7 : 0))"}), c.sink());
  ASSERT_TRUE(r.failed);
  EXPECT_EQ(*r.failed, 2);
  EXPECT_EQ(r.exit_code(), 7);
  EXPECT_EQ(r.failure().rfind("[launch] rank 2 of 3 exited with status 7", 0), 0u) << r.failure();
}

TEST(Launch, KilledRankStopsTheOthersQuickly) {
  Captured c;
  const auto t0 = std::chrono::steady_clock::now();
  LaunchResult r = launch(options(3, {"sh", "-c", "if [ $MLX_RANK = 1 ]; then kill -9 $$; fi; sleep 60"}), c.sink());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 10.0);
  ASSERT_TRUE(r.failed);
  EXPECT_EQ(*r.failed, 1);
  EXPECT_EQ(r.exit_code(), 128 + SIGKILL);
  EXPECT_EQ(r.failure(), "[launch] rank 1 of 3 was killed by signal 9 (SIGKILL); stopped ranks 0, 2");
  EXPECT_TRUE(r.ranks[0].stopped);
  EXPECT_EQ(r.ranks[0].signal, SIGTERM);
}

TEST(Launch, InterruptEndsEveryRank) {
  Captured c;
  std::atomic<int> interrupt{0};
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    interrupt = SIGINT;
  });
  LaunchResult r = launch(options(2, {"sleep", "60"}), c.sink(), &interrupt);
  later.join();
  EXPECT_EQ(r.interrupted, SIGINT);
  EXPECT_EQ(r.exit_code(), 130);
  EXPECT_EQ(r.failure(), "[launch] interrupted by signal 2 (SIGINT); stopped ranks 0, 1");
}

TEST(Launch, CommandThatCannotRunIsAnError) {
  Captured c;
  EXPECT_NE(message_of([&] { launch(options(2, {"/nonexistent/program"}), c.sink()); })
                .find("cannot run '/nonexistent/program' for rank 0: No such file or directory"),
            std::string::npos);
}

TEST(Launch, StdinReachesEveryRank) {
  auto dir = temp_dir("launch-stdin");
  // Each rank writes its line at once: rank 0's bytes pass through as they
  // come, so a line it wrote in two pieces could have rank 1's line between them.
  const std::string cmd = "printf 'hello' | " + lmlab_binary() +
                          " launch -n 2 -- sh -c 'x=$(cat); echo \"$x $MLX_RANK\"' > " + (dir / "out").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream f(dir / "out");
  std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(out.find("hello 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 1] hello 1\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace lmlab::test
