// Sweeps from the web lab. POST /lab/sweep checks the request, then starts
// the sweep as a job: a thread of its own waits while run_sweep runs on the
// engine thread (the model restored bit-exactly after every point, as in
// `lmlab sweep`), and GET /lab/sweep/ID reports the points finished so far,
// then the whole report. A request may ask for at most kMaxPoints points, so
// a sweep holds the engine for seconds, not minutes; while it runs, API
// requests wait in the queue.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "lmlab/sweep.h"
#include "server/errors.h"
#include "server/http.h"
#include "server/params.h"

namespace lmlab::server {

namespace an = lmlab::analysis;
namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr int kMaxPoints = 24;
constexpr int kMaxEvalTokens = 4096;
constexpr int kKeptJobs = 8;  // finished sweeps kept for their pages to read

// A sweep the lab started. Fields under `mu`; the thread only on the owner's side.
struct SweepJob {
  std::mutex mu;
  std::string state = "queued";  // running, done, failed, cancelled
  int done = 0, total = 0;
  json points = json::array();
  json report;
  std::string error;
  std::atomic<bool> cancel{false};     // stop at the next point
  std::atomic<bool> requested{false};  // ... because DELETE asked (else: shutting down)
  fs::path dir;  // holds the sweep's state file, read after every point
  std::thread thread;
};

// Ends a sweep between points (the served model is restored after every point).
[[noreturn]] void throw_stopped(const SweepJob& job) {
  throw std::runtime_error(job.requested ? "[sweep] cancelled (DELETE /lab/sweep/ID)"
                                         : "[sweep] stopped: the server is shutting down");
}

struct SweepRequest {
  an::SweepOptions options;
  std::string text;  // evaluation text ("" : the built-in passage)
  int64_t eval_tokens = 0;
  int planned = 0;   // points the schedule evaluates
};

}  // namespace

struct LabJobs {
  std::mutex mu;
  int next_id = 1;
  std::map<int, std::shared_ptr<SweepJob>> jobs;
  ~LabJobs() { stop(); }
  void stop() {
    std::map<int, std::shared_ptr<SweepJob>> all;
    {
      std::lock_guard lock(mu);
      all = jobs;
    }
    for (auto& [id, job] : all) job->cancel = true;
    for (auto& [id, job] : all)
      if (job->thread.joinable()) job->thread.join();
  }
};

namespace {

std::vector<double> numbers(const ojson& body, const char* name, size_t max_items) {
  const ojson* f = params::field(body, name);
  if (!f) return {};
  if (!f->is_array() || f->empty() || f->size() > max_items)
    params::bad(name, fmt::format("give a list of 1 to {} numbers", max_items));
  std::vector<double> out;
  for (const auto& v : *f) {
    if (!v.is_number()) params::bad(name, "every entry must be a number");
    out.push_back(v.get<double>());
  }
  return out;
}

// The schedule as `lmlab sweep` takes it: values, log_grid [lo, hi, n] or bisect [lo, hi].
an::Schedule schedule_of(const ojson& body) {
  an::Schedule s;
  std::vector<double> values = numbers(body, "values", 10000);
  std::vector<double> grid = numbers(body, "log_grid", 3), bis = numbers(body, "bisect", 2);
  if (!values.empty() + !grid.empty() + !bis.empty() > 1) params::bad("values", "give one of values, log_grid and bisect");
  if (!values.empty()) {
    s.values = values;
  } else if (!grid.empty()) {
    if (grid.size() != 3 || grid[2] != std::floor(grid[2])) params::bad("log_grid", "give [lo, hi, points], points an integer");
    s.kind = an::Schedule::Kind::LogGrid;
    s.lo = grid[0], s.hi = grid[1];
    s.points = static_cast<int>(std::clamp(grid[2], -1.0, 1e6));
  } else if (!bis.empty()) {
    if (bis.size() != 2) params::bad("bisect", "give [lo, hi]");
    s.kind = an::Schedule::Kind::Bisect;
    s.lo = bis[0], s.hi = bis[1];
    s.resolution = params::number(body, "resolution", 0, 1e300).value_or(1);
  }
  return s;
}

// Points the schedule evaluates (bisection: its two ends and every halving).
int planned_points(const an::Schedule& s, bool integers) {
  if (s.kind == an::Schedule::Kind::List) return static_cast<int>(s.values.size());
  if (s.kind == an::Schedule::Kind::LogGrid) return s.points;
  const double res = integers ? std::max(1.0, s.resolution) : s.resolution;
  return 2 + static_cast<int>(std::ceil(std::log2(std::max(1.0, (s.hi - s.lo) / res))));
}

SweepRequest parse(const ojson& body) {
  SweepRequest r;
  an::SweepOptions& o = r.options;
  try {
    o.edit.op = an::parse_edit_op(params::string(body, "op").value_or("shift-words"));
  } catch (const std::invalid_argument& e) {
    params::bad("op", e.what());
  }
  o.edit.target = params::string(body, "target").value_or("lm_head");
  if (o.edit.target.empty()) params::bad("target", "empty (a tensor name or glob; lm_head is the output head)");
  o.edit.relative = params::boolean(body, "relative").value_or(false);
  o.edit.seed = static_cast<uint64_t>(params::integer(body, "seed", 0, INT64_MAX).value_or(0));
  o.edit.group_size = static_cast<int>(params::integer(body, "group_size", 16, 1024).value_or(64));
  o.untie = params::boolean(body, "untie").value_or(false);
  o.schedule = schedule_of(body);
  const bool integers = o.edit.op == an::EditOp::ShiftWords || o.edit.op == an::EditOp::ShiftFields ||
                        o.edit.op == an::EditOp::Requantize;
  try {
    an::validate(o.schedule, integers);
    if (auto until = params::string(body, "until")) o.criterion = an::parse_criterion(*until);
  } catch (const std::invalid_argument& e) {
    params::bad(o.schedule.kind == an::Schedule::Kind::Bisect ? "bisect" : "values", e.what());
  }
  r.planned = planned_points(o.schedule, integers);
  if (r.planned > kMaxPoints)
    params::bad("values", fmt::format("the schedule has {} points; the lab runs at most {} per sweep "
                                      "(use lmlab sweep for longer ones)", r.planned, kMaxPoints));
  if (auto p = params::strings(body, "prompts", 8); p && !p->empty()) o.prompts = *p;
  if (auto e = params::strings(body, "expect", 8); e && !e->empty()) o.expect = *e;
  o.max_tokens = static_cast<int>(params::integer(body, "max_tokens", 1, 64).value_or(o.max_tokens));
  o.chat_template = params::boolean(body, "chat").value_or(true);
  o.system = params::string(body, "system").value_or("");
  o.thresholds.healthy_kl = params::number(body, "healthy_kl", 0, 1e6).value_or(o.thresholds.healthy_kl);
  o.thresholds.degraded_kl = params::number(body, "degraded_kl", 0, 1e6).value_or(o.thresholds.degraded_kl);
  o.thresholds.collapsing_kl = params::number(body, "collapsing_kl", 0, 1e6).value_or(o.thresholds.collapsing_kl);
  try {
    an::validate(o.thresholds);
  } catch (const std::invalid_argument& e) {
    params::bad("healthy_kl", e.what());
  }
  r.text = params::string(body, "text").value_or("");
  if (r.text.size() > 200000) params::bad("text", "longer than 200000 bytes");
  r.eval_tokens = params::integer(body, "eval_tokens", 0, kMaxEvalTokens).value_or(0);
  o.windows.context = static_cast<int>(params::integer(body, "context", 2, 4096).value_or(o.windows.context));
  o.windows.stride = static_cast<int>(params::integer(body, "stride", 1, 4096).value_or(o.windows.stride));
  if (o.windows.stride > o.windows.context) params::bad("stride", "must not exceed context");
  return r;
}

// Non-finite numbers are null in the report (JSON has no NaN); they stay null.
json percent(const json& fraction) { return fraction.is_number() ? json(100 * fraction.get<double>()) : json(nullptr); }

// A point as the panel's table and chart show it; "percent" is the column
// `lmlab sweep` prints (of the mean packed word for shift-words, else the
// mean relative change of the values).
json point_row(const json& p, bool words) {
  return {{"value", p["value"]}, {"status", p["status"]}, {"kl", p["kl"]}, {"top1", p["top1"]}, {"ppl", p["ppl"]},
          {"replies", p["replies"]}, {"answers_ok", p["answers_ok"]},
          {"percent", words ? p["change"]["word_pct"] : percent(p["change"]["value_rel"])}};
}

json read_points(const fs::path& file, bool words) {
  std::ifstream f(file);
  json rows = json::array();
  if (!f) return rows;
  const json saved = json::parse(f);
  for (const auto& p : saved.at("points")) rows.push_back(point_row(p, words));
  return rows;
}

// On the engine thread: the sweep, with the served weights' hash before and after.
json run(LoadedModel& m, SweepJob& job, SweepRequest& r) {
  an::SweepOptions& o = r.options;
  const bool words = o.edit.op == an::EditOp::ShiftWords;
  if (!r.text.empty()) {
    o.eval_tokens = m.tokenizer.encode(r.text, /*add_special_tokens=*/true);
    if (r.eval_tokens > 0 && static_cast<int64_t>(o.eval_tokens.size()) > r.eval_tokens) o.eval_tokens.resize(r.eval_tokens);
    if (o.eval_tokens.size() > static_cast<size_t>(kMaxEvalTokens)) o.eval_tokens.resize(kMaxEvalTokens);
    o.eval_source = "the request's text";
  }
  o.state_file = (job.dir / "sweep-state.json").string();
  const uint64_t before = an::weights_hash(*m.model);
  auto progress = [&](const Progress& p) {
    json rows = read_points(o.state_file, words);
    {
      std::lock_guard lock(job.mu);
      job.state = "running";
      job.done = static_cast<int>(p.done), job.total = static_cast<int>(p.total);
      job.points = std::move(rows);
    }
    if (job.cancel) throw_stopped(job);
  };
  an::SweepReport report = an::run_sweep(m, o, progress);
  const uint64_t after = an::weights_hash(*m.model);
  json out = report;
  for (auto& p : out["points"]) p = point_row(p, words);
  out["served_hash_before"] = fmt::format("{:016x}", before);
  out["served_hash_after"] = fmt::format("{:016x}", after);
  out["served_model_unchanged"] = before == after;
  return out;
}

void start(ServerContext& c, const std::shared_ptr<SweepJob>& job, SweepRequest r) {
  job->thread = std::thread([&c, job, r = std::move(r)]() mutable {
    try {
      json report = c.scheduler.call([&](LoadedModel& m) {
        if (job->cancel) throw_stopped(*job);
        return run(m, *job, r);
      });
      std::lock_guard lock(job->mu);
      job->points = report["points"];
      job->done = job->total = static_cast<int>(job->points.size());
      job->report = std::move(report);
      job->state = "done";
    } catch (const std::exception& e) {
      std::lock_guard lock(job->mu);
      job->error = e.what();
      job->state = job->requested ? "cancelled" : "failed";
    }
    std::error_code ec;
    fs::remove_all(job->dir, ec);
  });
}

json job_json(int id, SweepJob& job) {
  std::lock_guard lock(job.mu);
  json out = {{"id", id}, {"state", job.state}, {"done", job.done}, {"total", job.total}, {"points", job.points}};
  if (job.state == "done") out["report"] = job.report;
  if (job.state == "failed" || job.state == "cancelled") out["error"] = job.error;
  return out;
}

// Finished jobs beyond the newest kKeptJobs are forgotten (their threads have ended).
void forget_old(LabJobs& jobs) {
  while (static_cast<int>(jobs.jobs.size()) > kKeptJobs) {
    auto it = jobs.jobs.begin();
    {
      std::lock_guard lock(it->second->mu);
      if (it->second->state == "queued" || it->second->state == "running") return;
    }
    if (it->second->thread.joinable()) it->second->thread.join();
    jobs.jobs.erase(it);
  }
}

// The job with this id (404 when the lab does not keep it).
std::shared_ptr<SweepJob> find_job(LabJobs& jobs, int id) {
  std::lock_guard lock(jobs.mu);
  auto it = jobs.jobs.find(id);
  if (it == jobs.jobs.end())
    throw ApiError(404, "invalid_request_error", "not_found", fmt::format("no sweep {} (the lab keeps the last {})", id, kKeptJobs));
  return it->second;
}

}  // namespace

void add_lab_sweep_routes(httplib::Server& svr, ServerContext& c) {
  c.lab_jobs = std::make_shared<LabJobs>();
  svr.Post("/lab/sweep", guarded(authorized(c, [&c](const httplib::Request& req, httplib::Response& res) {
    SweepRequest r = parse(parse_body(req));
    LabJobs& jobs = *c.lab_jobs;
    // Refused at once: the check below would wait for the running sweep's engine call.
    auto refuse_if_running = [&] {
      for (auto& [id, j] : jobs.jobs) {
        std::lock_guard jl(j->mu);
        if (j->state == "queued" || j->state == "running")
          throw ApiError(409, "invalid_request_error", "sweep_running",
                         fmt::format("sweep {} is still running; wait for it (GET /lab/sweep/{})", id, id));
      }
    };
    {
      std::lock_guard lock(jobs.mu);
      refuse_if_running();
    }
    // Names the model lacks, or a surgery edit still applied, fail now rather than in the job.
    c.scheduler.call([&](LoadedModel& m) {
      if (lab_edit_applied(c))
        throw ApiError(409, "invalid_request_error", "edit_applied",
                       "a surgery edit is applied to the served model; restore it before sweeping");
      const an::ResolvedTarget t = an::resolve_target(*m.model, r.options.edit.target);
      if (an::match_tensors(*m.model, t.target).empty()) params::bad("target", fmt::format("no tensor matches '{}'", t.target));
      return 0;
    });
    std::lock_guard lock(jobs.mu);
    refuse_if_running();
    auto job = std::make_shared<SweepJob>();
    job->dir = fs::temp_directory_path() / fmt::format("lmlab-sweep-{}-{}", ::getpid(), jobs.next_id);
    fs::create_directories(job->dir);
    job->total = r.planned;
    const int id = jobs.next_id++;
    start(c, job, std::move(r));
    jobs.jobs.emplace(id, job);
    forget_old(jobs);
    send_json(res, 202, job_json(id, *job));
  })));
  svr.Get(R"(/lab/sweep/(\d{1,9}))", guarded(authorized(c, [&c](const httplib::Request& req, httplib::Response& res) {
    const int id = std::stoi(req.matches[1]);
    std::shared_ptr<SweepJob> job = find_job(*c.lab_jobs, id);
    send_json(res, 200, job_json(id, *job));
  })));
  // Cancels a queued or running sweep: it stops before its next point (the
  // served model restored, as after every point) and ends "cancelled".
  svr.Delete(R"(/lab/sweep/(\d{1,9}))", guarded(authorized(c, [&c](const httplib::Request& req, httplib::Response& res) {
    const int id = std::stoi(req.matches[1]);
    std::shared_ptr<SweepJob> job = find_job(*c.lab_jobs, id);
    {
      std::lock_guard lock(job->mu);
      if (job->state == "queued" || job->state == "running") {
        job->requested = true;
        job->cancel = true;
      }
    }
    send_json(res, 202, job_json(id, *job));
  })));
}

void stop_lab_jobs(ServerContext& c) {
  if (c.lab_jobs) c.lab_jobs->stop();
}

}  // namespace lmlab::server
