// The engine of `lmlab serve`: one thread owns the model and runs every
// computation on it (MLX work stays on one thread), while HTTP threads queue
// generations and lab calls and wait for their results.
//
// Generations wait in a FIFO queue of bounded length for one of `slots`
// active places; active generations are decoded in turn, one token each per
// round (round robin), so every stream advances at the same pace and a long
// answer does not hold the others back. A prompt cache shared by all requests
// lets a prompt that shares a prefix with an earlier one (the next turn of a
// conversation, a common system message) prefill only the rest.
//
// Batched decoding (several streams in one forward pass) would replace
// decode_round(): see docs/server.md for the engine interface it needs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "lmlab/generate.h"
#include "lmlab/prompt_cache.h"

namespace lmlab::server {

struct GenerationRequest {
  std::vector<int> prompt;
  GenerateOptions options;
};

// One event of a job. A job yields steps, then exactly one Done or Failed.
struct JobEvent {
  enum class Kind { Step, Done, Failed };
  Kind kind = Kind::Step;
  GenerationStep step;           // Step
  GenerationResult result;       // Done: the text, tokens and final statistics
  std::exception_ptr error;      // Failed

  static JobEvent stepped(GenerationStep s) { return {Kind::Step, std::move(s), {}, {}}; }
  static JobEvent done(GenerationResult r) { return {Kind::Done, {}, std::move(r), {}}; }
  static JobEvent failed(std::exception_ptr e) { return {Kind::Failed, {}, {}, std::move(e)}; }
};

// A queued or running generation, shared by the HTTP thread reading its
// events and the engine producing them. cancel() (the client went away) drops
// it from the queue, or stops it at its next step.
class Job {
 public:
  explicit Job(GenerationRequest r) : request_(std::move(r)) {}
  // The next event, or nullopt when none came within `timeout`.
  std::optional<JobEvent> wait(std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  const GenerationRequest& request() const { return request_; }

 private:
  friend class Scheduler;
  void push(JobEvent e);
  GenerationRequest request_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int slots = 8;                              // generations running at once
  int max_queue = 64;                         // waiting beyond the slots; more are refused
  bool batch = true;                          // decode the running ones in one forward pass per round
  size_t prompt_cache_bytes = size_t{512} << 20;
};

struct SchedulerStats {
  int active = 0, queued = 0;
  int64_t completed = 0, cancelled = 0, failed = 0, refused = 0;
  int64_t generated_tokens = 0;
  int64_t rounds = 0, batched_rounds = 0;     // decode rounds; those run as one batch of ≥ 2 streams
  PromptCacheStats prompt_cache;
};

class Scheduler {
 public:
  // Borrows the model (it must outlive the scheduler) and starts the engine thread.
  Scheduler(LoadedModel& m, const SchedulerOptions& o);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation. Throws ApiError 503 when max_queue jobs already wait
  // or the server is shutting down.
  std::shared_ptr<Job> submit(GenerationRequest r);

  // Runs fn(model) on the engine thread between decode rounds and returns its
  // result (or rethrows its exception): lab calls, surgery.
  template <class F>
  auto call(F&& fn) -> std::invoke_result_t<F, LoadedModel&> {
    using R = std::invoke_result_t<F, LoadedModel&>;
    auto task = std::make_shared<std::packaged_task<R()>>([this, f = std::forward<F>(fn)]() mutable { return f(model_); });
    std::future<R> result = task->get_future();
    post([task] { (*task)(); });
    return result.get();
  }

  // For the engine thread (inside call()): forget every cached prompt, e.g.
  // after the weights were edited.
  void clear_prompt_cache() { cache_.clear(); }
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opts_; }

  // New submits and calls are refused (503) from now on; queued and running jobs go on.
  void stop_accepting();
  // Stops taking work: queued jobs fail with 503, running ones end as if
  // stopped (their clients get a complete answer), then the engine thread ends.
  void shutdown();

 private:
  struct Active {
    std::shared_ptr<Job> job;
    std::unique_ptr<Generator> gen;
    std::exception_ptr failure;  // a batched step that failed: the stream ends with it
  };
  void post(std::function<void()> task);
  void loop();
  void admit();
  void decode_round();
  void finish(Active& a);
  void drain();

  LoadedModel& model_;
  SchedulerOptions opts_;
  PromptCache cache_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::function<void()>> tasks_;
  bool stopping_ = false;
  bool accepting_ = true;
  std::vector<Active> active_;  // engine thread only
  std::atomic<int> active_count_{0};
  std::atomic<int64_t> completed_{0}, cancelled_{0}, failed_{0}, refused_{0}, tokens_{0}, rounds_{0}, batched_rounds_{0};
  std::thread engine_;
};

}  // namespace lmlab::server
