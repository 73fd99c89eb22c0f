// lmlab bench: prompt-processing and generation throughput, like llama-bench
// and mlx_lm.benchmark. For every combination of prompt length p, generation
// length n and batch size b: `warmup` untimed runs, then `repetitions` timed
// ones, each on fresh random token ids (seeded) and an empty KV cache:
//   pp: one forward pass over the (b, p) prompt     → b·p / seconds
//   tg: n greedy decode steps of (b, 1) after it    → b·n / seconds
// (n > 0 with p = 0 decodes after one untimed token.) Decode is pipelined as
// generation runs it, and each tg figure comes with the host's time per step
// (building the graph, handing it to the device): a step whose host time is
// near its wall time is bound by the host. Reported as mean ± sample standard
// deviation over the repetitions, with the peak memory, as a markdown table or
// JSON.
#include <iostream>
#include <random>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/compare.h"
#include "lmlab/model.h"
#include "lmlab/nn.h"

namespace mx = mlx::core;

namespace lmlab::cli {

namespace {

struct BenchOptions {
  ModelOptions model;
  std::vector<int> prompt_lengths{512}, gen_lengths{128}, batch_sizes{1};
  int repetitions = 5, warmup = 1;
  uint64_t seed = 0;
  bool json = false;
};

void check(const BenchOptions& o) {
  auto positive = [](const std::vector<int>& v, int min, const char* flag) {
    if (v.empty()) throw std::invalid_argument(fmt::format("[bench] {} needs at least one value", flag));
    for (int x : v)
      if (x < min) throw std::invalid_argument(fmt::format("[bench] {} {} is below {}", flag, x, min));
  };
  positive(o.prompt_lengths, 0, "--prompt-lengths");
  positive(o.gen_lengths, 0, "--gen-lengths");
  positive(o.batch_sizes, 1, "--batch-sizes");
  if (o.repetitions < 1) throw std::invalid_argument("[bench] --repetitions must be at least 1");
  if (o.warmup < 0) throw std::invalid_argument("[bench] --warmup cannot be negative");
}

void run_bench(const BenchOptions& o) {
  check(o);
  Context ctx = make_context(o.model, o.seed);
  LoadedModel m = load(ctx, o.model);
  std::mt19937_64 rng(o.seed);
  nlohmann::json rows = nlohmann::json::array();
  for (int b : o.batch_sizes)
    for (int p : o.prompt_lengths)
      for (int n : o.gen_lengths) {
        if (p == 0 && n == 0) continue;
        for (int w = 0; w < o.warmup; ++w) analysis::measure_throughput(*m.model, p, n, b, rng);
        mx::reset_peak_memory();
        std::vector<double> pp, tg, build, schedule;
        for (int r = 0; r < o.repetitions; ++r) {
          const analysis::Throughput s = analysis::measure_throughput(*m.model, p, n, b, rng);
          if (p > 0) pp.push_back(s.pp_tps);
          if (n > 0) {
            tg.push_back(s.tg_tps);
            build.push_back(s.host_build_ms);
            schedule.push_back(s.host_schedule_ms);
          }
        }
        nlohmann::json row = {{"prompt_tokens", p}, {"gen_tokens", n}, {"batch", b},
                              {"peak_memory_gb", static_cast<double>(mx::get_peak_memory()) / 1e9}};
        if (p > 0) row["pp"] = {{"mean_tps", analysis::mean_std(pp).mean}, {"std_tps", analysis::mean_std(pp).std}, {"samples", pp}};
        if (n > 0)
          row["tg"] = {{"mean_tps", analysis::mean_std(tg).mean}, {"std_tps", analysis::mean_std(tg).std},
                       {"samples", tg}, {"host_build_ms", analysis::mean_std(build).mean},
                       {"host_schedule_ms", analysis::mean_std(schedule).mean}};
        rows.push_back(row);
      }
  const nlohmann::json out = {{"model", m.path}, {"format", m.format}, {"device", ctx.device_name()},
                              {"load_seconds", m.load_seconds}, {"repetitions", o.repetitions},
                              {"warmup", o.warmup}, {"seed", o.seed}, {"results", rows}};
  if (o.json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  fmt::print("model: {} ({}), device {}, {} repetitions after {} warm-up, seed {}\n\n", m.path, m.format,
             ctx.device_name(), o.repetitions, o.warmup, o.seed);
  fmt::print("| test | batch | t/s | ms/step | host ms/step (build + schedule) | peak GB |\n"
             "|---|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows)
    for (const char* k : {"pp", "tg"})
      if (r.contains(k)) {
        const bool tg = std::string(k) == "tg";
        const double tps = r[k]["mean_tps"].get<double>();
        const std::string host =
            tg ? fmt::format("{:.3f} + {:.3f}", r[k]["host_build_ms"].get<double>(),
                             r[k]["host_schedule_ms"].get<double>())
               : "";
        fmt::print("| {}{} | {} | {:.2f} ± {:.2f} | {} | {} | {:.3f} |\n", k,
                   r[tg ? "gen_tokens" : "prompt_tokens"].get<int>(), r["batch"].get<int>(), tps,
                   r[k]["std_tps"].get<double>(), tg && tps > 0 ? fmt::format("{:.3f}", 1e3 * r["batch"].get<int>() / tps) : "",
                   host, r["peak_memory_gb"].get<double>());
      }
}

}  // namespace

void setup_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  o->model.add(app);
  app.add_option("-p,--prompt-lengths", o->prompt_lengths, "prompt lengths, comma-separated (0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-n,--gen-lengths", o->gen_lengths, "generation lengths, comma-separated (0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-b,--batch-sizes", o->batch_sizes, "batch sizes, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-r,--repetitions", o->repetitions, "timed runs per test")->capture_default_str();
  app.add_option("--warmup", o->warmup, "untimed runs before them")->capture_default_str();
  app.add_option("--seed", o->seed, "seed of the random prompt tokens")->capture_default_str();
  app.add_flag("--json", o->json, "print JSON (every sample, mean and standard deviation)");
  app.callback([o] { run_bench(*o); });
}

}  // namespace lmlab::cli
