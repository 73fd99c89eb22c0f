// Learning-rate schedules with mlx.optimizers.schedulers' semantics
// (cosine_decay, linear_schedule, exponential_decay, step_decay, join_schedules)
// and mlx-lm's build_schedule (a linear warm-up joined at warmup + 1).
#pragma once

#include <functional>

#include "lmlab/train.h"

namespace lmlab::train {

// The learning rate at an optimizer step (0 for the first update).
using Schedule = std::function<double(long step)>;

Schedule constant_schedule(double lr);
Schedule cosine_decay(double init, long decay_steps, double end = 0.0);
Schedule linear_schedule(double init, double end, long steps);
Schedule exponential_decay(double init, double decay_rate);
Schedule step_decay(double init, double decay_rate, long step_size);
// schedules[i + 1] takes over at boundaries[i], counting steps from there.
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<long> boundaries);

// The schedule of a run: cfg.lr_schedule as mlx-lm builds it, or the constant
// learning rate. Empty arguments decay from cfg.learning_rate to 0 over the
// `updates` after the warm-up. Throws std::invalid_argument for wrong arguments.
Schedule build_schedule(const TrainConfig& cfg, long updates);

}  // namespace lmlab::train
