// Optimizers and learning-rate schedules against mlx.optimizers on the same
// parameters and gradients (5 steps of Adam with and without bias correction,
// AdamW on a cosine schedule, SGD plain, with momentum/decay/dampening and
// Nesterov), and mlx-lm's build_schedule over 30 steps. lmlab computes the
// schedules in double, mlx in float32: agreement to 1e-6 relative.
#include <cmath>

#include <fmt/format.h>

#include <mlx/mlx.h>

#include "models/model_test_util.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

std::filesystem::path lora_fixtures() { return fixtures_dir() / "lora"; }

float max_rel(const mx::array& a, const mx::array& b) {
  return mx::max(mx::divide(mx::abs(mx::subtract(a, b)), mx::add(mx::abs(b), mx::array(1e-3f)))).item<float>();
}

TEST(Optimizers, StepsEqualMlxOptimizers) {
  LMLAB_REQUIRE_FILE(lora_fixtures() / "optimizers.safetensors");
  auto t = mx::load_safetensors((lora_fixtures() / "optimizers.safetensors").string()).first;
  const std::vector<std::string> keys = {"a", "b"};
  struct Case {
    const char* name;
    const char* optimizer;
    nlohmann::json options;
    train::Schedule lr;
  };
  const std::vector<Case> cases = {
      {"adam", "adam", {}, train::constant_schedule(1e-2)},
      {"adam_bc", "adam", {{"betas", {0.8, 0.95}}, {"eps", 1e-6}, {"bias_correction", true}},
       train::constant_schedule(1e-2)},
      {"adamw", "adamw", {{"weight_decay", 0.1}}, train::cosine_decay(1e-2, 4, 1e-3)},
      {"sgd", "sgd", {}, train::constant_schedule(0.1)},
      {"sgd_momentum", "sgd", {{"momentum", 0.9}, {"weight_decay", 0.01}, {"dampening", 0.1}},
       train::constant_schedule(0.1)},
      {"sgd_nesterov", "sgd", {{"momentum", 0.9}, {"nesterov", true}}, train::constant_schedule(0.1)},
  };
  for (const Case& c : cases) {
    auto opt = train::Optimizer::make(c.optimizer, c.options, c.lr);
    std::vector<mx::array> params{t.at("p0.a"), t.at("p0.b")};
    float worst = 0;
    for (int i = 0; i < 5; ++i) {
      std::vector<mx::array> grads{t.at(fmt::format("grad{}.a", i)), t.at(fmt::format("grad{}.b", i))};
      params = opt->update(params, grads);
      for (size_t k = 0; k < keys.size(); ++k)
        worst = std::max(worst, max_rel(params[k], t.at(fmt::format("{}.{}.{}", c.name, i, keys[k]))));
      EXPECT_NEAR(opt->learning_rate(), t.at(fmt::format("{}.{}.lr", c.name, i)).item<float>(), 1e-8) << c.name;
    }
    std::printf("[ optim    ] %-13s 5 steps, max relative difference %.2g\n", c.name, worst);
    EXPECT_LT(worst, 1e-5f) << c.name;
  }
}

TEST(Optimizers, SchedulesEqualMlxLmBuildSchedule) {
  LMLAB_REQUIRE_FILE(lora_fixtures() / "schedules.json");
  auto golden = read_json(lora_fixtures() / "schedules.json");
  for (const auto& [name, g] : golden.items()) {
    train::TrainConfig cfg = train::TrainConfig::from_json({{"lr_schedule", g["config"]}});
    train::Schedule s = train::build_schedule(cfg, 100);
    for (int i = 0; i < 30; ++i) {
      const double want = g["lr"][i].get<double>();
      // float32 cosines near the end of a decay: 1e-10 absolute on rates of 1e-3.
      EXPECT_NEAR(s(i), want, 1e-6 * std::abs(want) + 1e-10) << name << " step " << i;
    }
  }
}

TEST(Optimizers, BadSettingsAreClearErrors) {
  EXPECT_THROW(train::Optimizer::make("adam", {{"betas", {1.0, 0.9}}}, train::constant_schedule(1)),
               std::invalid_argument);
  EXPECT_THROW(train::Optimizer::make("sgd", {{"nesterov", true}}, train::constant_schedule(1)), std::invalid_argument);
  train::TrainConfig cfg;
  cfg.lr_schedule = train::ScheduleConfig{.name = "step_decay"};
  EXPECT_THROW(train::build_schedule(cfg, 10), std::invalid_argument) << "step_decay needs its arguments";
}

}  // namespace
}  // namespace lmlab::test
