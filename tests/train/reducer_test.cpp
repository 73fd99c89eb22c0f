// The trainer's data-parallel seam (src/train/reducer.h), on the 4-bit parity
// checkpoint with SGD (sensitive to the gradient's scale) and gradient
// accumulation 2:
//  - a reducer standing for two processes that saw the same batch (rank 0 of
//    a group of one that takes the whole batch, every sum doubled) leaves
//    every loss equal to the one-process run, with twice the trained tokens:
//    each process's share is weighted by its tokens over all tokens, 1/2 here;
//  - it is asked for the gradients once per optimizer update (after the
//    accumulation), and for the loss and tokens once per batch;
//  - a reducer that cancels the gradients leaves lora_b at its zero start:
//    the update uses what the reducer returns.
// tests/train/data_parallel_test.cpp has shares of unequal lengths and real ranks.
#include <mlx/mlx.h>

#include "lmlab/train.h"
#include "models/model_test_util.h"
#include "train/reducer.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using mx::array;

struct TwoProcesses : train::GradientReducer {
  int gradient_calls = 0, batch_calls = 0;
  bool cancel = false;
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<array> sum(std::vector<array> xs) override {
    const bool gradients = xs.size() > 2;  // else [loss·tokens, tokens]
    (gradients ? gradient_calls : batch_calls) += 1;
    for (auto& x : xs) x = cancel && gradients ? mx::zeros_like(x) : mx::add(x, x);
    return xs;
  }
};

struct TrainRun {
  std::map<int, double> train, val;
  std::map<int, int64_t> tokens;
  std::filesystem::path dir;
};

TrainRun train_with(const std::shared_ptr<TwoProcesses>& reducer, const std::string& name) {
  nlohmann::json c = read_json(fixtures_dir() / "lora" / "parity.json").at("lora").at("config");
  for (const char* k : {"report_to", "project_name", "trust_remote_code", "clear_cache_threshold"}) c.erase(k);
  TrainRun r;
  r.dir = temp_dir("reducer-" + name);
  c["adapter_path"] = r.dir.string();
  c["mlx_lm_compat"] = true;
  c["iters"] = 8;
  c["steps_per_eval"] = 4;
  c["grad_accumulation_steps"] = 2;
  c["optimizer"] = "sgd";
  c["learning_rate"] = 0.05;
  c.erase("lr_schedule");
  train::TrainConfig cfg = train::TrainConfig::from_json(c);
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = cfg.model});
  train::Trainer trainer(m, cfg);
  if (reducer) trainer.set_reducer(reducer);
  trainer.run({.on_event = [&](const train::TrainEvent& e) {
    if (e.kind == train::TrainEvent::Kind::report) {
      r.train[e.iteration] = e.train_loss;
      r.tokens[e.iteration] = e.trained_tokens;
    }
    if (e.kind == train::TrainEvent::Kind::val) r.val[e.iteration] = e.val_loss;
  }});
  return r;
}

TEST(Reducer, TwoEqualProcessesTrainAsOne) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "lora" / "parity.json");
  TrainRun one = train_with(nullptr, "one");
  auto two = std::make_shared<TwoProcesses>();
  TrainRun both = train_with(two, "two");
  ASSERT_EQ(one.train.size(), 8u);
  ASSERT_EQ(both.train.size(), 8u);
  for (const auto& [it, loss] : one.train) {
    EXPECT_NEAR(both.train[it], loss, 1e-6) << "iteration " << it;
    EXPECT_EQ(both.tokens[it], 2 * one.tokens[it]) << "iteration " << it;
  }
  ASSERT_EQ(both.val.size(), one.val.size());
  for (const auto& [it, loss] : one.val) EXPECT_NEAR(both.val[it], loss, 1e-6) << "validation at " << it;
  EXPECT_GT(std::abs(one.train[8] - one.train[1]), 1e-3) << "the run must learn something for this to test anything";
  EXPECT_EQ(two->gradient_calls, 4);  // 8 iterations, an update every 2
  EXPECT_EQ(two->batch_calls, 8 + 3 * 2);  // and 3 validations of 2 batches
}

TEST(Reducer, TheUpdateUsesTheReducedGradients) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "lora" / "parity.json");
  auto cancel = std::make_shared<TwoProcesses>();
  cancel->cancel = true;
  TrainRun r = train_with(cancel, "cancel");
  auto w = mx::load_safetensors((r.dir / "adapters.safetensors").string()).first;
  int lora_b = 0;
  for (const auto& [k, v] : w)
    if (k.ends_with(".lora_b")) {
      ++lora_b;
      EXPECT_EQ(mx::max(mx::abs(v)).item<float>(), 0.0f) << k;
    }
  EXPECT_GT(lora_b, 0);
}

}  // namespace
}  // namespace lmlab::test
