// The files of a run in its adapter folder: mlx-lm's adapter_config.json,
// adapters.safetensors and NNNNNNN_adapters.safetensors, plus lmlab's
// NNNNNNN_state.safetensors beside each checkpoint (optimizer state, the
// batch-order generator, the position in the epoch, the report accumulators),
// which makes --resume continue exactly. Every file is written to a temp name
// and renamed, so a killed run leaves whole files only.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <mlx/array.h>
#include <nlohmann/json.hpp>

namespace lmlab::train {

struct RunState {
  int iteration = 0;      // iterations completed
  long optimizer_step = 0;
  double learning_rate = 0;
  std::string rng;        // NumpyRandom::state()
  std::vector<int> epoch_order;  // the current epoch's batch order
  int epoch_pos = 0;             // next position in it
  float losses = 0;              // report window: summed step losses, targets, steps, seconds
  int64_t n_tokens = 0;
  int steps = 0;
  double train_time = 0;
  int64_t trained_tokens = 0;
  double train_seconds = 0;      // training time of the whole run so far
  uint64_t data_fingerprint = 0;
  nlohmann::json config;         // the settings that must not change on resume
  // optimizer.<slot>.<param>, grad_accum.<param>
  std::unordered_map<std::string, mlx::core::array> arrays;
};

std::filesystem::path checkpoint_adapters(const std::filesystem::path& dir, int iteration);
std::filesystem::path checkpoint_state(const std::filesystem::path& dir, int iteration);

void save_state(const std::filesystem::path& file, const RunState& s);
RunState load_state(const std::filesystem::path& file);

// The latest iteration with both its adapters and its state file readable, or nullopt.
std::optional<int> latest_checkpoint(const std::filesystem::path& dir);

// Removes temp files a killed run left behind (never a finished file).
void remove_stale_temps(const std::filesystem::path& dir);

}  // namespace lmlab::train
