// An interrupted run resumed with --resume ends exactly where the uninterrupted
// run ends: on the 4-bit parity checkpoint (Adam with warm-up and cosine decay,
// so the schedule and the moments matter), 8 iterations with a checkpoint
// every 4; the second run's files after iteration 4 are deleted, as a kill
// leaves them, and --resume continues from 0000004_state.safetensors. The
// losses of iterations 5-8 and the final adapters are bit-identical.
#include <mlx/mlx.h>

#include <random>

#include "launch_test_util.h"
#include "lmlab/train.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
namespace fs = std::filesystem;

std::map<int, double> train_in(const fs::path& dir, bool resume) {
  nlohmann::json c = read_json(fixtures_dir() / "lora" / "parity.json").at("lora").at("config");
  for (const char* k : {"report_to", "project_name", "trust_remote_code", "clear_cache_threshold"}) c.erase(k);
  c["adapter_path"] = dir.string();
  c["iters"] = 8;
  c["save_every"] = 4;
  c["steps_per_eval"] = 100;
  c["learning_rate"] = 1e-3;
  c["lr_schedule"] = {{"name", "cosine_decay"}, {"warmup", 2}, {"warmup_init", 1e-5}, {"arguments", {1e-3, 6, 1e-5}}};
  c["resume"] = resume;
  train::TrainConfig cfg = train::TrainConfig::from_json(c);
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = cfg.model});
  train::Trainer trainer(m, cfg);
  std::map<int, double> losses;
  trainer.run({.on_event = [&](const train::TrainEvent& e) {
    if (e.kind == train::TrainEvent::Kind::report) losses[e.iteration] = e.train_loss;
  }});
  return losses;
}

TEST(Resume, AKilledRunResumesExactly) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "lora" / "parity.json");
  const fs::path whole = temp_dir("resume-whole"), cut = temp_dir("resume-cut");
  std::map<int, double> want = train_in(whole, false);
  train_in(cut, false);
  for (const auto& f : fs::directory_iterator(cut)) {
    const std::string n = f.path().filename().string();
    if (n == "adapters.safetensors" || n.starts_with("0000008_")) fs::remove(f.path());
  }
  ASSERT_TRUE(fs::exists(cut / "0000004_adapters.safetensors"));
  std::map<int, double> got = train_in(cut, true);
  ASSERT_EQ(want.size(), 8u);
  for (int it = 5; it <= 8; ++it) {
    ASSERT_TRUE(got.count(it)) << "no loss at iteration " << it;
    EXPECT_EQ(got[it], want[it]) << "iteration " << it;
  }
  EXPECT_FALSE(got.count(3)) << "a resumed run starts after its checkpoint";
  auto a = mx::load_safetensors((whole / "adapters.safetensors").string()).first;
  auto b = mx::load_safetensors((cut / "adapters.safetensors").string()).first;
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    EXPECT_TRUE(mx::array_equal(v, b.at(k)).item<bool>()) << k;
  }
}

// `lmlab lora` killed with SIGKILL at seeded random moments, each time resumed
// (or restarted when no checkpoint was complete yet): after every kill each
// named .safetensors file in the run folder loads whole (writes go to a temp
// file and are renamed), and the final adapters equal an uninterrupted run's
// bit for bit. LMLAB_KILLS=N asks for N kills (bench/kill_resume.sh).
TEST(Resume, CliKilledAtRandomMomentsEndsWithTheUninterruptedAdapters) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "lora" / "parity.json");
  nlohmann::json c = read_json(fixtures_dir() / "lora" / "parity.json").at("lora").at("config");
  for (const char* k : {"report_to", "project_name", "trust_remote_code", "clear_cache_threshold"}) c.erase(k);
  const char* env = std::getenv("LMLAB_KILLS");  // bench/kill_resume.sh asks for many more
  const int want_kills = env ? std::max(1, std::atoi(env)) : 3;
  const int iters = std::max(24, 8 * want_kills);
  c["iters"] = iters;
  c["save_every"] = 3;
  c["steps_per_eval"] = 1000;
  c["learning_rate"] = 1e-3;
  c["lr_schedule"] = {
      {"name", "cosine_decay"}, {"warmup", 2}, {"warmup_init", 1e-5}, {"arguments", {1e-3, iters - 2, 1e-5}}};
  const fs::path dir = temp_dir("kill-resume");
  std::ofstream(dir / "run.yaml") << c.dump();  // JSON is YAML
  auto args = [&](const char* run, bool resume) {
    return fmt::format("lora -c {} --adapter-path {}{}", (dir / "run.yaml").string(), (dir / run).string(),
                       resume ? " --resume" : "");
  };
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_exit(start_cli(args("whole", false), dir), 300), 0) << slurp(dir / "err");
  const double whole_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  fs::create_directories(dir / "cut");
  std::mt19937 rng(7);
  int kills = 0;
  bool finished = false;
  double run_s = whole_s;  // a whole run's duration, start-up included: the kill moments' scale
  for (int attempt = 0; attempt < 3 * want_kills + 5 && !finished; ++attempt) {
    int saved = 0;  // the last complete checkpoint's iteration: resume from it
    for (const auto& f : fs::directory_iterator(dir / "cut"))
      if (const std::string n = f.path().filename().string(); n.ends_with("_state.safetensors"))
        saved = std::max(saved, std::stoi(n.substr(0, 7)));
    const auto started = std::chrono::steady_clock::now();
    const pid_t pid = start_cli(args("cut", saved > 0), dir);
    if (kills < want_kills) {
      // Somewhere in what is left of the run.
      const double left = run_s * (iters - saved) / iters;
      const double at = std::uniform_real_distribution<double>(0.1, 0.9)(rng) * left;
      const int code = wait_exit(pid, at);  // -1: still running at `at`, killed with SIGKILL
      ASSERT_TRUE(code == -1 || code == 0) << slurp(dir / "err");
      if (code == 0 && kills == 0) {
        // Done before its kill moment: the uninterrupted run, timed beside other
        // work, was slower than this one. Start over on this run's time scale.
        run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        fs::remove_all(dir / "cut");
        fs::create_directories(dir / "cut");
        continue;
      }
      finished = code == 0;
      kills += code == -1;
    } else {
      ASSERT_EQ(wait_exit(pid, 300), 0) << slurp(dir / "err");
      finished = true;
    }
    for (const auto& f : fs::directory_iterator(dir / "cut")) {
      const std::string n = f.path().filename().string();
      if (n.ends_with(".safetensors") && n.find(".tmp") == std::string::npos)
        EXPECT_NO_THROW(mx::load_safetensors(f.path().string())) << n << " after kill " << kills;
    }
  }
  ASSERT_TRUE(finished);
  EXPECT_GE(kills, 1);
  std::printf("[ resume ] %d kills (run of %.1f s), then resumed to the end\n", kills, whole_s);
  auto a = mx::load_safetensors((dir / "whole" / "adapters.safetensors").string()).first;
  auto b = mx::load_safetensors((dir / "cut" / "adapters.safetensors").string()).first;
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    EXPECT_TRUE(mx::array_equal(v, b.at(k)).item<bool>()) << k;
  }
}

}  // namespace
}  // namespace lmlab::test
