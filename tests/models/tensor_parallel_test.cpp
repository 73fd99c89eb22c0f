// Tensor parallelism with real ranks: `lmlab launch -n 2` over MLX's ring
// backend on 127.0.0.1 runs the TensorParallelRank suite below in two
// processes. Each rank loads every model twice, whole and as its shard, and
// checks that the shard is an exact slice of the whole weights (packed words,
// scales and biases dequantize to the same values), that the two ranks' shards
// partition each block, and that the sharded model's logits match the whole
// model's and its greedy tokens equal them: the tiny checkpoint of every
// family (float and 4-bit, with 8-bit per-layer overrides) and the default
// model, through Generator (rank 0's token broadcast) and its MLX copy.
//
// Tolerance: the sharded o and down projections add two partial sums instead
// of one running sum, so logits move by float32 rounding only (measured at most
// 2e-6 on the tiny models and 4e-5 on the default model's logits of about 20);
// 1e-4 and 5e-4 leave room for other summation orders and would still fail on
// a wrong slice, which moves logits by more than 0.1.
//
// The rank suite skips when it is not run under a launcher; TensorParallel.*
// (run by ctest) starts it and fails unless both ranks ran and passed it. Its
// checks are EXPECTs only: an early return on one rank would put the ranks'
// collectives out of step.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <mlx/distributed/ops.h>
#include <nlohmann/json.hpp>

#include "lmlab/generate.h"
#include "lmlab/io.h"
#include "lmlab/launch.h"
#include "launch_test_util.h"
#include "models/model_test_util.h"
#include "models/shard.h"
#include "models/transformer.h"
#include "nn/linear.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

const std::vector<std::string> kTiny = {"llama",      "llama_q4",    "llama3_scaled",  "llama3_scaled_q4",
                                        "mistral",    "mistral_q4",  "qwen2",          "qwen2_q4",
                                        "qwen3",      "qwen3_q4",    "gemma3_text",    "gemma3_text_q4",
                                        "gemma3_text_q5"};

// ---------------------------------------------------------------------------
// The rank side.

#define SKIP_UNLESS_LAUNCHED()                                                                     \
  do {                                                                                             \
    if (launched_rank() < 0) GTEST_SKIP() << "runs on 2 ranks under lmlab launch (TensorParallel.*)"; \
  } while (0)

const mx::distributed::Group& group() {
  const Context& ctx = cpu_context();
  if (!ctx.group()) throw std::runtime_error("launched, but the Context joined no group");
  return *ctx.group();
}

std::unique_ptr<Model> load_tiny(const std::string& name, bool sharded) {
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  auto m = make_model(d.config, std::move(d.weights), mx::float32, sharded ? &group() : nullptr);
  mx::eval(m->weights().arrays());
  return m;
}

float max_diff(const mx::array& a, const mx::array& b) {
  return mx::max(mx::abs(mx::subtract(mx::astype(a, mx::float32), mx::astype(b, mx::float32)))).item<float>();
}

// Each of the shard's projections, dequantized (and its bias), equals the
// planned slice of the whole model's: packed words, scales and biases were cut
// consistently.
void expect_exact_slices(const Model& whole, const Model& shard, const std::string& what) {
  const auto& wb = static_cast<const models::Transformer&>(whole).spec().blocks;
  const int r = group().rank(), n = group().size();
  auto group_of = [&](const std::string& name) {
    const QuantSpec* q = whole.weights().quant(name);
    return q ? q->group_size : 1;
  };
  for (const auto& b : wb) {
    const auto& nm = b.names();
    const int Dh = b.spec().head_dim, I = nn::Linear::view(whole.weights(), nm.gate).out_features();
    const models::BlockShard s =
        models::plan_block_shard(b.spec(), I, group_of(nm.o), group_of(nm.down), r, n, b.layer());
    const std::pair<int, int> heads{s.q_begin * Dh, s.q_end * Dh}, kv{s.kv_begin * Dh, s.kv_end * Dh},
        mlp{s.mlp_begin, s.mlp_end};
    const std::vector<std::tuple<const std::string*, std::pair<int, int>, bool>> cuts = {
        {&nm.q, heads, true}, {&nm.k, kv, true},    {&nm.v, kv, true},      {&nm.o, heads, false},
        {&nm.gate, mlp, true}, {&nm.up, mlp, true}, {&nm.down, mlp, false}};
    for (const auto& [name, range, by_rows] : cuts) {
      const auto [begin, end] = range;
      nn::Linear mine = nn::Linear::view(shard.weights(), *name), all = nn::Linear::view(whole.weights(), *name);
      mx::array want = all.dense_weight(mx::float32);
      want = by_rows ? mx::slice(want, {begin, 0}, {end, want.shape(1)}) : mx::slice(want, {0, begin}, {want.shape(0), end});
      EXPECT_EQ(mine.dense_weight(mx::float32).shape(), want.shape()) << what << " " << *name;
      EXPECT_EQ(max_diff(mine.dense_weight(mx::float32), want), 0.0f) << what << " " << *name;
      if (all.bias)
        EXPECT_EQ(max_diff(*mine.bias, by_rows ? mx::slice(*all.bias, {begin}, {end}) : *all.bias), 0.0f)
            << what << " " << *name << ".bias";
    }
  }
}

// The shards' projection bytes over all ranks equal the whole model's, unless
// key/value heads are shared (fewer than ranks), where k and v are held twice.
void expect_partition(const Model& whole, const Model& shard, bool shared_kv, const std::string& what) {
  auto bytes = [](const Model& m, bool kv) {
    int64_t n = 0;
    for (const auto& b : static_cast<const models::Transformer&>(m).spec().blocks)
      for (const std::string* name : b.names().projections()) {
        const bool is_kv = name == &b.names().k || name == &b.names().v;
        if (is_kv != kv) continue;
        for (const char* leaf : {".weight", ".scales", ".biases", ".bias"})
          if (const mx::array* a = m.weights().find(*name + leaf)) n += a->nbytes();
      }
    return n;
  };
  auto summed = [&](int64_t n) {
    return mx::distributed::all_sum(mx::array(static_cast<float>(n)), group()).item<float>();
  };
  EXPECT_EQ(summed(bytes(shard, false)), static_cast<float>(bytes(whole, false))) << what;
  EXPECT_EQ(summed(bytes(shard, true)), static_cast<float>(bytes(whole, true) * (shared_kv ? group().size() : 1)))
      << what;
}

TEST(TensorParallelRank, TinyFamiliesMatchTheWholeModel) {
  SKIP_UNLESS_LAUNCHED();
  for (const auto& name : kTiny) {
    auto whole = load_tiny(name, false), shard = load_tiny(name, true);
    EXPECT_NE(shard->tensor_group(), nullptr);
    expect_exact_slices(*whole, *shard, name);
    expect_partition(*whole, *shard, whole->config().num_key_value_heads < group().size(), name);
    auto [g, _] = mx::load_safetensors((tiny_checkpoint_dir(name) / "golden.safetensors").string());
    const float full = max_diff(shard->forward(g.at("ids")), whole->forward(g.at("ids")));
    std::vector<int> ids = {5, 9, 2, 41, 7, 3, 11, 19};
    EXPECT_EQ(greedy(*shard, ids, 12), greedy(*whole, ids, 12)) << name;
    std::printf("[ tp rank %d ] %s: max |logit diff| %.3g\n", group().rank(), name.c_str(), full);
    EXPECT_LT(full, 1e-4f) << name;
  }
}

TEST(TensorParallelRank, DefaultModelGeneratesTheWholeModelsTokens) {
  SKIP_UNLESS_LAUNCHED();
  // The GGUF (read whole, then cut) generates; its MLX copy (safetensors,
  // cut before it is read) checks slices and logits.
  for (const std::string path : {default_model_path_for_tests().string(),
                                 (fixtures_dir() / "model" / "smollm2-mlx-q4").string()}) {
    LoadedModel whole = load_model(cpu_context(), LoadOptions{.model = path, .tensor_parallel = false});
    LoadedModel shard = load_model(cpu_context(), LoadOptions{.model = path});
    EXPECT_NE(shard.model->tensor_group(), nullptr);
    expect_exact_slices(*whole.model, *shard.model, path);
    expect_partition(*whole.model, *shard.model, false, path);
    std::vector<int> ids = build_prompt(whole, "What is the capital of France?", "", true);
    mx::array x(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32);
    const float diff = max_diff(shard.model->forward(x), whole.model->forward(x));
    std::printf("[ tp rank %d ] %s: max |logit diff| %.3g\n", group().rank(), path.c_str(), diff);
    EXPECT_LT(diff, 5e-4f) << path;
    if (path.ends_with(".gguf")) {
      GenerateOptions o{.max_tokens = 24, .stop_at_eos = false};
      GenerationResult a = generate(shard, ids, o), b = generate(whole, ids, o);
      EXPECT_EQ(a.tokens, b.tokens) << path;
      EXPECT_NE(a.text.find("Paris"), std::string::npos) << a.text;
    }
  }
}

TEST(TensorParallelRank, HooksSeeResidualsAndRefusePerHeadInternals) {
  SKIP_UNLESS_LAUNCHED();
  auto whole = load_tiny("llama", false), shard = load_tiny("llama", true);
  mx::array ids({5, 9, 2, 41, 7}, {1, 5}, mx::int32);
  nn::Hooks a{.residual = true}, b{.residual = true};
  shard->forward(ids, nullptr, &a);
  whole->forward(ids, nullptr, &b);
  EXPECT_LT(max_diff(a.captured.at("layers.1.residual"), b.captured.at("layers.1.residual")), 1e-5f);
  nn::Hooks attention{.attention = true};
  EXPECT_THROW(shard->forward(ids, nullptr, &attention), Unsupported);
}

// ---------------------------------------------------------------------------
// The launcher side, run by ctest.

std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

TEST(TensorParallel, TwoRanksRunTheRankSuite) {
  LMLAB_REQUIRE_FILE(default_model_path_for_tests());
  LaunchRun r = launch_cli(fmt::format("-n 2 -- {} --gtest_filter=TensorParallelRank.* --gtest_color=no", self_exe()));
  std::printf("%s%s", r.out.c_str(), r.err.c_str());
  EXPECT_EQ(r.code, 0);
  const std::string passed = "[  PASSED  ] 3 tests.";
  EXPECT_NE(r.out.find(passed), std::string::npos) << "rank 0 did not pass all 3";
  EXPECT_NE(r.out.find("[rank 1] " + passed), std::string::npos) << "rank 1 did not pass all 3";
  EXPECT_EQ(r.out.find("SKIPPED"), std::string::npos);
}

TEST(TensorParallel, GenerateOnTwoRanksPrintsTheOneRankAnswer) {
  LMLAB_REQUIRE_FILE(default_model_path_for_tests());
  const std::string args = "generate -p 'Name three primary colors.' --max-tokens 24 --ignore-eos --json";
  auto dir = temp_dir("tp-one");
  const std::string one_cmd = lmlab_binary() + " " + args + " > " + (dir / "one.json").string();
  ASSERT_EQ(std::system(one_cmd.c_str()), 0);
  LaunchRun two = launch_cli("-n 2 -- " + lmlab_binary() + " " + args);
  ASSERT_EQ(two.code, 0) << two.err;
  // Only rank 0 prints: stdout is exactly one JSON document.
  auto a = nlohmann::json::parse(slurp(dir / "one.json")), b = nlohmann::json::parse(two.out);
  EXPECT_EQ(b["tokens"], a["tokens"]);
  EXPECT_EQ(b["text"], a["text"]);
  std::printf("[ tp cli   ] %s\n", b["text"].get<std::string>().c_str());
}

TEST(TensorParallel, KilledRankEndsTheJobWithOneLine) {
  LMLAB_REQUIRE_FILE(default_model_path_for_tests());
  auto dir = temp_dir("tp-kill");
  const pid_t launcher =
      start_launch("-n 2 -- " + lmlab_binary() + " generate -p 'Tell me a long story.' --ignore-eos --max-tokens 100000", dir);
  // Once rank 0 prints the first token, both ranks are inside collective decode steps.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (slurp(dir / "out").size() < 20 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill_rank_one_and_expect_one_line(launcher, dir, "tp kill");
}

TEST(TensorParallel, RankThatNeverJoinsTimesOutNamingTheFlag) {
  LMLAB_REQUIRE_FILE(default_model_path_for_tests());
  LaunchRun r = launch_cli("-n 2 --init-timeout 1 -- sh -c 'if [ $MLX_RANK = 1 ]; then exec sleep 60; fi; exec " +
                           lmlab_binary() + " generate -p hi'", 60);
  std::printf("[ tp init  ] %.2f s; stderr:\n%s", r.seconds, r.err.c_str());
  EXPECT_EQ(r.code, 1);
  // Far below the 60 s the other rank sleeps, with room for a loaded machine's
  // start-up: a rank that waited without a deadline would take the whole 60 s.
  EXPECT_LT(r.seconds, 30.0);
  EXPECT_NE(r.err.find("[rank 0] error: [distributed] rank 0 of 2 waited 1 s for the other ranks"), std::string::npos);
  EXPECT_NE(r.err.find("--init-timeout"), std::string::npos);
  EXPECT_NE(r.err.find("error: [launch] rank 0 of 2 exited with status 1; stopped rank 1\n"), std::string::npos);
}

}  // namespace
}  // namespace lmlab::test
