#include "server/scheduler.h"

#include <fmt/format.h>

#include "server/errors.h"

namespace lmlab::server {

std::optional<JobEvent> Job::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  JobEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void Job::push(JobEvent e) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

Scheduler::Scheduler(LoadedModel& m, const SchedulerOptions& o)
    : model_(m), opts_(o), cache_(o.prompt_cache_bytes) {
  if (o.slots < 1) throw std::invalid_argument(fmt::format("[serve] --parallel {} must be at least 1", o.slots));
  if (o.max_queue < 0) throw std::invalid_argument(fmt::format("[serve] --queue {} must not be negative", o.max_queue));
  engine_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

std::shared_ptr<Job> Scheduler::submit(GenerationRequest r) {
  auto job = std::make_shared<Job>(std::move(r));
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !accepting_) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    const int waiting = static_cast<int>(queue_.size());
    if (active_count_ + waiting >= opts_.slots + opts_.max_queue) {
      ++refused_;
      throw ApiError(503, "server_error", "server_busy",
                     fmt::format("the server is busy ({} generations running, {} waiting); retry later",
                                 active_count_.load(), waiting));
    }
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

void Scheduler::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    tasks_.push_back(std::move(task));
  }
  cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard lock(mu_);
    s.queued = static_cast<int>(queue_.size());
  }
  s.active = active_count_;
  s.completed = completed_;
  s.cancelled = cancelled_;
  s.failed = failed_;
  s.refused = refused_;
  s.generated_tokens = tokens_;
  s.rounds = rounds_;
  s.batched_rounds = batched_rounds_;
  s.prompt_cache = cache_.stats();
  return s;
}

void Scheduler::loop() {
  while (true) {
    std::vector<std::function<void()>> tasks;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty() || !queue_.empty() || !active_.empty(); });
      if (stopping_) break;
      tasks.swap(tasks_);
    }
    for (auto& t : tasks) t();  // packaged tasks keep their own exceptions
    admit();
    decode_round();
  }
  drain();
}

void Scheduler::admit() {
  while (static_cast<int>(active_.size()) < opts_.slots) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job->cancelled()) {
      ++cancelled_;
      job->push(JobEvent::failed(std::make_exception_ptr(ApiError(499, "invalid_request_error", "cancelled", "cancelled"))));
      continue;
    }
    try {
      CachedPrompt reuse = cache_.take(job->request().prompt);
      auto gen = std::make_unique<Generator>(model_, job->request().prompt, job->request().options, std::move(reuse));
      active_.push_back({std::move(job), std::move(gen)});
      active_count_ = static_cast<int>(active_.size());
    } catch (...) {
      ++failed_;
      job->push(JobEvent::failed(std::current_exception()));
    }
  }
}

void Scheduler::finish(Active& a) {
  cache_.put(a.gen->take_cache());
  GenerationResult r = a.gen->result();
  tokens_ += r.stats.generation_tokens;
  if (a.job->cancelled()) ++cancelled_;
  else ++completed_;
  a.job->push(JobEvent::done(std::move(r)));
}

void Scheduler::decode_round() {
  if (active_.empty()) return;
  // Continuous batching: every stream that read its token last round gets the
  // next one from one forward pass over all of them. A stream running alone
  // computes its steps itself, one ahead of reading (the pipelined loop).
  const bool together = opts_.batch && active_.size() > 1;
  std::vector<Generator*> gens;
  for (Active& a : active_) {
    try {
      a.gen->set_batched(together);
    } catch (...) {
      a.failure = std::current_exception();
    }
    gens.push_back(a.gen.get());
  }
  ++rounds_;
  if (together) {
    try {
      step_together(gens);
      ++batched_rounds_;
    } catch (...) {
      for (Active& a : active_)
        if (a.gen->awaiting_step()) a.failure = std::current_exception();
    }
  }
  for (size_t i = 0; i < active_.size();) {
    Active& a = active_[i];
    bool done = false;
    try {
      if (a.failure) std::rethrow_exception(a.failure);
      if (a.job->cancelled() && !a.gen->finished()) a.gen->stop();
      if (auto step = a.gen->next()) a.job->push(JobEvent::stepped(std::move(*step)));
      else {
        finish(a);
        done = true;
      }
    } catch (...) {
      ++failed_;
      a.job->push(JobEvent::failed(std::current_exception()));
      done = true;
    }
    if (done) {
      active_.erase(active_.begin() + static_cast<long>(i));
      active_count_ = static_cast<int>(active_.size());
    } else {
      ++i;
    }
  }
}

// Shutting down: what waits is refused, what runs ends now with the text it has.
void Scheduler::drain() {
  std::deque<std::shared_ptr<Job>> queued;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mu_);
    queued.swap(queue_);
    tasks.swap(tasks_);
  }
  for (auto& t : tasks) t();
  for (auto& job : queued)
    job->push(JobEvent::failed(std::make_exception_ptr(
                   ApiError(503, "server_error", "shutting_down", "the server is shutting down"))));
  for (Active& a : active_) {
    try {
      if (a.failure) std::rethrow_exception(a.failure);
      a.gen->stop();
      while (auto step = a.gen->next()) a.job->push(JobEvent::stepped(std::move(*step)));
      finish(a);
    } catch (...) {
      a.job->push(JobEvent::failed(std::current_exception()));
    }
  }
  active_.clear();
  active_count_ = 0;
}

void Scheduler::stop_accepting() {
  std::lock_guard lock(mu_);
  accepting_ = false;
}

void Scheduler::shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (engine_.joinable()) engine_.join();
}

}  // namespace lmlab::server
