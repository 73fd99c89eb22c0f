// silu(gate) · up, the SwiGLU MLP's activation, as one MLX primitive on CPU:
// one pass with a vectorized exp instead of MLX's sigmoid (a scalar exp on x86)
// and two multiplies, each its own graph node and buffer.
#pragma once

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn {

using mlx::core::array;

// gate · sigmoid(gate) · up. Float32 inputs of one shape on a CPU stream take
// lmlab's kernel; anything else is the same composition of MLX ops.
array swiglu(const array& gate, const array& up, mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn
