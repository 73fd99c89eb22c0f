// A chain of kernel launches that lmlab records once into a CUDA graph of its
// own and replays (internal; the GPU decode step over all layers).
//
// MLX builds a new CUDA graph for every evaluation and updates a cached
// executable from it, at a host cost per node; a decode step of a small model
// is hundreds of short launches, and that cost, not the GPU, bounded it. A
// StepGraph keeps its executable: each replay adds the same launches again
// (add() only compares them with the recorded ones), the nodes whose
// parameters or grid changed (the position, the key ranges, the step's input
// and output) are updated in place, and the graph is launched in one call. A
// different chain of functions rebuilds it.
//
// Contract: one replay at a time (the caller holds the graph's mutex); the
// stream's device context is current.
#pragma once

#include <mutex>
#include <vector>

#include "nn/cuda/device.h"

namespace lmlab::nn::cuda {

class StepGraph : public Launches {
 public:
  // With `overlap` (programmatic dependencies, compute capability 9.0 and up;
  // kernels.cu, wait_for_prior_launch) a launch's blocks are placed once
  // every block of the one before has passed its own wait, and wait at their
  // start for it to finish: the gap between dependent launches is hidden, and
  // at most two launches are in flight. Without, each launch starts when the
  // one before has finished.
  explicit StepGraph(bool overlap = false) : overlap_(overlap) {}
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  ~StepGraph() override;

  std::mutex mutex;
  bool overlapped() const { return overlap_; }

  // Starts a replay: the launches added next are the step's, in order.
  void begin();
  void add(CUfunction f, dim3 grid, dim3 block, uint32_t smem, const void* params, size_t size) override;
  // Launches the step on `stream` (after MLX's work already submitted there).
  void launch(CUstream stream);

  // Device memory the step's launches may keep between replays (the scratch),
  // at least `bytes`, zeroed when allocated (on `stream`); a larger request
  // replaces it (its launches then change).
  void* scratch(size_t bytes, CUstream stream);

  // Replays so far that rebuilt the graph, and nodes updated in place (for tests).
  int rebuilds() const { return rebuilds_; }
  long updated_nodes() const { return updated_; }

 private:
  struct Node {
    CUfunction f = nullptr;
    dim3 grid, block;
    uint32_t smem = 0;
    std::vector<unsigned char> params;
    CUgraphNode node = nullptr;
    bool dirty = false;
  };
  void rebuild();
  void release();

  bool overlap_;
  std::vector<Node> nodes_;
  size_t next_ = 0;
  bool changed_shape_ = false;
  CUgraph graph_ = nullptr;
  CUgraphExec exec_ = nullptr;
  CUdeviceptr scratch_ = 0;
  size_t scratch_bytes_ = 0;
  int rebuilds_ = 0;
  long updated_ = 0;
};

}  // namespace lmlab::nn::cuda
