// StepGraph: a chain of launches recorded once and replayed with in-place updates.
#include "nn/cuda/step_graph.h"

#include <cstring>

namespace lmlab::nn::cuda {

namespace {

bool same(const dim3& a, const dim3& b) { return a.x == b.x && a.y == b.y && a.z == b.z; }

CUDA_KERNEL_NODE_PARAMS node_params(const CUfunction f, const dim3& grid, const dim3& block, uint32_t smem,
                                    void** args) {
  CUDA_KERNEL_NODE_PARAMS p{};
  p.func = f;
  p.gridDimX = grid.x, p.gridDimY = grid.y, p.gridDimZ = grid.z;
  p.blockDimX = block.x, p.blockDimY = block.y, p.blockDimZ = block.z;
  p.sharedMemBytes = smem;
  p.kernelParams = args;
  return p;
}

}  // namespace

StepGraph::~StepGraph() {
  // An executable still running is freed by CUDA when it completes; the
  // scratch it uses must outlast it.
  if (scratch_) cuCtxSynchronize();
  release();
  if (scratch_) cuMemFree(scratch_);
}

void StepGraph::release() {
  if (exec_) cuGraphExecDestroy(exec_);
  if (graph_) cuGraphDestroy(graph_);
  exec_ = nullptr;
  graph_ = nullptr;
}

void StepGraph::begin() {
  next_ = 0;
  changed_shape_ = false;
}

void StepGraph::add(CUfunction f, dim3 grid, dim3 block, uint32_t smem, const void* params, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(params);
  if (next_ == nodes_.size()) {
    nodes_.emplace_back();
    changed_shape_ = true;
  }
  Node& n = nodes_[next_++];
  if (n.f != f) changed_shape_ = true;
  const bool same_params = n.params.size() == size && std::memcmp(n.params.data(), bytes, size) == 0;
  if (n.f == f && same_params && same(n.grid, grid) && same(n.block, block) && n.smem == smem) return;
  n.f = f;
  n.grid = grid, n.block = block, n.smem = smem;
  n.params.assign(bytes, bytes + size);
  n.dirty = true;
}

void StepGraph::rebuild() {
  release();
  check(cuGraphCreate(&graph_, 0), "cuGraphCreate");
  CUgraphNode prev = nullptr;
  for (Node& n : nodes_) {
    void* args[] = {n.params.data()};
    const CUDA_KERNEL_NODE_PARAMS p = node_params(n.f, n.grid, n.block, n.smem, args);
    if (prev && overlap_) {
      // Edge from the previous launch's trigger: this one is placed then, and
      // waits for it to finish inside the kernel.
      check(cuGraphAddKernelNode(&n.node, graph_, nullptr, 0, &p), "cuGraphAddKernelNode");
      CUgraphEdgeData edge{};
      edge.from_port = CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC;
      edge.type = CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC;
      if (cuGraphAddDependencies(graph_, &prev, &n.node, &edge, 1) != CUDA_SUCCESS) {
        overlap_ = false;  // a driver without programmatic edges: plain ones
        rebuild();
        return;
      }
    } else {
      check(cuGraphAddKernelNode(&n.node, graph_, prev ? &prev : nullptr, prev ? 1 : 0, &p), "cuGraphAddKernelNode");
    }
    prev = n.node;
    n.dirty = false;
  }
  check(cuGraphInstantiate(&exec_, graph_, 0), "cuGraphInstantiate");
  ++rebuilds_;
}

void StepGraph::launch(CUstream stream) {
  if (next_ != nodes_.size()) {
    nodes_.resize(next_);
    changed_shape_ = true;
  }
  if (changed_shape_ || !exec_) {
    rebuild();
  } else {
    for (Node& n : nodes_) {
      if (!n.dirty) continue;
      void* args[] = {n.params.data()};
      const CUDA_KERNEL_NODE_PARAMS p = node_params(n.f, n.grid, n.block, n.smem, args);
      // What an executable cannot take in place (CUDA says which) rebuilds it.
      if (cuGraphExecKernelNodeSetParams(exec_, n.node, &p) != CUDA_SUCCESS) {
        rebuild();
        break;
      }
      n.dirty = false;
      ++updated_;
    }
  }
  check(cuGraphLaunch(exec_, stream), "cuGraphLaunch");
}

void* StepGraph::scratch(size_t bytes, CUstream stream) {
  if (bytes > scratch_bytes_) {
    if (scratch_) {
      check(cuStreamSynchronize(stream), "cuStreamSynchronize");
      check(cuMemFree(scratch_), "cuMemFree");
      scratch_ = 0;
      scratch_bytes_ = 0;
    }
    check(cuMemAlloc(&scratch_, bytes), "cuMemAlloc");
    check(cuMemsetD8Async(scratch_, 0, bytes, stream), "cuMemsetD8Async");
    scratch_bytes_ = bytes;
  }
  return reinterpret_cast<void*>(scratch_);
}

}  // namespace lmlab::nn::cuda
