// Cost of capturing every attention map (docs/benchmarks.md, "Lab"): the
// default model's forward pass over a 256-token prompt, plain (fused attention
// kernel) and with hooks->attention on all 30 layers (explicit softmax, every
// map evaluated). Disabled by default; run with
//   lmlab_tests --gtest_also_run_disabled_tests --gtest_filter='*AttentionCaptureCost*'
#include <chrono>
#include <functional>

#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

double time_ms(const std::function<void()>& f, int reps) {
  f();  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

void measure(LoadedModel& m, const char* label) {
  std::vector<int> ids;
  for (int i = 0; i < 256; ++i) ids.push_back(100 + (i * 7919) % 40000);
  mx::array tokens = mx::array(ids.begin(), {1, 256}, mx::int32);
  const int reps = 5;
  double plain = 0, capture = 0;
  for (int round = 0; round < 2; ++round) {  // interleaved, so drift hits both
    plain += time_ms([&] { mx::eval(m.model->forward(tokens)); }, reps);
    capture += time_ms(
        [&] {
          nn::Hooks hooks;
          hooks.attention = true;
          std::vector<mx::array> out = {m.model->forward(tokens, nullptr, &hooks)};
          for (auto& [name, a] : hooks.captured) out.push_back(a);
          mx::eval(out);
          EXPECT_EQ(hooks.captured.size(), 30u);
        },
        reps);
  }
  plain /= 2;
  capture /= 2;
  std::printf("[ lab bench ] %s, 256-token forward: plain %.1f ms, capturing all 30x9 attention maps %.1f ms, ratio %.2fx\n",
              label, plain, capture, capture / plain);
  EXPECT_LE(capture, 2.0 * plain);
}

TEST(LabBench, DISABLED_AttentionCaptureCost) { measure(default_model(), "default Q4_1 GGUF"); }

}  // namespace
}  // namespace lmlab::test
