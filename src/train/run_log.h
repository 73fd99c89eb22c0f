// A run's log beside its adapters: train_log.csv (one row per report and per
// validation, the numbers the progress lines show) and loss_curve.svg (train
// and validation loss against the iteration), both rewritten atomically after
// each event.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lmlab::train {

struct LogRow {
  int iteration = 0;
  std::optional<double> train_loss{}, val_loss{};
  double learning_rate = 0, it_per_sec = 0, tokens_per_sec = 0;
  long long trained_tokens = 0;
  double peak_memory_gb = 0;
};

class RunLog {
 public:
  explicit RunLog(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // Reads an earlier run's rows up to `iteration` (a resumed run redoes the rest).
  void resume(int iteration);
  void add(const LogRow& row);
  void write() const;  // train_log.csv and loss_curve.svg
  const std::vector<LogRow>& rows() const { return rows_; }

 private:
  std::filesystem::path dir_;
  std::vector<LogRow> rows_;
};

// An SVG line chart of train and validation loss against iteration.
std::string loss_curve_svg(const std::vector<LogRow>& rows, const std::string& title);

}  // namespace lmlab::train
