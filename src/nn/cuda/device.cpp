// The precompiled kernel module, device memory for MLX arrays, launches.
#include "nn/cuda/device.h"

#include <algorithm>
#include <bit>
#include <map>
#include <tuple>
#include <vector>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

// The fatbin nvcc made from kernels.cu, embedded at build time.
asm(".section .rodata\n"
    ".balign 64\n"
    ".global lmlab_cuda_fatbin\n"
    "lmlab_cuda_fatbin:\n"
    ".incbin \"" LMLAB_CUDA_FATBIN "\"\n"
    ".byte 0\n"
    ".previous\n");
extern "C" const unsigned char lmlab_cuda_fatbin[];

namespace mx = mlx::core;

namespace lmlab::nn::cuda {

void check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* msg = nullptr;
  cuGetErrorString(r, &msg);
  throw std::runtime_error(fmt::format("[cuda] {}: {}", what, msg ? msg : "unknown error"));
}

namespace {

// Larger than the default 48 KB only after the function is told so; the GEMV
// stages up to 8 input rows of up to 12k features.
constexpr int kMaxDynamicSmem = 200 * 1024;

struct Module {
  CUmodule module = nullptr;
  std::map<std::string, CUfunction> functions;
};

std::mutex& module_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

CUfunction kernel(const std::string& name) {
  static std::map<CUcontext, Module> modules;
  CUcontext ctx = nullptr;
  check(cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  if (!ctx) throw std::runtime_error("[cuda] no current CUDA context on this thread");
  std::lock_guard lock(module_mutex());
  Module& m = modules[ctx];
  if (!m.module) check(cuModuleLoadData(&m.module, lmlab_cuda_fatbin), "loading lmlab's kernels (cuModuleLoadData)");
  auto it = m.functions.find(name);
  if (it != m.functions.end()) return it->second;
  CUfunction f = nullptr;
  check(cuModuleGetFunction(&f, m.module, name.c_str()), name.c_str());
  if (name.starts_with("lmlab_qgemv"))
    check(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, kMaxDynamicSmem),
          "cuFuncSetAttribute(max dynamic shared memory)");
  m.functions.emplace(name, f);
  return f;
}

int multiprocessors() {
  CUdevice dev;
  check(cuCtxGetDevice(&dev), "cuCtxGetDevice");
  static std::map<CUdevice, int> counts;
  std::lock_guard lock(module_mutex());
  int& n = counts[dev];
  if (n == 0) check(cuDeviceGetAttribute(&n, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), "cuDeviceGetAttribute");
  return n;
}

int resident_blocks(CUfunction f, int threads, size_t smem) {
  static std::map<std::tuple<CUfunction, int, size_t>, int> counts;
  std::lock_guard lock(module_mutex());
  int& n = counts[{f, threads, smem}];
  if (n == 0) check(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f, threads, smem), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  return std::max(n, 1);
}

namespace {

// Device blocks by size, kept once allocated: a decode step asks for the same
// sizes every time, so after the first token no driver call is made. A block
// comes back when its array is released, which MLX does only after the work
// that used it has completed (so no CUDA call runs from the deleter, which may
// be on MLX's worker thread while MLX captures its stream into a graph).
struct BlockCache {
  std::mutex mutex;
  std::map<std::pair<CUcontext, size_t>, std::vector<mx::cu::CudaBuffer*>> free;
};

BlockCache& block_cache() {
  static auto* cache = new BlockCache;  // outlives every array (never destroyed)
  return *cache;
}

// Sizes rounded to 256 bytes, and to powers of two past 1 MiB (prompt chunks).
size_t block_size(size_t bytes) {
  size_t n = std::max<size_t>(bytes, 1);
  if (n > (1u << 20)) return std::bit_ceil(n);
  return (n + 255) / 256 * 256;
}

}  // namespace

void EncoderLaunches::add(CUfunction f, dim3 grid, dim3 block, uint32_t smem, const void* params, size_t) {
  if (first_)
    for (const mx::array& a : inputs_) enc_.set_input_array(a);
  first_ = false;
  if (scratch_) {
    enc_.set_input_array(*scratch_);
    enc_.set_output_array(*scratch_);
  }
  for (const mx::array& a : outputs_) enc_.set_output_array(a);
  void* args[] = {const_cast<void*>(params)};
  enc_.add_kernel_node_raw(f, grid, block, dim3(1, 1, 1), smem, args);
}

mx::allocator::Data device_memory(size_t bytes, mx::cu::CommandEncoder& enc) {
  CUcontext ctx = nullptr;
  check(cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  const size_t size = block_size(bytes);
  BlockCache& cache = block_cache();
  mx::cu::CudaBuffer* buffer = nullptr;
  {
    std::lock_guard lock(cache.mutex);
    auto& list = cache.free[{ctx, size}];
    if (!list.empty()) {
      buffer = list.back();
      list.pop_back();
    }
  }
  if (!buffer) {
    CUdeviceptr p = 0;
    check(cuMemAlloc(&p, size), "cuMemAlloc");
    buffer = new mx::cu::CudaBuffer{reinterpret_cast<void*>(p), size, enc.device().cuda_device()};
  }
  return mx::allocator::Data(mx::allocator::Buffer(buffer), [ctx, size](mx::allocator::Buffer b) {
    std::lock_guard lock(block_cache().mutex);
    block_cache().free[{ctx, size}].push_back(static_cast<mx::cu::CudaBuffer*>(b.ptr()));
  });
}

}  // namespace lmlab::nn::cuda
