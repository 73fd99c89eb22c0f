// The memory plan against the measured peak where the plan's fixed costs
// dominate: the default model (its MLX 4-bit copy and its float copy), one
// sequence of at most 16 tokens, the last block trained, two iterations. The
// 4-bit copy's backward holds float copies of the packed tied embedding
// (0.229 GB measured); a plan without them predicted 0.115 GB against 0.344
// measured. Bound: the 20%.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/train.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

namespace fs = std::filesystem;
namespace mx = mlx::core;

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

// Where activations and logits dominate: the Super Bowl data's two longest
// records (one batch of 2 × 516 tokens, the completion 91% of them under
// --mask-prompt), every block trained, with and without checkpointing. The
// head and the loss see only the counted targets, and lmlab's CPU attention
// keeps no L × L scores, so neither may be planned for all B × L positions
// (that plan was 41% and 74% over after those changes).
TEST_P(MemoryPlanPeak, LongestSuperBowlBatchWithinTwentyPercent) {
  (void)cpu_context();
  const auto model = fixtures_dir() / "model" / GetParam();
  LMLAB_REQUIRE_FILE(model / "config.json");
  LMLAB_REQUIRE_FILE(shared_dir() / "data" / "superbowl" / "train.jsonl");
  std::vector<std::string> lines;
  {
    std::ifstream in(shared_dir() / "data" / "superbowl" / "train.jsonl");
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) lines.push_back(l);
  }
  std::stable_sort(lines.begin(), lines.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  const fs::path data = temp_dir("memory-plan-longest-" + GetParam());
  {
    std::ofstream train(data / "train.jsonl"), valid(data / "valid.jsonl");
    for (int i = 0; i < 2; ++i) train << lines[i] << "\n";
    valid << lines[0] << "\n" << lines[1] << "\n";
  }
  for (bool checkpoint : {false, true}) {
    nlohmann::json c = {{"model", model.string()},   {"data", data.string()},
                        {"adapter_path", (data / (checkpoint ? "gc" : "plain")).string()},
                        {"iters", 1},                {"batch_size", 2},
                        {"mask_prompt", true},       {"grad_checkpoint", checkpoint},
                        {"val_batches", 0},          {"steps_per_eval", 100},
                        {"steps_per_report", 1}};
    train::TrainConfig cfg = train::TrainConfig::from_json(c);
    LoadedModel m = load_model(cpu_context(), LoadOptions{.model = cfg.model});
    mx::reset_peak_memory();
    train::Trainer trainer(m, cfg);
    int validations = 0;
    train::TrainCallbacks cb;
    cb.on_event = [&](const train::TrainEvent& e) { validations += e.kind == train::TrainEvent::Kind::val; };
    const train::TrainResult r = trainer.run(cb);
    EXPECT_EQ(validations, 0) << "val_batches 0 runs no validation (mlx-lm prints a NaN loss)";
    EXPECT_TRUE(r.planned_batch_trained) << "the run trained the batch the plan is for";
    std::printf("[ memory   ] %s, longest batch%s: planned %.3f GB, measured %.3f GB\n", GetParam().c_str(),
                checkpoint ? ", checkpointed" : "", r.predicted_peak_gb, r.peak_memory_gb);
    EXPECT_NEAR(r.predicted_peak_gb, r.peak_memory_gb, 0.2 * r.peak_memory_gb) << (checkpoint ? "checkpointed" : "");
  }
}

INSTANTIATE_TEST_SUITE_P(DefaultModel, MemoryPlanPeak, ::testing::Values("smollm2-mlx-q4", "smollm2-f32"));

}  // namespace
}  // namespace lmlab::test
