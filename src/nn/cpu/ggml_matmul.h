// y = x · dequantize(W)ᵀ for weights kept as raw GGML blocks (QuantSpec modes
// q2_k, q3_k, q6_k, iq4_nl, iq4_xs; lmlab/ggml.h). The blocks are dequantized
// with MLX ops (io::ggml_dequantize, bit-exact to ggml) and multiplied in x's
// dtype, so the same graph runs on any device; gradients reach x through it.
//
// x: (..., K) → (..., N); blocks: (N, K / block · block bytes) uint8.
#pragma once

#include <mlx/array.h>

#include "lmlab/ggml.h"

namespace lmlab::nn {

mlx::core::array ggml_matmul(const mlx::core::array& x, const mlx::core::array& blocks, io::GgmlType type);

}  // namespace lmlab::nn
