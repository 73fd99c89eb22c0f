// Elementwise kernels behind lmlab's fused CPU primitives (internal); the AVX2
// versions live in elementwise_avx2.cpp, compiled with -mavx2 -mfma and chosen
// at run time. No templates or inline functions here (see quantized_matmul_kernels.h).
#pragma once

namespace lmlab::nn::cpu {

// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i], for i < n.
using SwigluKernel = void (*)(const float* gate, const float* up, float* out, long n);

void swiglu_scalar(const float* gate, const float* up, float* out, long n);
// The best kernel this CPU runs (AVX2 when it has it, else the scalar one).
SwigluKernel swiglu_kernel();
// The AVX2+FMA kernel, or nullptr when not compiled in.
SwigluKernel avx2_swiglu();

// out[i] = gelu_tanh(gate[i]) · up[i] (MLX's gelu_approx), same signature.
void geglu_scalar(const float* gate, const float* up, float* out, long n);

}  // namespace lmlab::nn::cpu
