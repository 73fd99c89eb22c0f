// The compute pool behind nn::cpu::parallel_for (see compute_pool.h).
#include "nn/cpu/compute_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "lmlab/core.h"

namespace lmlab::nn::cpu {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Idle workers spin briefly (decode issues ~200 matmuls per token, a few µs
// apart), then yield between checks, then sleep on a condition variable.
class ComputePool {
 public:
  explicit ComputePool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  }

  // Lives as long as the process (see compute_pool()); its workers end with it.
  ~ComputePool() = delete;

  int threads() const { return static_cast<int>(threads_.size()) + 1; }

  // fn(t) for t in [0, tasks), on the workers and the calling thread; returns
  // when all are done. A second concurrent caller runs its tasks alone.
  void run(int tasks, const std::function<void(int)>& fn) {
    std::unique_lock run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock() || threads_.empty() || tasks <= 1) {
      for (int t = 0; t < tasks; ++t) fn(t);
      return;
    }
    Job job{&fn, tasks};
    job_.store(&job);
    generation_.fetch_add(1);
    if (sleeping_.load() > 0) {
      std::lock_guard lock(sleep_mutex_);
      wake_.notify_all();
    }
    work(job);
    wait_until([&] { return job.done.load(std::memory_order_acquire) >= tasks; });
    job_.store(nullptr);
    wait_until([&] { return users_.load() == 0; });
  }

 private:
  struct Job {
    const std::function<void(int)>* fn;
    int tasks;
    std::atomic<int> next{0};
    std::atomic<int> done{0};
  };

  // Spins briefly, then yields the CPU: a worker holding a task may have been
  // preempted (more runnable threads than cores), and spinning would keep it off.
  template <class Done>
  static void wait_until(Done done) {
    for (int i = 0; !done(); ++i) {
      if (i < 4096) cpu_relax();
      else std::this_thread::yield();
    }
  }

  static void work(Job& job) {
    for (int t; (t = job.next.fetch_add(1)) < job.tasks;) {
      (*job.fn)(t);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  void worker_loop() {
    using clock = std::chrono::steady_clock;
    uint64_t seen = generation_.load();
    for (;;) {
      auto spin_start = clock::now();
      for (int i = 0; generation_.load() == seen; ++i) {
        // Hot spin first; then yield between checks, so that a thread with real
        // work (MLX's graph builder, its stream thread) gets this core when
        // there are more runnable threads than cores; then sleep.
        if (i < kHotSpins) cpu_relax();
        else std::this_thread::yield();
        if ((i & 63) == 63 && clock::now() - spin_start > kSpin) {
          std::unique_lock lock(sleep_mutex_);
          sleeping_.fetch_add(1);
          wake_.wait(lock, [&] { return generation_.load() != seen; });
          sleeping_.fetch_sub(1);
          spin_start = clock::now();
        }
      }
      seen = generation_.load();
      users_.fetch_add(1);
      if (Job* job = job_.load()) work(*job);
      users_.fetch_sub(1);
    }
  }

  static constexpr int kHotSpins = 512;
  static constexpr auto kSpin = std::chrono::microseconds(200);

  std::vector<std::thread> threads_;
  std::mutex run_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<Job*> job_{nullptr};
  std::atomic<int> users_{0};
  std::atomic<int> sleeping_{0};
};

// Never destroyed: an MLX stream thread may still be evaluating a matmul while
// the process runs its exit handlers, and joining workers at exit is where a
// shutdown race once hung a process. The workers end with the process.
ComputePool& compute_pool() {
  static ComputePool* pool = new ComputePool(compute_threads() - 1);
  return *pool;
}

}  // namespace

int pool_threads() { return compute_pool().threads(); }

void parallel_for(int tasks, const std::function<void(int)>& fn) { compute_pool().run(tasks, fn); }

}  // namespace lmlab::nn::cpu
