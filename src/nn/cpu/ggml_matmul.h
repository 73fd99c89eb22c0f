// y = x · dequantize(W)ᵀ for weights kept as raw GGML blocks (QuantSpec modes
// q2_k, q3_k, q6_k, iq4_nl, iq4_xs; lmlab/ggml.h).
//
// On a CPU stream with float32 x, lmlab's kernel: each thread decodes its rows
// of W with io::ggml_dequantize_row (ggml's arithmetic, bit for bit) into a
// buffer and takes float32 dot products with every row of x (AVX2+FMA chosen at
// run time, a portable loop otherwise), so a row is decoded once per call
// whatever the number of x rows. Elsewhere (GPU streams, half-precision x) the
// blocks are dequantized with MLX ops (io::ggml_dequantize) and multiplied: the
// same values, correct on any device, not fast. Gradients reach x either way.
//
// x: (..., K) → (..., N); blocks: (N, K / block · block bytes) uint8.
#pragma once

#include <mlx/array.h>
#include <mlx/stream.h>
#include <mlx/utils.h>

#include "lmlab/ggml.h"

namespace lmlab::nn {

mlx::core::array ggml_matmul(const mlx::core::array& x, const mlx::core::array& blocks, io::GgmlType type,
                             mlx::core::StreamOrDevice s = {});

// Whether ggml_matmul would use lmlab's kernel for these arguments.
bool ggml_matmul_is_native(const mlx::core::array& x, const mlx::core::array& blocks, io::GgmlType type,
                           mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn
