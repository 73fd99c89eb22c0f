// y = x · dequantize(W)ᵀ for weights kept as raw GGML blocks (QuantSpec modes
// q2_k, q3_k, q6_k, iq4_nl, iq4_xs; lmlab/ggml.h).
//
// On a CPU stream with float32 x, lmlab's kernels, split over its compute pool
// (nn/cpu/quantized_matmul_kernels.h): up to 8 rows of x, Q6_K by an AVX2 GEMV
// that forms each weight as ggml does ((d·sc)·(q − 32)) in registers, other
// types by decoding each row of W once (io::ggml_dequantize_row, ggml's
// arithmetic bit for bit) and taking float32 dot products; more rows by panels
// of W decoded to the same values and reused across all rows (AVX2), chosen at
// run time, with the row decoding as the portable path. Elsewhere (GPU
// streams, half-precision x) the blocks are dequantized with MLX ops
// (io::ggml_dequantize) and multiplied: the same values, correct on any
// device, not fast. Gradients reach x either way.
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
