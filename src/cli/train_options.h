// The flags of `lmlab lora` and `lmlab data`, declared once: each maps to one
// key of train::TrainConfig (mlx_lm.lora's names). A run's settings are the
// defaults, then the YAML config (-c), then the flags the user gave.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "lmlab/train.h"

namespace lmlab::cli {

struct TrainFlags {
  std::string config;                                             // -c/--config YAML file
  nlohmann::json given = nlohmann::json::object();                // flags the user set, by config key
};

// Registers -c/--config and the flags whose config keys are in `keys` (all when empty).
void add_train_flags(CLI::App& app, const std::shared_ptr<TrainFlags>& flags,
                     const std::vector<std::string>& keys = {});
// Defaults < YAML < flags, validated.
train::TrainConfig resolve_train_config(const TrainFlags& flags);

}  // namespace lmlab::cli
