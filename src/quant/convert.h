// convert's quantization of one module, shared with its tests: the values
// mlx_lm.convert would quantize (the module's exact values cast to the output
// dtype) through mx::quantize.
#pragma once

#include <array>
#include <string>

#include <mlx/mlx.h>

#include "lmlab/quant.h"
#include "lmlab/weights.h"

namespace lmlab::quant::detail {

// The exact float32 values of module `prefix` (dequantized when stored quantized).
mlx::core::array module_values(const Weights& w, const std::string& prefix);

// {packed weight, scales, biases}; scales and biases in `dtype`.
std::array<mlx::core::array, 3> quantize_module(const Weights& w, const std::string& prefix, const QuantChoice& q,
                                                mlx::core::Dtype dtype);

}  // namespace lmlab::quant::detail
