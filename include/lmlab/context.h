// The run Context: device choice, RNG seed and memory limits, built once in
// main (or at server start) and passed down. It is the only place lmlab sets
// MLX's process-wide defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lmlab {

enum class DeviceKind { Auto, Cpu, Gpu };

struct ContextOptions {
  DeviceKind device = DeviceKind::Auto;
  std::optional<uint64_t> seed;        // default: time-based
  std::optional<size_t> memory_limit;  // bytes; MLX throttles scheduling above it
  std::optional<size_t> cache_limit;   // bytes of freed buffers kept for reuse
};

class Context {
 public:
  explicit Context(const ContextOptions& opts = {});

  bool on_gpu() const { return gpu_; }
  std::string device_name() const;  // "cpu" or "gpu (cuda)" / "gpu (metal)"
  uint64_t seed() const { return seed_; }

  // Memory statistics of the engine, in bytes.
  static size_t active_memory();
  static size_t peak_memory();
  static void reset_peak_memory();

 private:
  bool gpu_ = false;
  uint64_t seed_ = 0;
};

}  // namespace lmlab
