// Schedules after mlx/optimizers/schedulers.py and mlx_lm/tuner/utils.py
// (build_schedule). Computed in double; mlx evaluates them in float32, which
// differs in the 7th significant digit.
#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

namespace lmlab::train {

namespace {

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("[lr_schedule] " + what);
}

}  // namespace

Schedule constant_schedule(double lr) {
  return [lr](long) { return lr; };
}

Schedule cosine_decay(double init, long decay_steps, double end) {
  need(decay_steps >= 1, fmt::format("cosine_decay needs decay_steps ≥ 1 (got {})", decay_steps));
  return [=](long step) {
    const double s = static_cast<double>(std::min(step, decay_steps));
    const double decay = 0.5 * (1.0 + std::cos(std::numbers::pi / decay_steps * s));
    return end + decay * (init - end);
  };
}

Schedule linear_schedule(double init, double end, long steps) {
  need(steps >= 1, fmt::format("linear_schedule needs steps ≥ 1 (got {})", steps));
  return [=](long step) { return static_cast<double>(std::min(step, steps)) * ((end - init) / steps) + init; };
}

Schedule exponential_decay(double init, double decay_rate) {
  return [=](long step) { return init * std::pow(decay_rate, static_cast<double>(step)); };
}

Schedule step_decay(double init, double decay_rate, long step_size) {
  need(step_size >= 1, fmt::format("step_decay needs step_size ≥ 1 (got {})", step_size));
  return [=](long step) { return init * std::pow(decay_rate, static_cast<double>(step / step_size)); };
}

Schedule join_schedules(std::vector<Schedule> schedules, std::vector<long> boundaries) {
  need(!schedules.empty() && schedules.size() == boundaries.size() + 1, "join_schedules: one boundary between each pair");
  return [schedules = std::move(schedules), boundaries = std::move(boundaries)](long step) {
    double out = schedules[0](step);
    for (size_t i = 0; i < boundaries.size(); ++i)
      if (step >= boundaries[i]) out = schedules[i + 1](step - boundaries[i]);
    return out;
  };
}

Schedule build_schedule(const TrainConfig& cfg, long updates) {
  if (!cfg.lr_schedule) return constant_schedule(cfg.learning_rate);
  const ScheduleConfig& s = *cfg.lr_schedule;
  std::vector<double> args = s.arguments;
  if (args.empty()) {
    need(s.name == "cosine_decay" || s.name == "linear_schedule",
         s.name + " needs its arguments (lr_schedule.arguments in the YAML config)");
    const long steps = std::max(1L, updates - s.warmup);
    args = s.name == "cosine_decay" ? std::vector<double>{cfg.learning_rate, double(steps), 0.0}
                                    : std::vector<double>{cfg.learning_rate, 0.0, double(steps)};
  }
  auto arg = [&](size_t i, const char* what) {
    need(i < args.size(), fmt::format("{} needs {} (argument {})", s.name, what, i + 1));
    return args[i];
  };
  const size_t max_args = s.name == "exponential_decay" ? 2 : 3;
  need(args.size() <= max_args, fmt::format("{} takes at most {} arguments (got {})", s.name, max_args, args.size()));
  Schedule main;
  if (s.name == "cosine_decay")
    main = cosine_decay(arg(0, "init"), static_cast<long>(arg(1, "decay_steps")), args.size() > 2 ? args[2] : 0.0);
  else if (s.name == "linear_schedule")
    main = linear_schedule(arg(0, "init"), arg(1, "end"), static_cast<long>(arg(2, "steps")));
  else if (s.name == "exponential_decay")
    main = exponential_decay(arg(0, "init"), arg(1, "decay_rate"));
  else if (s.name == "step_decay")
    main = step_decay(arg(0, "init"), arg(1, "decay_rate"), static_cast<long>(arg(2, "step_size")));
  else
    need(false, "unknown schedule '" + s.name + "'");
  if (s.warmup <= 0) return main;
  // mlx-lm: warm up from warmup_init to the schedule's initial value, then hand over at warmup + 1.
  return join_schedules({linear_schedule(s.warmup_init, args[0], s.warmup), main}, {s.warmup + 1L});
}

}  // namespace lmlab::train
