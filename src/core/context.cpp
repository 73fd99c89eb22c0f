#include <chrono>

#include <mlx/mlx.h>

#include "core/distributed.h"
#include "lmlab/context.h"

namespace mx = mlx::core;

namespace lmlab {

bool gpu_available() {
  try {
    return mx::is_available(mx::Device::gpu) && mx::device_count(mx::Device::gpu) > 0;
  } catch (const std::exception&) {
    return false;
  }
}

Context::Context(const ContextOptions& opts) {
  gpu_ = opts.device == DeviceKind::Gpu ||
         (opts.device == DeviceKind::Auto && gpu_available());
  if (opts.device == DeviceKind::Gpu && !gpu_available())
    throw std::runtime_error("[context] --device gpu requested but no GPU is available");
  mx::set_default_device(gpu_ ? mx::Device::gpu : mx::Device::cpu);
  seed_ = opts.seed.value_or(static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count()));
  mx::random::seed(seed_);
  if (opts.memory_limit) mx::set_memory_limit(*opts.memory_limit);
  if (opts.cache_limit) mx::set_cache_limit(*opts.cache_limit);
  if (opts.join_launch)
    if (auto g = distributed::join(opts.init_timeout.value_or(distributed::init_timeout_from_env())))
      group_ = std::make_shared<const mx::distributed::Group>(*g);
}

int Context::rank() const { return group_ ? group_->rank() : 0; }
int Context::world_size() const { return group_ ? group_->size() : 1; }

std::string Context::device_name() const {
  if (!gpu_) return "cpu";
#if defined(__APPLE__)
  return "gpu (metal)";
#else
  return "gpu (cuda)";
#endif
}

size_t Context::active_memory() { return mx::get_active_memory(); }
size_t Context::peak_memory() { return mx::get_peak_memory(); }
void Context::reset_peak_memory() { mx::reset_peak_memory(); }

}  // namespace lmlab
