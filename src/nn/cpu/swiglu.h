// The gated MLP activations as one MLX primitive on CPU: silu(gate) · up
// (SwiGLU) and gelu_tanh(gate) · up (GeGLU). One pass (for SwiGLU with a
// vectorized exp) instead of MLX's sigmoid or tanh (scalar on x86) and the
// multiplies, each its own graph node and buffer.
//
// Contract: float32 inputs of one shape; large inputs split over lmlab's compute
// pool; reads gate and up, writes only its output.
#pragma once

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn {

using mlx::core::array;

// gate · sigmoid(gate) · up. Float32 inputs of one shape on a CPU stream take
// lmlab's kernel; anything else is the same composition of MLX ops.
array swiglu(const array& gate, const array& up, mlx::core::StreamOrDevice s = {});

// 0.5 · gate · (1 + tanh(√(2/π) · (gate + 0.044715 · gate³))) · up, MLX's
// nn.gelu_approx of the gate times up (Gemma's GeGLU); CPU kernel as for swiglu.
array geglu(const array& gate, const array& up, mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn
