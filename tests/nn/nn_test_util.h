// Helpers the fused-step tests share: tiny checkpoints in float32, and the
// skip for the CPU primitives' tests when the core checks run on a GPU
// (LMLAB_TEST_DEVICE=gpu).
#pragma once

#include <memory>
#include <string>

#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"

namespace lmlab::test::nn_util {

inline std::unique_ptr<Model> load_tiny(const std::string& name) {
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  return make_model(d.config, std::move(d.weights), mlx::core::float32);
}

// The largest |a - b|.
inline float max_diff(const mlx::core::array& a, const mlx::core::array& b) {
  return mlx::core::max(mlx::core::abs(mlx::core::subtract(a, b))).item<float>();
}

}  // namespace lmlab::test::nn_util

#define LMLAB_SKIP_OFF_CPU()                                                                     \
  do {                                                                                           \
    (void)::lmlab::test::cpu_context();                                                          \
    if (mlx::core::default_device() != mlx::core::Device::cpu) GTEST_SKIP() << "a CPU primitive"; \
  } while (0)
