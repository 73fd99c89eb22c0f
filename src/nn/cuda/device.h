// The host side of lmlab's CUDA kernels (internal): the precompiled module
// loaded with the driver API, device memory that MLX arrays can own, and
// launches added to MLX's CUDA graph through its command encoder or to a graph
// of lmlab's own.
//
// Contract: call from the thread MLX evaluates a GPU stream on (eval_gpu);
// the stream's device context is made current first. Errors throw
// std::runtime_error naming the CUDA call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

// Where a step's kernel launches go, in the order they are added: MLX's CUDA
// graph (EncoderLaunches) or a graph lmlab owns and replays (StepGraph).
class Launches {
 public:
  virtual ~Launches() = default;
  // A launch of f with one by-value parameter block of `size` bytes.
  virtual void add(CUfunction f, dim3 grid, dim3 block, uint32_t smem, const void* params, size_t size) = 0;
};

// Launches added to MLX's CUDA graph through its command encoder. MLX orders
// the nodes of its graph by the arrays registered before each: the first
// launch is registered after every input, each launch reads and writes the
// scratch (so each follows the one before), and each writes the outputs (so
// their readers follow the last).
class EncoderLaunches : public Launches {
 public:
  EncoderLaunches(mlx::core::cu::CommandEncoder& enc, const std::vector<mlx::core::array>& inputs,
                  const std::vector<mlx::core::array>& outputs, const mlx::core::array* scratch = nullptr)
      : enc_(enc), inputs_(inputs), outputs_(outputs), scratch_(scratch) {}
  void add(CUfunction f, dim3 grid, dim3 block, uint32_t smem, const void* params, size_t size) override;

 private:
  mlx::core::cu::CommandEncoder& enc_;
  const std::vector<mlx::core::array>& inputs_;
  const std::vector<mlx::core::array>& outputs_;
  const mlx::core::array* scratch_;
  bool first_ = true;
};

template <class Params>
void launch(Launches& to, CUfunction f, dim3 grid, dim3 block, uint32_t smem, const Params& params) {
  to.add(f, grid, block, smem, &params, sizeof(Params));
}

// Throws std::runtime_error "[cuda] what: <CUDA's error string>" unless r is CUDA_SUCCESS.
void check(CUresult r, const char* what);

}  // namespace lmlab::nn::cuda
