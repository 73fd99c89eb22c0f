// Helpers for the lab tests: tiny fixture models and the default model, loaded once.
#pragma once

#include "lmlab/analysis.h"
#include "lmlab/io.h"
#include "models/model_test_util.h"

namespace lmlab::test {

inline std::unique_ptr<Model> load_tiny(const std::string& name) {
  (void)cpu_context();
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  return make_model(d.config, std::move(d.weights), mlx::core::float32);
}

inline std::vector<float> to_vec(const mlx::core::array& a) {
  mlx::core::array f = mlx::core::contiguous(mlx::core::astype(a, mlx::core::float32));
  mlx::core::eval(f);
  return {f.data<float>(), f.data<float>() + f.size()};
}

// The default model (SmolLM2-135M-Instruct Q4_1), loaded once per test binary.
inline LoadedModel& default_model() {
  static LoadedModel m = load_model(cpu_context(), LoadOptions{});
  return m;
}

}  // namespace lmlab::test
