// Data-parallel LoRA (src/train/data_parallel.h) on the 4-bit LoRA fixture
// model (2 layers, 96 wide: a step takes milliseconds, so the ranks' start-up
// is most of each run).
//
// TokenWeighted*: one process plays both ranks of a batch whose shares hold
// 34 and 87 target tokens; the shares' gradients, weighted by combine_share
// and summed, equal the combined batch's gradient (measured max 1.8e-6 against
// gradients up to 0.99: float32 summation order; bound 1e-5 of the largest),
// while mlx-lm's plain mean of the two shares' gradients misses it by 0.5.
//
// TwoRanks*: `lmlab launch -n 2 -- lmlab lora` over the ring backend on
// 127.0.0.1 against `lmlab lora` alone with the same flags: 10 iterations of
// SGD (an update proportional to the gradient, so a wrong reduction shows
// undamped) with gradient accumulation 2 and a checkpoint mid-accumulation at
// 5. Compared: every train and validation loss and trained-token count in
// train_log.csv, and the adapters. Measured: losses equal to 6 digits, adapters within 4.1e-8 of the one-process run's. Bounds: 2e-5
// relative on losses, 5e-5 absolute on adapters. The mean of the shares'
// gradients instead of the token-weighted sum moves losses by 1e-4 relative
// and adapters by 1.4e-3, and fails both. Rank 1 runs with an adapter path of
// its own, which must stay unwritten. The run is then resumed on 2 ranks from
// its checkpoint at 5 and ends on the same adapters (a rank other than 0 also
// adding the checkpoint's accumulated gradients misses by 4e-3). Last, a rank
// killed mid-training ends the job with the launcher's one line naming it.
// About 17 s in all, most of it the ranks' start-up.
#include <mlx/mlx.h>

#include <deque>

#include "launch_test_util.h"
#include "lmlab/train.h"
#include "models/model_test_util.h"
#include "models/transformer.h"
#include "train/batches.h"
#include "train/data_parallel.h"
#include "train/lora.h"
#include "train/loss.h"

namespace lmlab::test {
namespace {

namespace fs = std::filesystem;
namespace mx = mlx::core;
using mx::array;

fs::path lora_fixture() { return fixtures_dir() / "lora"; }

// ---------------------------------------------------------------------------
// One process playing both ranks.

// Stands in for the other rank: each sum adds what the other rank passed to
// the same call.
struct Peer : train::GradientReducer {
  int rank_ = 0;
  std::deque<std::vector<array>> theirs;
  int rank() const override { return rank_; }
  int size() const override { return 2; }
  std::vector<array> sum(std::vector<array> xs) override {
    std::vector<array> other = theirs.front();
    theirs.pop_front();
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = mx::add(xs[i], other[i]);
    return xs;
  }
};

struct Grads {
  array loss, tokens;
  std::vector<array> grads;
};

float max_diff(const std::vector<array>& a, const std::vector<array>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, mx::max(mx::abs(mx::subtract(a[i], b[i]))).item<float>());
  return m;
}

TEST(DataParallel, TokenWeightedSharesGiveTheCombinedBatchsGradient) {
  LMLAB_REQUIRE_FILE(lora_fixture() / "model" / "model.safetensors");
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = (lora_fixture() / "model").string()});
  const auto& t = static_cast<const models::Transformer&>(*m.model);
  std::vector<std::string> names =
      train::attach_lora(*m.model, train::lora_targets(t, 2, {}), train::LoraParameters{}, "lora", 7);
  mx::random::seed(3);
  for (const auto& n : names)  // lora_b away from zero, so that every adapter tensor has a gradient
    if (n.ends_with(".lora_b")) m.model->weights().set(n, mx::multiply(mx::random::normal(m.model->weights().at(n).shape()), array(0.05f)));
  // Rank 0 takes examples 0 and 2 (short), rank 1 examples 1 and 3 (long).
  std::vector<train::Example> ex;
  for (int len : {20, 60, 30, 70}) {
    train::Example e;
    for (int i = 0; i < len; ++i) e.tokens.push_back((i * 37 + len) % 500 + 3);
    e.offset = len / 3;
    ex.push_back(e);
  }
  std::vector<array> p;
  for (const auto& n : names) p.push_back(m.model->weights().at(n));
  std::vector<int> argnums(p.size());
  for (size_t i = 0; i < p.size(); ++i) argnums[i] = static_cast<int>(i);
  auto grads_of = [&](const std::vector<int>& idx) {
    train::Batch b = train::make_batch(ex, idx, 2048, /*mask_prompt=*/true);
    auto f = [&](const std::vector<array>& traced) {
      for (size_t i = 0; i < names.size(); ++i) m.model->weights().set(names[i], traced[i]);
      auto [loss, toks] = train::batch_loss(t, b, {});
      return std::vector<array>{loss, toks};
    };
    auto [v, g] = mx::value_and_grad(f, argnums)(p);
    for (size_t i = 0; i < names.size(); ++i) m.model->weights().set(names[i], p[i]);
    mx::eval(v);
    mx::eval(g);
    return Grads{v[0], v[1], g};
  };
  const std::vector<int> batch{0, 1, 2, 3};
  Grads whole = grads_of(batch), r0 = grads_of(train::rank_share(batch, 0, 2)), r1 = grads_of(train::rank_share(batch, 1, 2));
  ASSERT_EQ(train::rank_share(batch, 1, 2), (std::vector<int>{1, 3}));
  const int n0 = r0.tokens.item<int>(), n1 = r1.tokens.item<int>();
  EXPECT_EQ(n0 + n1, whole.tokens.item<int>());
  EXPECT_GT(n1, 2 * n0) << "the shares should be far from equal";
  auto loss_tokens = [](const Grads& g) {
    array n = mx::astype(g.tokens, mx::float32);
    return std::vector<array>{mx::multiply(g.loss, n), n};
  };
  Peer as0, as1;
  as0.rank_ = 0, as1.rank_ = 1;
  as0.theirs.push_back(loss_tokens(r1));
  as1.theirs.push_back(loss_tokens(r0));
  train::CombinedShare c1 = train::combine_share(r1.loss, r1.tokens, r1.grads, as1);
  train::CombinedShare c0 = train::combine_share(r0.loss, r0.tokens, r0.grads, as0);
  as0.theirs.push_back(c1.grads);
  std::vector<array> summed = as0.sum(c0.grads);
  const float diff = max_diff(summed, whole.grads);
  std::vector<array> mean;  // mlx-lm's average_gradients
  for (size_t i = 0; i < names.size(); ++i) mean.push_back(mx::divide(mx::add(r0.grads[i], r1.grads[i]), array(2.0f)));
  const float mean_diff = max_diff(mean, whole.grads);
  float scale = 0;
  for (const auto& g : whole.grads) scale = std::max(scale, mx::max(mx::abs(g)).item<float>());
  std::printf("[ dp ] shares of %d and %d tokens: token-weighted sum within %.3g of the combined gradient "
              "(max |g| %.3g), the mean of the shares' gradients within %.3g\n",
              n0, n1, diff, scale, mean_diff);
  EXPECT_LT(diff, 1e-5f * scale);
  EXPECT_GT(mean_diff, 1e-2f * scale);
  const float loss = whole.loss.item<float>();
  EXPECT_NEAR(c0.loss.item<float>(), loss, 1e-6f * loss);
  EXPECT_NEAR(c1.loss.item<float>(), loss, 1e-6f * loss);
  EXPECT_EQ(c0.tokens.item<int>(), n0 + n1);
}

TEST(DataParallel, BatchThatDoesNotSplitIsRefused) {
  LMLAB_REQUIRE_FILE(lora_fixture() / "model" / "model.safetensors");
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = (lora_fixture() / "model").string()});
  train::TrainConfig cfg;
  cfg.data = (lora_fixture() / "data").string();
  cfg.batch_size = 3, cfg.num_layers = 2, cfg.adapter_path = temp_dir("dp-split").string();
  train::Trainer trainer(m, cfg);
  auto two = std::make_shared<Peer>();
  try {
    trainer.set_reducer(two);
    ADD_FAILURE() << "batch 3 on 2 ranks was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "[lora] --batch-size 3 does not split over 2 ranks (each rank takes an equal share of every "
                           "batch); use a multiple of 2");
  }
}

// ---------------------------------------------------------------------------
// Real ranks: lmlab lora under lmlab launch.

std::string lora_args(const std::string& adapter_path, int iters = 10) {
  const fs::path f = lora_fixture();
  return fmt::format("lora --model {} --data {} --iters {} --batch-size 4 --num-layers 2 --optimizer sgd "
                     "--learning-rate 0.05 --grad-accumulation-steps 2 --steps-per-report 1 --steps-per-eval 5 "
                     "--val-batches 2 --save-every 5 --mask-prompt --seed 7 --adapter-path {}",
                     (f / "model").string(), (f / "data").string(), iters, adapter_path);
}

// (iteration, train or val) → (loss, tokens) from train_log.csv.
std::map<std::pair<int, bool>, std::pair<double, long>> read_log(const fs::path& dir) {
  std::ifstream f(dir / "train_log.csv");
  std::string line;
  std::getline(f, line);
  std::map<std::pair<int, bool>, std::pair<double, long>> out;
  while (std::getline(f, line)) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string part; std::getline(ss, part, ',');) c.push_back(part);
    c.resize(8);
    const bool train = !c[1].empty();
    out[{std::stoi(c[0]), train}] = {std::stod(train ? c[1] : c[2]), train ? std::stol(c[6]) : 0};
  }
  return out;
}

float adapters_diff(const fs::path& a, const fs::path& b) {
  auto x = mx::load_safetensors(a.string()).first, y = mx::load_safetensors(b.string()).first;
  EXPECT_EQ(x.size(), y.size());
  float m = 0;
  for (const auto& [k, v] : x) m = std::max(m, mx::max(mx::abs(mx::subtract(v, y.at(k)))).item<float>());
  return m;
}

void expect_same_log(const fs::path& one, const fs::path& two) {
  auto a = read_log(one), b = read_log(two);
  ASSERT_EQ(a.size(), 13u);  // 10 reports, 3 validations
  ASSERT_EQ(b.size(), a.size());
  for (const auto& [key, v] : a) {
    EXPECT_NEAR(b[key].first, v.first, 2e-5 * v.first) << "iteration " << key.first << (key.second ? " train" : " val");
    EXPECT_EQ(b[key].second, v.second) << "trained tokens at iteration " << key.first;
  }
}

TEST(DataParallel, TwoRanksTrainAsOneProcessOnTheCombinedBatch) {
  LMLAB_REQUIRE_FILE(lora_fixture() / "model" / "model.safetensors");
  const fs::path dir = temp_dir("dp-lora");
  const std::string one_cmd = fmt::format("{} {} > {} 2>&1", lmlab_binary(), lora_args((dir / "one").string()),
                                          (dir / "one.txt").string());
  ASSERT_EQ(std::system(one_cmd.c_str()), 0) << slurp(dir / "one.txt");
  // Rank 1 gets an adapter path of its own: it must stay unwritten.
  LaunchRun two = launch_cli(fmt::format("-n 2 -- sh -c 'exec {} {}$MLX_RANK'", lmlab_binary(),
                                         lora_args((dir / "two").string())),
                             120);
  ASSERT_EQ(two.code, 0) << two.out << two.err;
  EXPECT_NE(two.out.find("Data parallel over 2 ranks: 2 of each batch's 4 examples per rank"), std::string::npos)
      << two.out;
  EXPECT_EQ(two.out.find("[rank 1]"), std::string::npos) << "rank 1 printed: " << two.out;
  EXPECT_FALSE(fs::exists(dir / "two1")) << "rank 1 wrote files";
  expect_same_log(dir / "one", dir / "two0");
  const float diff = adapters_diff(dir / "one" / "adapters.safetensors", dir / "two0" / "adapters.safetensors");
  std::printf("[ dp ] 2 ranks vs 1 process, 10 iterations: max |adapter diff| %.3g (%.1f s for 2 ranks)\n", diff,
              two.seconds);
  EXPECT_LT(diff, 5e-5f);

  // Resumed on 2 ranks from the checkpoint at 5 (mid-accumulation: the
  // ranks' accumulated gradients were summed into it).
  const fs::path resumed = dir / "resumed";
  fs::copy(dir / "two0", resumed);
  for (const char* late : {"0000010_adapters.safetensors", "0000010_state.safetensors"}) {
    ASSERT_TRUE(fs::remove(resumed / late)) << late;
  }
  LaunchRun again = launch_cli(fmt::format("-n 2 -- {} {} --resume", lmlab_binary(), lora_args(resumed.string())), 120);
  ASSERT_EQ(again.code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("Iter 6: Train loss"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("Iter 5: Train loss"), std::string::npos) << again.out;
  expect_same_log(dir / "one", resumed);
  const float resumed_diff = adapters_diff(dir / "one" / "adapters.safetensors", resumed / "adapters.safetensors");
  std::printf("[ dp ] resumed at 5 on 2 ranks: max |adapter diff| %.3g against 1 process\n", resumed_diff);
  EXPECT_LT(resumed_diff, 5e-5f);
}

TEST(DataParallel, KilledRankEndsTrainingWithOneLine) {
  LMLAB_REQUIRE_FILE(lora_fixture() / "model" / "model.safetensors");
  const fs::path dir = temp_dir("dp-kill");
  const pid_t launcher = start_launch(
      fmt::format("-n 2 -- {} {}", lmlab_binary(), lora_args((dir / "a").string(), 100000)),
      dir);
  // Once rank 0 reports iteration 2, both ranks are inside training steps.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (slurp(dir / "out").find("Iter 2: Train loss") == std::string::npos && std::chrono::steady_clock::now() < until &&
         ::waitpid(launcher, nullptr, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill_rank_one_and_expect_one_line(launcher, dir, "dp kill");
}

}  // namespace
}  // namespace lmlab::test
