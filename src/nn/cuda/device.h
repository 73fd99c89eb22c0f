// The host side of lmlab's CUDA kernels (internal): the precompiled module
// loaded with the driver API, device memory that MLX arrays can own, and
// launches added to MLX's CUDA graph through its command encoder.
//
// Contract: call from the thread MLX evaluates a GPU stream on (eval_gpu);
// the stream's device context is made current first. Errors throw
// std::runtime_error naming the CUDA call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda.h>
#include <mlx/allocator.h>
#include <mlx/backend/cuda/device.h>

namespace lmlab::nn::cuda {

// The kernel `name` (see kernels.cu) of the module loaded into the current
// device's context (loaded on first use).
CUfunction kernel(const std::string& name);

// Streaming multiprocessors of the current device.
int multiprocessors();

// Blocks of `threads` threads and `smem` dynamic shared memory bytes that one
// multiprocessor holds at once for f (its registers decide, mostly): a grid of
// this many per multiprocessor runs in one wave.
int resident_blocks(CUfunction f, int threads, size_t smem);

// `bytes` of device memory for an array the step writes, from lmlab's block
// cache (device.cpp says why not MLX's unified allocator).
mlx::core::allocator::Data device_memory(size_t bytes, mlx::core::cu::CommandEncoder& enc);

// Adds a launch of f with one by-value parameter block to the encoder's graph.
template <class Params>
void launch(mlx::core::cu::CommandEncoder& enc, CUfunction f, dim3 grid, dim3 block, uint32_t smem,
            const Params& params) {
  void* args[] = {const_cast<Params*>(&params)};
  enc.add_kernel_node_raw(f, grid, block, dim3(1, 1, 1), smem, args);
}

// Throws std::runtime_error "[cuda] what: <CUDA's error string>" unless r is CUDA_SUCCESS.
void check(CUresult r, const char* what);

}  // namespace lmlab::nn::cuda
