// Elementwise kernels behind lmlab's fused CPU primitives (internal); the AVX2
// versions live in elementwise_avx2.cpp, compiled with -mavx2 -mfma and chosen
// at run time. No templates or inline functions here (see quantized_matmul_kernels.h).
#pragma once

#include <cstdint>

namespace lmlab::nn::cpu {

// Whether this CPU runs the AVX2+FMA kernels (checked once).
bool avx2_fma();

// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i], for i < n.
using SwigluKernel = void (*)(const float* gate, const float* up, float* out, long n);

void swiglu_scalar(const float* gate, const float* up, float* out, long n);
// The best kernel this CPU runs (AVX2 when it has it, else the scalar one).
SwigluKernel swiglu_kernel();
// The AVX2+FMA kernel, or nullptr when not compiled in.
SwigluKernel avx2_swiglu();

// out[i] = gelu_tanh(gate[i]) · up[i] (MLX's gelu_approx), same signature.
void geglu_scalar(const float* gate, const float* up, float* out, long n);
SwigluKernel geglu_kernel();
SwigluKernel avx2_geglu();

// SwiGLU's derivatives for the cotangent dout: with s = sigmoid(gate[i]),
// dgate[i] = dout[i] · up[i] · s · (1 + gate[i] · (1 − s)) and
// dup[i] = dout[i] · gate[i] · s, for i < n.
using SwigluGradKernel = void (*)(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                                  long n);
void swiglu_grad_scalar(const float* gate, const float* up, const float* dout, float* dgate, float* dup, long n);
SwigluGradKernel swiglu_grad_kernel();
SwigluGradKernel avx2_swiglu_grad();

// out[i] = s · q_i + b for the n values (a multiple of 8) packed in w at
// `bits` (4 or 8) per value, value i at bit bits·i of the words, MLX's affine
// layout: one group of a quantized row.
using DequantGroupKernel = void (*)(const uint32_t* w, int n, int bits, float s, float b, float* out);
void dequant_group_scalar(const uint32_t* w, int n, int bits, float s, float b, float* out);
DequantGroupKernel dequant_group_kernel();
DequantGroupKernel avx2_dequant_group();

// log Σ_j e^x[j] over one row of n ≥ 1 logits, shifted by the row's maximum
// (NaN when a logit is NaN; −inf when all are −inf).
using LogsumexpKernel = float (*)(const float* x, long n);
float logsumexp_scalar(const float* x, long n);
LogsumexpKernel logsumexp_kernel();
LogsumexpKernel avx2_logsumexp();

// out[j] = g · e^(x[j] − lse) for j < n: the row's softmax scaled by g, given
// its logsumexp (so every exponent is ≤ 0).
using ScaledSoftmaxKernel = void (*)(const float* x, long n, float lse, float g, float* out);
void scaled_softmax_scalar(const float* x, long n, float lse, float g, float* out);
ScaledSoftmaxKernel scaled_softmax_kernel();
ScaledSoftmaxKernel avx2_scaled_softmax();

}  // namespace lmlab::nn::cpu
