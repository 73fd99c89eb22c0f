// Optimizers with mlx.optimizers' update rules and defaults (Adam, AdamW, SGD),
// over a flat list of parameters. The step counter and learning-rate schedule
// behave as mlx's Optimizer.apply_gradients: the schedule sees the step count
// before the update, which then increments it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <nlohmann/json.hpp>

#include "train/schedule.h"

namespace lmlab::train {

using mlx::core::array;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // name: adam, adamw or sgd; options: that optimizer's optimizer_config entry
  // (mlx's keyword arguments). Throws std::invalid_argument for bad values.
  static std::unique_ptr<Optimizer> make(const std::string& name, const nlohmann::json& options, Schedule lr);

  // New values of `params` after one update with `grads` (same order and shapes).
  std::vector<array> update(const std::vector<array>& params, const std::vector<array>& grads);

  long step() const { return step_; }
  // The learning rate the last update used (mlx-lm's reported learning_rate).
  double learning_rate() const { return lr_; }
  // Per-parameter state slots (Adam: m, v; SGD with momentum: v), for checkpoints.
  virtual std::vector<std::string> slot_names() const = 0;
  std::vector<std::vector<array>>& slots() { return slots_; }
  void restore(long step, double lr) { step_ = step, lr_ = lr; }

 protected:
  explicit Optimizer(Schedule lr) : schedule_(std::move(lr)) {}
  virtual array apply(const array& grad, const array& param, std::vector<array>& slots, const array& lr) = 0;
  virtual void init(const array& param, std::vector<array>& slots) = 0;

  Schedule schedule_;
  std::vector<std::vector<array>> slots_;
  long step_ = 0;
  double lr_ = 0;
};

}  // namespace lmlab::train
