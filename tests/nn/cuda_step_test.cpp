// nn::cuda::decoder_step, the fused GPU decoder block, against the composed
// block (MLX's own GPU ops: the same forward pass with an empty Hooks) in
// float16: every quantized tiny family (biases, q/k norms, llama3/linear/yarn
// RoPE, GQA, an 8-bit down projection among 4-bit ones, head_dim 16; Gemma 3's
// sandwich norms, GeGLU and sliding window; 5-bit weights, which the step reads
// repacked as 8-bit) and the default model, single tokens, chunks of up to
// kMaxRows rows (a prompt), batch 2; Gemma 3 270M Q4_K_M (Q5_0, Q8_0 v among
// Q5_0 q/k, Q6_K down) in bfloat16; and decode steps through all layers as one
// stack (nn::cuda::decoder_stack) against the layers' own steps. Runs with
// LMLAB_TEST_DEVICE=gpu on a CUDA build (scripts/gpu-check.sh); skips elsewhere.
#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"
#include "nn/block.h"
#include "nn/cuda/decoder_step.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

#define SKIP_OFF_GPU()                                                                          \
  do {                                                                                          \
    (void)cpu_context();                                                                        \
    if (mx::default_device() != mx::Device::gpu) GTEST_SKIP() << "the fused GPU step needs a GPU"; \
  } while (0)

// The primitive that wrote the cache's first layer last: the step of one
// layer, the stack of all layers, or "" (the composed block or evaluated).
std::string cache_writer(const nn::KVCache& cache) {
  const mx::array keys = cache.state().at(0);
  return keys.has_primitive() ? keys.primitive().name() : "";
}

bool fused_on_gpu(const nn::KVCache& cache) {
  const std::string w = cache_writer(cache);
  return w == "LmlabCudaDecoderStep" || w == "LmlabCudaDecoderStack";
}

float max_diff(const mx::array& a, const mx::array& b) {
  return mx::max(mx::abs(mx::subtract(mx::astype(a, mx::float32), mx::astype(b, mx::float32)))).item<float>();
}

float max_abs(const mx::array& a) { return mx::max(mx::abs(mx::astype(a, mx::float32))).item<float>(); }

struct Diffs {
  float fused_vs_composed = 0;  // max |logit diff| / max |logit| over the chunks
  float fused_vs_reference = 0, composed_vs_reference = 0;  // against float32 (when given)
};

float relative(const mx::array& a, const mx::array& b) { return max_diff(a, b) / std::max(1.0f, max_abs(b)); }

// Fused vs composed over the chunks (and each against the composed float32
// model `reference`); checks which path each chunk took.
Diffs run_both(const Model& m, const std::vector<std::vector<int>>& chunks, int batch = 1,
               const Model* reference = nullptr) {
  auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
  auto reference_cache = reference ? reference->make_cache() : nullptr;
  nn::Hooks composed;
  Diffs d;
  for (const auto& c : chunks) {
    const int L = static_cast<int>(c.size());
    mx::array tokens = batched_chunk(c, batch, m.config().vocab_size);
    mx::array a = m.forward(tokens, fused_cache.get());
    EXPECT_EQ(fused_on_gpu(*fused_cache), batch * L <= nn::cuda::kMaxRows) << "chunk of " << L;  // before evaluation detaches the graph
    mx::array b = m.forward(tokens, composed_cache.get(), &composed);
    d.fused_vs_composed = std::max(d.fused_vs_composed, relative(a, b));
    if (!reference) continue;
    mx::array r = reference->forward(tokens, reference_cache.get(), &composed);
    d.fused_vs_reference = std::max(d.fused_vs_reference, relative(a, r));
    d.composed_vs_reference = std::max(d.composed_vs_reference, relative(b, r));
  }
  return d;
}

class CudaStepFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaStepFamily, MatchesTheComposedBlock) {
  SKIP_OFF_GPU();
  auto dir = fixtures_dir() / GetParam();
  LMLAB_REQUIRE_FILE(dir / "config.json");
  io::ModelDir d = io::read_model_dir(dir), f = io::read_model_dir(dir);
  auto m = make_model(d.config, std::move(d.weights), mx::float16);
  auto reference = make_model(f.config, std::move(f.weights), mx::float32);
  std::vector<int> long_chunk;  // past kMaxRows: the composed block fills the cache
  for (int i = 0; i < nn::cuda::kMaxRows + 6; ++i) long_chunk.push_back((i * 37 + 5) % 61);
  std::vector<std::vector<int>> chunks = {{5, 9, 2, 41, 7, 3, 11, 19, 23, 1, 8, 60}, {4}, {17}, {2, 30, 9},
                                          {1, 2, 3, 4, 5, 6, 7, 8}, {12}, long_chunk, {13}};
  const Diffs diff = run_both(*m, chunks, 1, reference.get());
  std::printf("[ cuda     ] %s: max |logit diff| / max |logit|, fused vs composed (float16) = %.3g; "
              "against float32: fused %.3g, composed %.3g\n",
              GetParam().c_str(), diff.fused_vs_composed, diff.fused_vs_reference, diff.composed_vs_reference);
  // float16 activations: both paths round every intermediate to 11 bits, in
  // different orders (the fused GEMV sums in float32, MLX's in float16). A
  // wrong step (a key outside the window, a norm skipped) may still land near
  // the composed logits on a tiny random model, but not as near float32's as
  // the composed float16 pass does.
  EXPECT_LT(diff.fused_vs_composed, 2e-2f);
  EXPECT_LE(diff.fused_vs_reference, 2 * diff.composed_vs_reference + 1e-3f);
  EXPECT_LT(run_both(*m, {{3, 1, 4, 1, 5, 9, 2, 6, 5}, {3}, {5, 8, 9}, {7}}, 2).fused_vs_composed, 2e-2f);
}

INSTANTIATE_TEST_SUITE_P(Tiny, CudaStepFamily,
                         ::testing::Values("model/tiny/llama_q4", "model/tiny/llama3_scaled_q4",
                                           "model/tiny/llama_linear_rope_q4", "model/tiny/llama_yarn_q4",
                                           "model/tiny/mistral_q4", "model/tiny/qwen2_q4", "model/tiny/qwen3_q4",
                                           "families/gemma3_text_q4", "families/gemma3_text_q5", "families/phi3_q4",
                                           "families/phi3_q5"),
                         [](const auto& info) {
                           std::string n = info.param.substr(info.param.find('/') + 1);
                           return n.substr(n.find('/') + 1);
                         });

TEST(CudaStep, DefaultModelDecodesAsTheComposedBlock) {
  SKIP_OFF_GPU();
  auto loaded = load_model(cpu_context(), {});
  const Model& m = *loaded.model;
  ASSERT_EQ(m.dtype(), mx::float16);
  std::vector<int> prompt = loaded.tokenizer.encode("The capital of France is");
  auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
  nn::Hooks composed;
  mx::array tokens(prompt.begin(), {1, static_cast<int>(prompt.size())}, mx::int32);
  mx::array a = m.forward(tokens, fused_cache.get());
  mx::array b = m.forward(tokens, composed_cache.get(), &composed);
  std::vector<int> ta, tb;
  float worst = 0;
  for (int i = 0; i < 24; ++i) {
    worst = std::max(worst, max_diff(a, b) / std::max(1.0f, max_abs(b)));
    ta.push_back(mx::argmax(mx::reshape(mx::take(a, a.shape(1) - 1, 1), {-1})).item<int>());
    tb.push_back(mx::argmax(mx::reshape(mx::take(b, b.shape(1) - 1, 1), {-1})).item<int>());
    a = m.forward(mx::array({ta.back()}, {1, 1}, mx::int32), fused_cache.get());
    EXPECT_TRUE(fused_on_gpu(*fused_cache));
    b = m.forward(mx::array({tb.back()}, {1, 1}, mx::int32), composed_cache.get(), &composed);
  }
  std::printf("[ cuda     ] default model: max |logit diff| / max |logit| over 24 steps = %.3g; greedy %s\n", worst,
              ta == tb ? "identical" : "differs");
  EXPECT_LT(worst, 2e-2f);
  EXPECT_EQ(ta, tb);
}

// A long context: the decode step's attention splits the keys into more
// ranges than a warp has lanes (16 keys a range), and past 2,048 keys into
// the most ranges there are (longer ones). Teacher-forced on the composed
// path's tokens, so a near-tie cannot fork the two.
TEST(CudaStep, DefaultModelDecodesALongContextAsTheComposedBlock) {
  SKIP_OFF_GPU();
  auto loaded = load_model(cpu_context(), {});
  const Model& m = *loaded.model;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "The history of science is long, and its records are many. ";
  const std::vector<int> all = loaded.tokenizer.encode(text);
  for (int n : {700, 2100}) {
    ASSERT_GE(static_cast<int>(all.size()), n);
    auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
    nn::Hooks composed;
    mx::array tokens(all.begin(), {1, n}, mx::int32);
    mx::array a = m.forward(tokens, fused_cache.get());
    mx::array b = m.forward(tokens, composed_cache.get(), &composed);
    float worst = 0;
    for (int i = 0; i < 8; ++i) {
      const mx::array la = mx::take(a, a.shape(1) - 1, 1), lb = mx::take(b, b.shape(1) - 1, 1);
      worst = std::max(worst, relative(la, lb));
      const int next = mx::argmax(mx::reshape(lb, {-1})).item<int>();
      a = m.forward(mx::array({next}, {1, 1}, mx::int32), fused_cache.get());
      EXPECT_TRUE(fused_on_gpu(*fused_cache));
      b = m.forward(mx::array({next}, {1, 1}, mx::int32), composed_cache.get(), &composed);
    }
    std::printf("[ cuda     ] default model, %d-token context: max |logit diff| / max |logit| over 8 steps = %.3g\n", n,
                worst);
    EXPECT_LT(worst, 2e-2f) << n;
  }
}

TEST(CudaStep, Gemma3DecodesAsTheComposedBlock) {
  // Teacher-forced on the composed path's greedy tokens, so one near-tie does
  // not send the two paths down different texts; a step's picks must agree
  // unless the composed logits' top two are closer than the bound.
  SKIP_OFF_GPU();
  const auto path = default_model_path_for_tests().parent_path() / "gemma-3-270m-q4_k_m.gguf";
  LMLAB_REQUIRE_FILE(path);
  auto loaded = load_model(cpu_context(), {.model = path.string()});
  const Model& m = *loaded.model;
  ASSERT_EQ(m.dtype(), mx::bfloat16);
  std::vector<int> prompt = loaded.tokenizer.encode("The capital of France is");
  auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
  nn::Hooks composed;
  mx::array tokens(prompt.begin(), {1, static_cast<int>(prompt.size())}, mx::int32);
  mx::array a = m.forward(tokens, fused_cache.get());
  EXPECT_TRUE(fused_on_gpu(*fused_cache));
  mx::array b = m.forward(tokens, composed_cache.get(), &composed);
  // bfloat16 rounds every intermediate to 8 bits, in different orders on the
  // two paths, over 18 layers; logits reach ~30.
  const float bound = 1.0f;
  float worst = 0;
  int agree = 0, ties = 0;
  for (int i = 0; i < 24; ++i) {
    auto last = [](const mx::array& l) { return mx::astype(mx::reshape(mx::take(l, l.shape(1) - 1, 1), {-1}), mx::float32); };
    const mx::array la = last(a), lb = last(b);
    worst = std::max(worst, max_diff(la, lb));
    const int ta = mx::argmax(la).item<int>(), tb = mx::argmax(lb).item<int>();
    const mx::array top2 = mx::topk(lb, 2);
    const float margin = std::abs(mx::subtract(mx::take(top2, 1), mx::take(top2, 0)).item<float>());
    if (margin < bound) ++ties;
    else EXPECT_EQ(ta, tb) << "step " << i << ", composed margin " << margin;
    agree += ta == tb;
    a = m.forward(mx::array({tb}, {1, 1}, mx::int32), fused_cache.get());
    EXPECT_TRUE(fused_on_gpu(*fused_cache));
    b = m.forward(mx::array({tb}, {1, 1}, mx::int32), composed_cache.get(), &composed);
  }
  std::printf("[ cuda     ] gemma3-270m (bfloat16): max |logit diff| over 24 steps = %.3g; %d of 24 picks agree (%d near-ties)\n",
              worst, agree, ties);
  EXPECT_LT(worst, bound);
}

// Greedy decode of `steps` tokens after `prompt` (the composed block fills
// the cache when the prompt is long), B rows, the stack on or off; the
// sequences in `others` decode in turn with it, each with its own cache (so
// one StepGraph replays steps of several caches, positions and buffers).
std::vector<mx::array> decode(const Model& m, const std::vector<std::vector<int>>& prompts, int steps, bool stack,
                              int batch = 1) {
  nn::set_gpu_stack_enabled(stack);
  std::vector<std::unique_ptr<nn::KVCache>> caches;
  std::vector<mx::array> next, logits;
  for (const auto& p : prompts) {
    caches.push_back(m.make_cache());
    mx::array l = m.forward(batched_chunk(p, batch, m.config().vocab_size), caches.back().get());
    next.push_back(mx::astype(mx::argmax(mx::take(l, l.shape(1) - 1, 1), -1, /*keepdims=*/true), mx::int32));
  }
  for (int i = 0; i < steps; ++i)
    for (size_t s = 0; s < prompts.size(); ++s) {
      mx::array l = m.forward(next[s], caches[s].get());
      EXPECT_EQ(cache_writer(*caches[s]), stack ? "LmlabCudaDecoderStack" : "LmlabCudaDecoderStep") << "step " << i;
      mx::eval(l);
      logits.push_back(l);
      next[s] = mx::astype(mx::argmax(mx::take(l, 0, 1), -1, /*keepdims=*/true), mx::int32);
    }
  nn::set_gpu_stack_enabled(true);
  return logits;
}

void expect_stack_equals_layer_steps(const Model& m, const char* what) {
  // A short prompt, one past the cache's 256-token chunk (its buffers are
  // replaced mid-decode), one whose keys take more ranges than a warp has
  // lanes, two interleaved sequences, and a batch of 3.
  std::vector<int> longer, longest;
  for (int i = 0; i < 250; ++i) longer.push_back((i * 131 + 17) % m.config().vocab_size);
  for (int i = 0; i < 600; ++i) longest.push_back((i * 71 + 3) % m.config().vocab_size);
  const std::vector<std::vector<std::vector<int>>> runs = {
      {{5, 9, 2, 41}}, {longer}, {longest}, {{7, 8}, {1, 2, 3, 4, 5}}};
  for (size_t r = 0; r < runs.size() + 1; ++r) {
    const auto& prompts = r < runs.size() ? runs[r] : runs[0];
    const int batch = r < runs.size() ? 1 : 3;
    auto a = decode(m, prompts, 12, true, batch), b = decode(m, prompts, 12, false, batch);
    ASSERT_EQ(a.size(), b.size());
    float worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, max_diff(a[i], b[i]));
    std::printf("[ cuda     ] %s, run %zu: stack vs layer steps, max |logit diff| = %g\n", what, r, worst);
    // The same kernels with the same parameters, only launched from another graph.
    EXPECT_EQ(worst, 0.0f) << what << " run " << r;
  }
}

TEST(CudaStep, StackEqualsTheLayerSteps) {
  SKIP_OFF_GPU();
  auto loaded = load_model(cpu_context(), {});
  expect_stack_equals_layer_steps(*loaded.model, "default model");
  for (const char* family : {"model/tiny/qwen3_q4", "families/gemma3_text_q5"}) {
    auto dir = fixtures_dir() / family;
    LMLAB_REQUIRE_FILE(dir / "config.json");
    io::ModelDir d = io::read_model_dir(dir);
    auto m = make_model(d.config, std::move(d.weights), mx::float16);
    expect_stack_equals_layer_steps(*m, family);
  }
}

}  // namespace
}  // namespace lmlab::test
