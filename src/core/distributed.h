// Joining the ranks a launcher started (lmlab launch, mlx.launch, or by hand
// with MLX's variables): which backend the environment describes, and
// mx::distributed::init bounded in time. MLX's ring backend accepts its left
// neighbour's connection with no time limit, so a rank whose peer never starts
// would wait forever; here it gives up with an error naming the flag that
// waits longer.
#pragma once

#include <optional>
#include <string>

#include <mlx/distributed/distributed.h>

namespace lmlab::distributed {

// "ring" or "nccl" when the environment places this process in a group of
// more than one rank (LMLAB_LAUNCH_BACKEND; else NCCL_HOST_IP with
// MLX_WORLD_SIZE, or MLX_HOSTFILE with MLX_RANK); "" when it runs alone.
std::string backend_from_env();

// Seconds to wait for the other ranks: LMLAB_INIT_TIMEOUT, else 60.
double init_timeout_from_env();

// Joins the group the environment describes, or nullopt when there is none.
// Throws std::runtime_error when the other ranks do not arrive within
// `timeout_s` or the backend fails to connect.
std::optional<mlx::core::distributed::Group> join(double timeout_s);

}  // namespace lmlab::distributed
