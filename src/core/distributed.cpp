// Joining a launched group: mx::distributed::init on a helper thread, waited
// for with a deadline. A thread left blocked in MLX's accept() after the
// deadline holds only its own objects and ends with the process.
#include "core/distributed.h"

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "lmlab/launch.h"

namespace mxd = mlx::core::distributed;

namespace lmlab::distributed {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string meeting_point(const std::string& backend) {
  if (backend == "nccl") return fmt::format("NCCL at {}:{}", env("NCCL_HOST_IP"), env("NCCL_PORT"));
  return fmt::format("the ring of MLX_HOSTFILE {}", env("MLX_HOSTFILE"));
}

}  // namespace

std::string backend_from_env() {
  if (launched_rank() < 0) return "";
  const std::string size = env("MLX_WORLD_SIZE");
  if (size == "1") return "";
  std::string backend = env("LMLAB_LAUNCH_BACKEND");
  if (backend.empty()) backend = !env("NCCL_HOST_IP").empty() ? "nccl" : !env("MLX_HOSTFILE").empty() ? "ring" : "";
  if (backend == "ring" && env("MLX_HOSTFILE").empty()) return "";
  if (backend == "nccl" && size.empty()) return "";
  return backend;
}

double init_timeout_from_env() {
  const std::string v = env("LMLAB_INIT_TIMEOUT");
  char* end = nullptr;
  const double t = v.empty() ? 0 : std::strtod(v.c_str(), &end);
  return t > 0 && end && *end == '\0' ? t : 60.0;
}

std::optional<mxd::Group> join(double timeout_s) {
  const std::string backend = backend_from_env();
  if (backend.empty()) return std::nullopt;
  const int rank = launched_rank();
  const std::string size = env("MLX_WORLD_SIZE").empty() ? "?" : env("MLX_WORLD_SIZE");
  auto task = std::make_shared<std::packaged_task<mxd::Group()>>([backend] { return mxd::init(/*strict=*/true, backend); });
  std::future<mxd::Group> joined = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (joined.wait_for(std::chrono::duration<double>(timeout_s)) != std::future_status::ready)
    throw std::runtime_error(fmt::format(
        "[distributed] rank {} of {} waited {} s for the other ranks at {}; is every rank running? "
        "(lmlab launch --init-timeout SECONDS waits longer)",
        rank, size, timeout_s, meeting_point(backend)));
  try {
    mxd::Group g = joined.get();
    if (g.size() < 2)
      throw std::runtime_error(fmt::format("the {} backend formed a group of {} rank", backend, g.size()));
    return g;
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("[distributed] rank {} of {} could not join {}: {}", rank, size,
                                         meeting_point(backend), e.what()));
  }
}

}  // namespace lmlab::distributed
