// Helpers for the model tests: load the default or a fixture model once,
// compare logits with an oracle and report the differences.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "lmlab/context.h"
#include "lmlab/loader.h"
#include "lmlab/model.h"
#include "test_util.h"

namespace lmlab::test {

// CPU unless LMLAB_TEST_DEVICE=gpu (how the CUDA build's core checks run on a GPU machine).
inline const Context& cpu_context() {
  const char* dev = std::getenv("LMLAB_TEST_DEVICE");
  static Context ctx(ContextOptions{
      .device = dev && std::string(dev) == "gpu" ? DeviceKind::Gpu : DeviceKind::Cpu, .seed = 0});
  return ctx;
}

// A tiny random checkpoint: tests/golden/model_golden.py's, or families_golden.py's.
inline std::filesystem::path tiny_checkpoint_dir(const std::string& name) {
  const auto first = fixtures_dir() / "model" / "tiny" / name;
  return std::filesystem::exists(first) ? first : fixtures_dir() / "families" / name;
}

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

// Greedy continuation with the KV cache, one token per step.
inline std::vector<int> greedy(const Model& m, const std::vector<int>& ids, int n) {
  namespace mx = mlx::core;
  auto cache = m.make_cache();
  mx::array logits = m.forward(mx::array(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32),
                               cache.get());
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    mx::array last = mx::take(logits, logits.shape(1) - 1, 1);
    int tok = mx::argmax(mx::reshape(last, {-1})).item<int>();
    out.push_back(tok);
    logits = m.forward(mx::array({tok}, {1, 1}, mx::int32), cache.get());
  }
  return out;
}

struct LogitDiff {
  float max_abs = 0;
  int top1_a = -1, top1_b = -1;
  int top5_overlap = 0;
};

// A (batch, L) token array from one chunk of ids: row b shifts every id by 7b
// (modulo the vocabulary), so the rows of a batch differ.
inline mlx::core::array batched_chunk(const std::vector<int>& chunk, int batch, int vocab_size) {
  std::vector<int> ids;
  for (int b = 0; b < batch; ++b)
    for (int t : chunk) ids.push_back((t + 7 * b) % vocab_size);
  return mlx::core::array(ids.begin(), {batch, static_cast<int>(chunk.size())}, mlx::core::int32);
}

inline std::vector<int> topk(const std::vector<float>& v, int k) {
  std::vector<int> idx(v.size());
  for (size_t i = 0; i < v.size(); ++i) idx[i] = static_cast<int>(i);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return v[a] > v[b]; });
  idx.resize(k);
  return idx;
}

inline LogitDiff compare_logits(const std::vector<float>& a, const std::vector<float>& b) {
  LogitDiff d;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    d.max_abs = std::max(d.max_abs, std::abs(a[i] - b[i]));
  auto ta = topk(a, 5), tb = topk(b, 5);
  d.top1_a = ta[0];
  d.top1_b = tb[0];
  for (int x : ta)
    if (std::find(tb.begin(), tb.end(), x) != tb.end()) ++d.top5_overlap;
  return d;
}

}  // namespace lmlab::test
