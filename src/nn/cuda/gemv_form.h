// The form in which the GPU's GEMV kernels read a projection (nn::cuda's
// fused decoder step). They read MLX's affine layout with 4- or 8-bit levels;
// the other formats a model brings are repacked once, exactly, into 8-bit
// levels with the same scales and biases:
//   affine 2/3/5/6-bit (a GGUF's Q5_0 and Q5_1, MLX's 5-bit)  → 8-bit, same group
//   raw Q2_K, Q3_K, Q6_K blocks (io::ggml_affine_form)        → 8-bit, group 16
// The levels are the same integers, so w = scale · level + bias is unchanged;
// the K-quants' float32 sub-block scales and biases are rounded to the compute
// dtype, as a GGUF's other scales are on a GPU (models' cast_floats). The
// repacked copy costs 8 bits a weight beside the original (kept: the composed
// block and the lab commands read it); it is made on first use and held while
// the original buffers live. Built in every backend (the repacking is MLX ops,
// checked on the CPU); only the CUDA step uses it.
#pragma once

#include <optional>

#include <mlx/array.h>

#include "nn/fused_step.h"

namespace lmlab::nn::cuda {

// p as the GEMV reads it, or nullopt: a format with no exact 8-bit form (IQ4
// codebooks, mxfp4...). Evaluates p's arrays when they are not yet.
std::optional<QuantizedLinear> gemv_form(const QuantizedLinear& p, mlx::core::Dtype dtype);

}  // namespace lmlab::nn::cuda
