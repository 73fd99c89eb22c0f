// lmlab's CPU quantized matmul: y = x @ dequantize(w)ᵀ for MLX affine
// quantization, as an MLX primitive with AVX2 kernels and a small thread pool.
// MLX's own CPU quantized_matmul is single-threaded scalar code on Linux
// (docs/mlx-reference.md §4). On a GPU stream, up to 8 rows take lmlab's GEMV
// (nn/cuda/qgemv.h) and prompts on large matrices the dequantized weights
// through MLX's GEMM; everything else falls back to mx::quantized_matmul.
//
// Contract: float32 activations; runs on MLX's CPU stream thread plus lmlab's
// compute pool, split over output columns; reads the packed weights, scales and
// biases in place, writes only its output.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <mlx/array.h>
#include <mlx/utils.h>

#include "nn/cpu/quantized_matmul_kernels.h"

namespace lmlab::nn {

using mlx::core::array;

// x @ dequantize(w, scales, biases)ᵀ, like mx::quantized_matmul(..., /*transpose=*/true).
// x: (..., K) → (..., N); w: (N, K·bits/32) uint32; scales, biases: (N, K/group_size).
// Our kernel runs for float32 x on a CPU stream, affine mode, bits 4, 5 or 8,
// group size 32/64/128; anything else goes to mx::quantized_matmul.
//
// activations: "" multiplies float32 x by the dequantized weights. "q8_0" or
// "q8_1" first rounds x to int8 in blocks of 32 and takes integer dot products,
// which is how llama.cpp computes with GGUF Q4_0/Q8_0 (q8_0) and Q4_1 (q8_1)
// weights (quantized_matmul_kernels.h, ActQuant). Our kernel only; elsewhere x
// stays float. Gradients with respect to x treat the rounding as identity.
array quantized_matmul(const array& x, const array& w, const array& scales,
                       const std::optional<array>& biases, int group_size, int bits,
                       const std::string& mode = "affine", const std::string& activations = "",
                       mlx::core::StreamOrDevice s = {});

// Whether quantized_matmul would use lmlab's kernel for these arguments.
bool quantized_matmul_is_native(const array& x, const array& w, const array& scales,
                                const std::optional<array>& biases, int group_size, int bits,
                                const std::string& mode = "affine",
                                mlx::core::StreamOrDevice s = {});

namespace cpu {
// The kernels' names for a scale/bias dtype and for an `activations` argument
// (throws std::invalid_argument on an unknown one).
ScaleType scale_type(mlx::core::Dtype t);
ActQuant parse_activations(const std::string& name);
// Whether lmlab's kernel takes these weights for inputs of K features (any device):
// affine 4, 5 or 8 bits, group 32, 64 or 128, with biases.
bool native_weights(const array& w, const array& scales, const std::optional<array>& biases,
                    int group_size, int bits, const std::string& mode, int K);
// Whether it takes that `activations` argument with `bits`-bit weights: float,
// or int8 (q8_0, q8_1), with 4-, 5- and 8-bit weights alike.
bool native_activations(int bits, const std::string& activations);
// Whether every bias is exactly −2^(bits−1) times its scale (QmmProblem::symmetric),
// for evaluated arrays whose buffers belong to scales_data and biases_data (the
// data_shared_ptr() of the arrays in the graph: a CPU task's weak copies carry
// their own). Scanned once per pair of buffers and remembered weakly, so a
// freed buffer's answer never passes to a new one at the same address.
bool symmetric_biases(const array& scales, const array& biases, int bits,
                      const std::shared_ptr<array::Data>& scales_data,
                      const std::shared_ptr<array::Data>& biases_data);
}  // namespace cpu

}  // namespace lmlab::nn
