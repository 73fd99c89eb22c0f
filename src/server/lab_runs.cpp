// Training runs for the web lab: `lmlab serve --runs DIR` lets the Training
// panel list the run folders under DIR (those holding a train_log.csv, as
// `lmlab lora --adapter-path DIR/NAME` writes beside its adapters) and read a
// run's log while it is still being written. Only files inside DIR are read:
// a run name is a relative path without "..", and the folder it names must
// resolve (symbolic links followed) to a place inside DIR.
#include <algorithm>
#include <climits>
#include <filesystem>

#include <fmt/format.h>

#include "server/errors.h"
#include "server/http.h"
#include "server/params.h"
#include "train/run_log.h"

namespace lmlab::server {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kMaxDepth = 3;    // DIR/a/b/c holds a run at most this deep
constexpr int kMaxRuns = 200;

double age_seconds(const fs::path& file) {
  std::error_code ec;
  const auto t = fs::last_write_time(file, ec);
  if (ec) return 0;
  return std::chrono::duration<double>(fs::file_time_type::clock::now() - t).count();
}

fs::path runs_root(const ServerContext& c) {
  if (c.options.runs_dir.empty())
    throw ApiError(404, "invalid_request_error", "runs_disabled",
                   "no runs folder: start the server with lmlab serve --runs DIR to chart the runs under DIR");
  std::error_code ec;
  fs::path root = fs::canonical(c.options.runs_dir, ec);
  if (ec) throw std::runtime_error(fmt::format("[serve] the runs folder {} is gone ({})", c.options.runs_dir, ec.message()));
  return root;
}

bool inside(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q)
    if (q == p.end() || *r != *q) return false;
  return true;
}

// The folder a run name stands for; ApiError 400 for any name reaching out of the root.
fs::path run_dir(const fs::path& root, const std::string& name) {
  if (name.empty()) params::bad("run", "missing (a run folder's name, as GET /lab/runs lists it)");
  if (name.size() > 1000 || name.find('\0') != std::string::npos) params::bad("run", "not a folder name");
  const fs::path rel(name);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
    params::bad("run", fmt::format("'{}' is absolute; give a name relative to the runs folder", name));
  for (const auto& part : rel)
    if (part == "..") params::bad("run", fmt::format("'{}' leaves the runs folder (..)", name));
  std::error_code ec;
  const fs::path dir = fs::canonical(root / rel, ec);
  if (ec) throw ApiError(404, "invalid_request_error", "not_found", fmt::format("no run '{}' in the runs folder", name), "run");
  if (!inside(root, dir))
    params::bad("run", fmt::format("'{}' leads out of the runs folder (a symbolic link)", name));
  if (!fs::is_regular_file(dir / "train_log.csv", ec))
    throw ApiError(404, "invalid_request_error", "not_found", fmt::format("'{}' holds no train_log.csv", name), "run");
  return dir;
}

json list_runs(const ServerContext& c) {
  if (c.options.runs_dir.empty()) return {{"enabled", false}, {"runs", json::array()}};
  const fs::path root = runs_root(c);
  json runs = json::array();
  std::error_code ec;
  // Symbolic links are not followed: a run is listed only where it lies inside the folder.
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end && static_cast<int>(runs.size()) < kMaxRuns; it.increment(ec)) {
    if (it.depth() >= kMaxDepth) it.disable_recursion_pending();
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    const fs::path log = it->path() / "train_log.csv";
    if (!fs::is_regular_file(log, ec) || fs::is_symlink(log, ec)) continue;
    train::RunLog r(it->path());
    r.resume(INT32_MAX);
    runs.push_back({{"name", fs::relative(it->path(), root).generic_string()}, {"rows", r.rows().size()},
                    {"last_iteration", r.rows().empty() ? 0 : r.rows().back().iteration},
                    {"seconds_since_write", age_seconds(log)}});
  }
  std::sort(runs.begin(), runs.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
  return {{"enabled", true}, {"dir", c.options.runs_dir}, {"runs", runs}};
}

json optional(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json run_log(const ServerContext& c, const std::string& name) {
  const fs::path dir = run_dir(runs_root(c), name);
  train::RunLog r(dir);
  r.resume(INT32_MAX);
  json rows = json::array();
  for (const auto& row : r.rows())
    rows.push_back({{"iteration", row.iteration}, {"train_loss", optional(row.train_loss)},
                    {"val_loss", optional(row.val_loss)}, {"learning_rate", row.learning_rate},
                    {"it_per_sec", row.it_per_sec}, {"tokens_per_sec", row.tokens_per_sec},
                    {"trained_tokens", row.trained_tokens}, {"peak_memory_gb", row.peak_memory_gb}});
  return {{"run", name}, {"rows", rows}, {"seconds_since_write", age_seconds(dir / "train_log.csv")},
          {"adapters", fs::exists(dir / "adapters.safetensors")}};
}

}  // namespace

void add_lab_run_routes(httplib::Server& svr, ServerContext& c) {
  // Files only: nothing here runs the model, so these never wait for the engine.
  svr.Get("/lab/runs", guarded(authorized(c, [&c](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, list_runs(c));
  })));
  svr.Get("/lab/runs/log", guarded(authorized(c, [&c](const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, run_log(c, req.get_param_value("run")));
  })));
}

}  // namespace lmlab::server
