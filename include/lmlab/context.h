// The run Context: device choice, RNG seed and memory limits, built once in
// main (or at server start) and passed down. It is the only place lmlab sets
// MLX's process-wide defaults.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace mlx::core::distributed {
struct Group;
}

namespace lmlab {

enum class DeviceKind { Auto, Cpu, Gpu };

struct ContextOptions {
  DeviceKind device = DeviceKind::Auto;
  std::optional<uint64_t> seed;        // default: time-based
  std::optional<size_t> memory_limit;  // bytes; MLX throttles scheduling above it
  std::optional<size_t> cache_limit;   // bytes of freed buffers kept for reuse
  // Join the other ranks when this process was started by `lmlab launch` (or
  // MLX's own variables describe a group); see launch.h.
  bool join_launch = true;
  std::optional<double> init_timeout;  // seconds; default LMLAB_INIT_TIMEOUT, else 60
};

// Whether a GPU backend with at least one device is present (the CUDA build
// reports one even on machines without a GPU; this counts devices).
bool gpu_available();

class Context {
 public:
  explicit Context(const ContextOptions& opts = {});

  bool on_gpu() const { return gpu_; }
  std::string device_name() const;  // "cpu" or "gpu (cuda)" / "gpu (metal)"
  uint64_t seed() const { return seed_; }

  // The group of launched ranks this process joined; nullptr when it runs alone.
  const mlx::core::distributed::Group* group() const { return group_.get(); }
  int rank() const;        // 0 when alone
  int world_size() const;  // 1 when alone

  // Memory statistics of the engine, in bytes.
  static size_t active_memory();
  static size_t peak_memory();
  static void reset_peak_memory();

 private:
  bool gpu_ = false;
  uint64_t seed_ = 0;
  std::shared_ptr<const mlx::core::distributed::Group> group_;
};

}  // namespace lmlab
