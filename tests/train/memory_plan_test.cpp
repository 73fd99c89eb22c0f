// The memory plan against the measured peak where the plan's fixed costs
// dominate: the default model (its MLX 4-bit copy and its float copy), one
// sequence of at most 16 tokens, the last block trained, two iterations. The
// 4-bit copy's backward holds float copies of the packed tied embedding
// (0.229 GB measured); a plan without them predicted 0.115 GB against 0.344
// measured. Bound: the 20%.
#include <mlx/mlx.h>

#include "lmlab/train.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

class MemoryPlanPeak : public ::testing::TestWithParam<std::string> {};

TEST_P(MemoryPlanPeak, WithinTwentyPercentOfTheMeasuredPeak) {
  (void)cpu_context();
  const auto model = fixtures_dir() / "model" / GetParam();
  LMLAB_REQUIRE_FILE(model / "config.json");
  LMLAB_REQUIRE_FILE(fixtures_dir() / "lora" / "data" / "train.jsonl");
  nlohmann::json c = {{"model", model.string()},
                      {"data", (fixtures_dir() / "lora" / "data").string()},
                      {"adapter_path", temp_dir("memory-plan-" + GetParam()).string()},
                      {"iters", 2},
                      {"batch_size", 1},
                      {"max_seq_length", 16},
                      {"num_layers", 1},
                      {"val_batches", 1},
                      {"steps_per_eval", 100},
                      {"steps_per_report", 1}};
  train::TrainConfig cfg = train::TrainConfig::from_json(c);
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = cfg.model});
  train::Trainer trainer(m, cfg);
  const train::TrainResult r = trainer.run({});
  std::printf("[ memory   ] %s: planned %.3f GB, measured %.3f GB\n", GetParam().c_str(), r.predicted_peak_gb,
              r.peak_memory_gb);
  EXPECT_NEAR(r.predicted_peak_gb, r.peak_memory_gb, 0.2 * r.peak_memory_gb);
}

INSTANTIATE_TEST_SUITE_P(DefaultModel, MemoryPlanPeak, ::testing::Values("smollm2-mlx-q4", "smollm2-f32"));

}  // namespace
}  // namespace lmlab::test
