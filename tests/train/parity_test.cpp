// Parity with mlx_lm.lora: the trainer of mlx-lm (tuner/trainer.py, run by
// tests/golden/lora_golden.py through lora.py's train_model) and lmlab's, from
// the same tiny 4-bit checkpoint with the default model's layout, the same
// Super Bowl records (prompt masked, truncated at 128 tokens), config and seed,
// with mlx_lm_compat (mlx-lm's batches and loss mask):
//   lora  60 iterations, Adam, warm-up then cosine decay, 3.75 epochs
//   dora  20 iterations, AdamW, gradient accumulation 2, gradient checkpointing, 3 keys
//   full  16 iterations of the last block of the float checkpoint, SGD with momentum
//   moe   20 iterations of LoRA with mlx-lm's default keys on a tiny 4-bit
//         Qwen3-MoE: stacked experts (LoRASwitchLinear), routers, attention
// Every iteration's train loss, every validation loss and the final adapters
// agree. The same initial adapters (mlx-lm's random draws) and batch order make
// the runs identical up to float32 summation order, which the tolerances
// bound (measured differences are printed).
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "lmlab/train.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

std::filesystem::path lora_fixtures() { return fixtures_dir() / "lora"; }

struct RunLosses {
  std::map<int, double> train, val;
  std::filesystem::path dir;
};

RunLosses run_lmlab(const nlohmann::json& golden_config, const std::string& name) {
  nlohmann::json c = golden_config;
  for (const char* k : {"report_to", "project_name", "trust_remote_code", "clear_cache_threshold"}) c.erase(k);
  RunLosses r;
  r.dir = temp_dir("parity-" + name);
  c["adapter_path"] = r.dir.string();
  c["mlx_lm_compat"] = true;
  train::TrainConfig cfg = train::TrainConfig::from_json(c);
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = cfg.model});
  train::Trainer trainer(m, cfg);
  trainer.run({.on_event = [&](const train::TrainEvent& e) {
    if (e.kind == train::TrainEvent::Kind::report) r.train[e.iteration] = e.train_loss;
    if (e.kind == train::TrainEvent::Kind::val) r.val[e.iteration] = e.val_loss;
  }});
  return r;
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, LossesAndAdaptersEqualMlxLmLora) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(lora_fixtures() / "parity.json");
  const std::string name = GetParam();
  const auto golden = read_json(lora_fixtures() / "parity.json").at(name);
  RunLosses ours = run_lmlab(golden["config"], name);
  double worst_train = 0, worst_val = 0;
  ASSERT_EQ(ours.train.size(), golden["train"].size());
  for (const auto& row : golden["train"]) {
    const int it = row[0];
    const double want = row[1];
    ASSERT_TRUE(ours.train.count(it)) << "no train loss at iteration " << it;
    worst_train = std::max(worst_train, std::abs(ours.train[it] - want));
    if (std::getenv("LMLAB_PARITY_VERBOSE")) std::printf("%s %d %.6f %.6f\n", name.c_str(), it, ours.train[it], want);
    EXPECT_NEAR(ours.train[it], want, 2e-3 + 1e-3 * std::abs(want)) << name << " iteration " << it;
  }
  ASSERT_EQ(ours.val.size(), golden["val"].size());
  for (const auto& row : golden["val"]) {
    const int it = row[0];
    const double want = row[1];
    ASSERT_TRUE(ours.val.count(it)) << "no validation loss at iteration " << it;
    worst_val = std::max(worst_val, std::abs(ours.val[it] - want));
    EXPECT_NEAR(ours.val[it], want, 2e-3 + 1e-3 * std::abs(want)) << name << " validation at " << it;
  }
  auto theirs = mx::load_safetensors((lora_fixtures() / ("adapters_" + name) / "adapters.safetensors").string()).first;
  auto mine = mx::load_safetensors((ours.dir / "adapters.safetensors").string()).first;
  ASSERT_EQ(mine.size(), theirs.size());
  float worst_param = 0;
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(mine.count(k)) << "missing " << k;
    ASSERT_EQ(mine.at(k).shape(), v.shape()) << k;
    const float scale = std::max(1e-3f, mx::max(mx::abs(v)).item<float>());
    const float d = mx::max(mx::abs(mx::subtract(mine.at(k), v))).item<float>() / scale;
    worst_param = std::max(worst_param, d);
  }
  std::printf("[ parity   ] %s: %zu iterations, max |Δ train loss| %.2g, |Δ val loss| %.2g, adapters %.2g relative\n",
              name.c_str(), ours.train.size(), worst_train, worst_val, worst_param);
  EXPECT_LT(worst_param, 2e-2f);
}

INSTANTIATE_TEST_SUITE_P(MlxLm, Parity, ::testing::Values("lora", "dora", "full", "moe"));

}  // namespace
}  // namespace lmlab::test
