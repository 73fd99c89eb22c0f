// lmlab's CPU compute pool: a fixed set of worker threads that run the chunks
// of one kernel call (a quantized matmul, an attention step) alongside the
// calling thread, which is MLX's CPU stream worker. Like MLX's own scheduler
// threads it is a process-wide compute resource, not model state: created on
// first use, sized by compute_threads(), holding no data between calls.
#pragma once

#include <functional>

namespace lmlab::nn::cpu {

// Threads a parallel_for runs on, the caller included.
int pool_threads();

// fn(t) for t in [0, tasks), on the workers and the calling thread; returns
// when all are done. A second concurrent caller runs its tasks alone.
void parallel_for(int tasks, const std::function<void(int)>& fn);

}  // namespace lmlab::nn::cpu
