// The preflight report of `lmlab data`: what training on this data will see
// (lengths, truncation, loss share under masking, leakage between splits) and
// the problems to fix before a run fails on them.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

#include "lmlab/data.h"

namespace lmlab::train {

namespace {

LengthStats length_stats(std::vector<int> lengths) {
  LengthStats s;
  if (lengths.empty()) return s;
  std::sort(lengths.begin(), lengths.end());
  const size_t n = lengths.size();
  s.min = lengths.front();
  s.max = lengths.back();
  // Nearest-rank percentiles.
  auto rank = [&](double q) { return lengths[std::min(n - 1, static_cast<size_t>(std::ceil(q * n)) - 1)]; };
  s.p50 = rank(0.5);
  s.p95 = rank(0.95);
  double sum = 0;
  for (int l : lengths) sum += l;
  s.mean = sum / n;
  return s;
}

// FNV-1a over the token ids: equal sequences, equal keys.
uint64_t fingerprint(const std::vector<int>& tokens) {
  uint64_t h = 1469598103934665603ull;
  for (int t : tokens) {
    h ^= static_cast<uint32_t>(t);
    h *= 1099511628211ull;
  }
  return h;
}

SplitReport report_split(const Split& s, const DataOptions& o) {
  SplitReport r{.name = s.name, .file = s.file, .format = format_name(s.format)};
  r.records = static_cast<int>(s.examples.size());
  r.malformed = static_cast<int>(s.issues.size());
  r.blank_lines = s.blank_lines;
  r.issues = s.issues;
  std::vector<int> lengths;
  for (const Example& e : s.examples) {
    const int len = static_cast<int>(e.tokens.size());
    lengths.push_back(len);
    r.truncated += len > o.max_seq_length;
    r.total_tokens += len;
    r.loss_tokens += loss_targets(e, o.max_seq_length, o.mask_prompt);
  }
  r.tokens = length_stats(std::move(lengths));
  return r;
}

}  // namespace

DataReport data_report(const Dataset& d, const DataOptions& o, int batch_size) {
  DataReport rep{.max_seq_length = o.max_seq_length, .mask_prompt = o.mask_prompt};
  std::unordered_map<uint64_t, int> seen;  // fingerprint -> split index
  const Split* splits[3] = {&d.train, &d.valid, &d.test};
  for (int i = 0; i < 3; ++i) {
    const Split& s = *splits[i];
    if (s.file.empty() && s.examples.empty() && s.issues.empty()) continue;
    SplitReport r = report_split(s, o);
    for (const Example& e : s.examples) {
      auto [it, fresh] = seen.emplace(fingerprint(e.tokens), i);
      r.duplicates += !fresh && it->second < i;
    }
    rep.splits.push_back(std::move(r));
  }
  auto warn = [&](std::string w) { rep.warnings.push_back(std::move(w)); };
  for (const SplitReport& r : rep.splits) {
    if (r.malformed > 0)
      warn(fmt::format("{}: {} malformed record{} (listed above); `lmlab lora` stops at the first", r.name,
                       r.malformed, r.malformed == 1 ? "" : "s"));
    if (r.truncated > 0)
      warn(fmt::format("{}: {} record{} longer than --max-seq-length {} (longest {}): cut off in training; raise "
                       "it or split those records",
                       r.name, r.truncated, r.truncated == 1 ? " is" : "s are", o.max_seq_length, r.tokens.max));
    if (r.records > 0 && r.records < batch_size)
      warn(fmt::format("{}: {} record{} but a batch needs {}: lower --batch-size or add data", r.name, r.records,
                       r.records == 1 ? "" : "s", batch_size));
    if (r.duplicates > 0)
      warn(fmt::format("{}: {} record{} also in an earlier split: {} loss overstates generalisation", r.name,
                       r.duplicates, r.duplicates == 1 ? " is" : "s are", r.name == "test" ? "test" : "validation"));
    if (r.records > 0 && r.loss_tokens == 0)
      warn(fmt::format("{}: no token counts in the loss (every record is prompt)", r.name));
  }
  const bool has_train = !rep.splits.empty() && rep.splits[0].name == "train" && rep.splits[0].records > 0;
  if (!has_train) warn("no training records: `lmlab lora` needs train.jsonl");
  if (d.valid.examples.empty()) warn("no validation records: training will run without validation loss");
  return rep;
}

nlohmann::json DataReport::to_json() const {
  nlohmann::json j = {{"max_seq_length", max_seq_length}, {"mask_prompt", mask_prompt}, {"warnings", warnings}};
  j["splits"] = nlohmann::json::array();
  for (const SplitReport& r : splits) {
    nlohmann::json issues = nlohmann::json::array();
    for (const DataIssue& i : r.issues) issues.push_back({{"file", i.file}, {"line", i.line}, {"reason", i.reason}});
    j["splits"].push_back({{"name", r.name},
                           {"file", r.file},
                           {"format", r.format},
                           {"records", r.records},
                           {"malformed", r.malformed},
                           {"blank_lines", r.blank_lines},
                           {"tokens",
                            {{"min", r.tokens.min},
                             {"mean", r.tokens.mean},
                             {"p50", r.tokens.p50},
                             {"p95", r.tokens.p95},
                             {"max", r.tokens.max},
                             {"total", r.total_tokens}}},
                           {"truncated", r.truncated},
                           {"loss_tokens", r.loss_tokens},
                           {"loss_share", r.total_tokens ? double(r.loss_tokens) / r.total_tokens : 0.0},
                           {"duplicates", r.duplicates},
                           {"issues", issues}});
  }
  return j;
}

}  // namespace lmlab::train
