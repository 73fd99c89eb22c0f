// Helpers shared by the analysis sources: MLX arrays to plain vectors, dtype
// names, token-id arrays.
#pragma once

#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/analysis.h"
#include "lmlab/weights.h"

namespace lmlab::analysis {

std::string dtype_name(mlx::core::Dtype d);
// Evaluates `a` and copies it out as float32, row-major.
std::vector<float> to_floats(const mlx::core::array& a);
// (1, L) int32 from ids; throws std::invalid_argument when empty.
mlx::core::array ids_array(const std::vector<int>& ids);
ParamInfo param_info(const Weights& w, const std::string& name);
// "P" for "P.weight" when P is a quantized module, else "".
std::string quant_prefix(const Weights& w, const std::string& name);
// The dequantized (or dense) float32 value of tensor `name`.
mlx::core::array logical_tensor(const Weights& w, const std::string& name);

}  // namespace lmlab::analysis
