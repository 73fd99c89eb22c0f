// An interrupted run resumed with --resume ends exactly where the uninterrupted
// run ends: on the 4-bit parity checkpoint (Adam with warm-up and cosine decay,
// so the schedule and the moments matter), 8 iterations with a checkpoint
// every 4; the second run's files after iteration 4 are deleted, as a kill
// leaves them, and --resume continues from 0000004_state.safetensors. The
// losses of iterations 5-8 and the final adapters are bit-identical.
#include <mlx/mlx.h>

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

}  // namespace
}  // namespace lmlab::test
