// Gradients of the training graph:
//  - the quantized matmul's gradient with respect to its input equals the
//    dequantized float path's (4- and 8-bit, groups 32/64/128);
//  - LoRA gradients of the whole loss (quantized projections, attention,
//    SwiGLU, norms, masking) on the tiny 4-bit llama match central finite
//    differences along random directions;
//  - DoRA: the magnitude's gradient matches finite differences of the whole
//    loss; A and B follow DoRA's definition (the adapted weight's norm held
//    constant, as mlx-lm's stop_gradient does), checked on one layer against
//    finite differences of that surrogate;
//  - the loss counts exactly the targets from the prompt offset to the last
//    real token (and one pad target more in mlx-lm's mask);
//  - a half-precision projection's adapter (its derivative recomputes the
//    float32 copy of x) against autodiff of the composed product;
//  - mixture of experts: LoRA targets in mlx-lm's module order (stacked
//    experts, router, attention), LoRASwitchLinear shapes, DoRA refused on
//    experts, and the expert adapters' gradients against finite differences.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"
#include "models/transformer.h"
#include "nn/cpu/quantized_matmul.h"
#include "nn/linear.h"
#include "train/lora.h"
#include "train/loss.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using mx::array;

array rnd(const mx::Shape& shape, float scale, uint64_t seed) {
  return mx::multiply(mx::random::normal(shape, mx::float32, 0, 1, mx::random::key(seed)), array(scale));
}

float max_abs(const array& a) { return mx::max(mx::abs(a)).item<float>(); }

TEST(Gradients, QuantizedMatmulInputGradientEqualsDequantizedPath) {
  (void)cpu_context();
  for (int bits : {4, 8})
    for (int group : {32, 64, 128}) {
      const int N = 48, K = 256;
      array w = rnd({N, K}, 0.3f, 1);
      auto q = mx::quantize(w, group, bits);
      array dense = mx::dequantize(q[0], q[1], q[2], group, bits);
      array x = rnd({3, 5, K}, 1.0f, 2), c = rnd({3, 5, N}, 1.0f, 3);
      auto f_q = [&](const std::vector<array>& in) {
        return std::vector<array>{mx::sum(mx::multiply(nn::quantized_matmul(in[0], q[0], q[1], q[2], group, bits), c))};
      };
      auto f_d = [&](const std::vector<array>& in) {
        return std::vector<array>{mx::sum(mx::multiply(mx::matmul(in[0], mx::transpose(dense)), c))};
      };
      array gq = mx::value_and_grad(f_q, std::vector<int>{0})({x}).second[0];
      array gd = mx::value_and_grad(f_d, std::vector<int>{0})({x}).second[0];
      const float rel = max_abs(mx::subtract(gq, gd)) / max_abs(gd);
      EXPECT_LT(rel, 1e-5f) << bits << "-bit, group " << group;
      EXPECT_TRUE(nn::quantized_matmul_is_native(x, q[0], q[1], q[2], group, bits)) << "lmlab's kernel was under test";
    }
}

std::unique_ptr<Model> tiny(const std::string& name) {
  io::ModelDir d = io::read_model_dir(fixtures_dir() / "model" / "tiny" / name);
  return make_model(d.config, std::move(d.weights), mx::float32);
}

// LoRA (or DoRA) on every projection, B non-zero so every gradient is.
std::vector<std::string> attach(Model& m, const std::string& kind) {
  auto& t = static_cast<const models::Transformer&>(m);
  std::vector<std::string> names;
  uint64_t seed = 100;
  for (const auto& block : t.spec().blocks)
    for (const std::string* p : block.names().projections()) {
      nn::Linear l = nn::Linear::view(m.weights(), *p);
      m.weights().set(*p + ".lora_a", rnd({l.in_features(), 4}, 0.2f, seed++));
      m.weights().set(*p + ".lora_b", rnd({4, l.out_features()}, 0.05f, seed++));
      names.push_back(*p + ".lora_a");
      names.push_back(*p + ".lora_b");
      if (kind == "dora") {
        array norms = mx::sqrt(mx::sum(mx::square(l.dense_weight(mx::float32)), -1));
        m.weights().set(*p + ".m", mx::multiply(norms, mx::add(array(1.0f), rnd({l.out_features()}, 0.1f, seed++))));
        names.push_back(*p + ".m");
      }
      m.weights().set_adapter(*p, {.kind = kind, .scale = 2.0f});
    }
  return names;
}

train::Batch batch() {
  std::vector<int> ids = {5, 9, 2, 41, 7, 3, 11, 19, 23, 1, 8, 60, 4, 17, 33, 2, 90, 12, 6, 150, 0, 0, 0, 0};
  return {array(ids.begin(), {2, 12}, mx::int32), array({3, 12, 0, 8}, {2, 2}, mx::int32), 12};
}

struct Loss {
  const models::Transformer& t;
  std::vector<std::string> names;
  train::Batch b = batch();
  array operator()(const std::vector<array>& p) const {
    Weights& w = const_cast<Weights&>(t.weights());
    std::vector<array> old;
    for (size_t i = 0; i < names.size(); ++i) old.push_back(w.at(names[i])), w.set(names[i], p[i]);
    array l = train::batch_loss(t, b, {}).first;
    for (size_t i = 0; i < names.size(); ++i) w.set(names[i], old[i]);
    return l;
  }
};

// Directional derivatives: analytic gᵀd against finite differences of the loss.
void check_directions(const Loss& loss, const std::vector<int>& which, const char* what) {
  std::vector<array> p;
  for (const auto& n : loss.names) p.push_back(loss.t.weights().at(n));
  std::vector<int> argnums(p.size());
  for (size_t i = 0; i < p.size(); ++i) argnums[i] = static_cast<int>(i);
  auto f = [&](const std::vector<array>& in) { return std::vector<array>{loss(in)}; };
  auto grads = mx::value_and_grad(f, argnums)(p).second;
  for (uint64_t trial = 0; trial < 4; ++trial) {
    std::vector<array> d(p.size(), array(0.0f));
    double analytic = 0;
    for (int i : which) {
      d[i] = rnd(p[i].shape(), 1.0f, 1000 + trial * 97 + i);
      analytic += mx::sum(mx::multiply(grads[i], d[i])).item<float>();
    }
    // Central differences at ε and ε/2, Richardson-extrapolated: the O(ε²) error cancels.
    auto central = [&](float eps) {
      std::vector<array> plus = p, minus = p;
      for (int i : which) {
        plus[i] = mx::add(p[i], mx::multiply(d[i], array(eps)));
        minus[i] = mx::subtract(p[i], mx::multiply(d[i], array(eps)));
      }
      return (double(loss(plus).item<float>()) - double(loss(minus).item<float>())) / (2.0 * eps);
    };
    const double fd = (4 * central(1e-3f) - central(2e-3f)) / 3;
    std::printf("[ grad     ] %s direction %llu: analytic %.6f, finite difference %.6f\n", what,
                static_cast<unsigned long long>(trial), analytic, fd);
    EXPECT_NEAR(analytic, fd, 1e-3 * std::abs(fd) + 1e-3) << what << " direction " << trial;
  }
}

TEST(Gradients, LoraMatchesFiniteDifferences) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = tiny("llama_q4");
  m->set_training(true);
  Loss loss{static_cast<const models::Transformer&>(*m), attach(*m, "lora")};
  std::vector<int> all(loss.names.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  check_directions(loss, all, "lora");
}

TEST(Gradients, DoraMagnitudeMatchesFiniteDifferences) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = tiny("llama_q4");
  m->set_training(true);
  Loss loss{static_cast<const models::Transformer&>(*m), attach(*m, "dora")};
  std::vector<int> mags;
  for (size_t i = 0; i < loss.names.size(); ++i)
    if (loss.names[i].ends_with(".m")) mags.push_back(static_cast<int>(i));
  check_directions(loss, mags, "dora m");
}

TEST(Gradients, DoraFollowsItsDefinitionOnOneLayer) {
  (void)cpu_context();
  // A 4-bit layer with a bias; y = m/‖W + s·BᵀAᵀ‖ · (x Wᵀ + s·x A B) + bias, the norm held constant.
  const int out = 40, in = 64, r = 4;
  const float s = 3.0f;
  auto q = mx::quantize(rnd({out, in}, 0.3f, 7), 32, 4);
  Weights w;
  const std::string name = "layer";
  w.set(name + ".weight", q[0]);
  w.set(name + ".scales", q[1]);
  w.set(name + ".biases", q[2]);
  w.set(name + ".bias", rnd({out}, 0.1f, 8));
  w.set_quant(name, {.bits = 4, .group_size = 32});
  w.set_adapter(name, {.kind = "dora", .scale = s});
  array a0 = rnd({in, r}, 0.2f, 9), b0 = rnd({r, out}, 0.2f, 10), m0 = mx::add(array(1.5f), rnd({out}, 0.1f, 11));
  array x = rnd({6, in}, 1.0f, 12), c = rnd({6, out}, 1.0f, 13);
  array dense = mx::dequantize(q[0], q[1], q[2], 32, 4);
  array norm0 = mx::sqrt(mx::sum(mx::square(mx::add(dense, mx::multiply(mx::transpose(mx::matmul(a0, b0)), array(s)))), -1));
  auto lmlab_loss = [&](const std::vector<array>& p) {
    w.set(name + ".lora_a", p[0]);
    w.set(name + ".lora_b", p[1]);
    w.set(name + ".m", p[2]);
    return std::vector<array>{mx::sum(mx::multiply(nn::Linear::view(w, name)(x), c))};
  };
  auto surrogate = [&](const std::vector<array>& p) {
    array y = mx::add(mx::matmul(x, mx::transpose(dense)), mx::multiply(mx::matmul(mx::matmul(x, p[0]), p[1]), array(s)));
    y = mx::add(mx::multiply(mx::divide(p[2], norm0), y), w.at(name + ".bias"));
    return mx::sum(mx::multiply(y, c));
  };
  std::vector<array> p0 = {a0, b0, m0};
  auto [value, grads] = mx::value_and_grad(lmlab_loss, std::vector<int>{0, 1, 2})(p0);
  EXPECT_NEAR(value[0].item<float>(), surrogate(p0).item<float>(), 1e-3) << "the layer is the surrogate at p0";
  for (uint64_t trial = 0; trial < 3; ++trial) {
    std::vector<array> d = {rnd(a0.shape(), 1, 20 + trial), rnd(b0.shape(), 1, 30 + trial), rnd(m0.shape(), 1, 40 + trial)};
    double analytic = 0;
    for (int i = 0; i < 3; ++i) analytic += mx::sum(mx::multiply(grads[i], d[i])).item<float>();
    const float eps = 1e-3f;
    std::vector<array> plus, minus;
    for (int i = 0; i < 3; ++i) {
      plus.push_back(mx::add(p0[i], mx::multiply(d[i], array(eps))));
      minus.push_back(mx::subtract(p0[i], mx::multiply(d[i], array(eps))));
    }
    const double fd = (double(surrogate(plus).item<float>()) - double(surrogate(minus).item<float>())) / (2.0 * eps);
    EXPECT_NEAR(analytic, fd, 2e-3 * std::abs(fd) + 5e-3) << "direction " << trial;
  }
}

TEST(Loss, CountsTheTargetsFromThePromptOffsetToTheLastToken) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = tiny("llama_q4");
  auto& t = static_cast<const models::Transformer&>(*m);
  train::Batch b = batch();  // row 0: prompt 3 tokens, 12 real; row 1: no prompt, 8 real then padding
  auto [loss, ntoks] = train::batch_loss(t, b, {});
  auto [compat_loss, compat_ntoks] = train::batch_loss(t, b, {.pad_target = true});
  // By hand: the logits of tokens[:, :-1], each target position p counts when offset ≤ p < length.
  array logits = m->forward(mx::slice(b.tokens, {0, 0}, {2, 11}));
  array ce = train::cross_entropy(logits, mx::slice(b.tokens, {0, 1}, {2, 12}));
  mx::eval(ce);
  auto by_hand = [&](bool pad) {
    const int offsets[2] = {3, 0}, lengths[2] = {12, 8};
    double sum = 0;
    int n = 0;
    for (int r = 0; r < 2; ++r)
      for (int p = 1; p < 12; ++p)
        if (p >= offsets[r] && (pad ? p <= lengths[r] : p < lengths[r])) {
          sum += mx::slice(ce, {r, p - 1}, {r + 1, p}).item<float>();
          ++n;
        }
    return std::pair<double, int>{sum / n, n};
  };
  auto [want, n] = by_hand(false);
  EXPECT_EQ(ntoks.item<int>(), n);
  EXPECT_EQ(n, (12 - 3) + (8 - 1)) << "row 0 trains tokens 3..11, row 1 tokens 1..7";
  EXPECT_NEAR(loss.item<float>(), want, 1e-5);
  auto [want_compat, n_compat] = by_hand(true);
  EXPECT_EQ(compat_ntoks.item<int>(), n_compat);
  EXPECT_EQ(n_compat, n + 1) << "mlx-lm's mask adds the pad after row 1 (row 0 fills the batch)";
  EXPECT_NEAR(compat_loss.item<float>(), want_compat, 1e-5);
}

TEST(Gradients, HalfPrecisionAdapterEqualsTheComposedGraph) {
  // A bfloat16 projection with a float32 LoRA adapter (as on a GPU): the
  // derivative that recomputes x's float32 copy instead of keeping it gives
  // what autodiff of the composed product gives.
  (void)cpu_context();
  const std::string name = "proj";
  const array w = mx::astype(rnd({48, 64}, 0.1f, 1), mx::bfloat16), x = mx::astype(rnd({2, 3, 64}, 1.0f, 2), mx::bfloat16);
  const array a = rnd({64, 4}, 0.3f, 3), b = rnd({4, 48}, 0.2f, 4), probe = rnd({2, 3, 48}, 1.0f, 5);
  Weights base;
  base.set(name + ".weight", w);
  auto ours = [&](const std::vector<array>& p) {
    Weights ws = base;
    ws.set(name + ".lora_a", p[1]);
    ws.set(name + ".lora_b", p[2]);
    ws.set_adapter(name, {.kind = "lora", .scale = 2.0f});
    const array y = nn::Linear::view(ws, name)(p[0]);
    return std::vector<array>{mx::sum(mx::multiply(mx::astype(y, mx::float32), probe))};
  };
  auto composed = [&](const std::vector<array>& p) {
    const array z = mx::matmul(mx::matmul(mx::astype(p[0], mx::float32), p[1]), p[2]);
    const array y = mx::add(mx::matmul(p[0], mx::transpose(w)), mx::astype(mx::multiply(z, array(2.0f)), mx::bfloat16));
    return std::vector<array>{mx::sum(mx::multiply(mx::astype(y, mx::float32), probe))};
  };
  auto [v1, g1] = mx::value_and_grad(ours, std::vector<int>{0, 1, 2})({x, a, b});
  auto [v2, g2] = mx::value_and_grad(composed, std::vector<int>{0, 1, 2})({x, a, b});
  EXPECT_EQ(v1[0].item<float>(), v2[0].item<float>());
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(g1[i].dtype(), g2[i].dtype()) << i;
    const float scale = max_abs(mx::astype(g2[i], mx::float32));
    const float d = max_abs(mx::subtract(mx::astype(g1[i], mx::float32), mx::astype(g2[i], mx::float32)));
    EXPECT_LE(d, (i == 0 ? 8e-3f : 1e-6f) * scale) << "gradient " << i;
  }
}

std::unique_ptr<Model> tiny_moe(const std::string& name) {
  io::ModelDir d = io::read_model_dir(tiny_checkpoint_dir(name));
  return make_model(d.config, std::move(d.weights), mx::float32);
}

TEST(LoraTargets, MixtureOfExpertsInMlxLmModuleOrder) {
  // Qwen3-MoE's tiny checkpoint: blocks 0 and 2 route experts, block 1 is dense
  // (mlp_only_layers). mlx-lm's default keys adapt every linear module of a
  // block, in named_modules() order: SwitchGLU's down, up, gate, then the
  // router, then attention's o, v, k, q; a dense MLP's up, down, gate.
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir("qwen3_moe_q4") / "config.json");
  (void)cpu_context();
  auto m = tiny_moe("qwen3_moe_q4");
  const auto& t = static_cast<const models::Transformer&>(*m);
  std::vector<std::string> want;
  for (int l = 0; l < 3; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const std::vector<std::string> mlp =
        l == 1 ? std::vector<std::string>{"mlp.up_proj", "mlp.down_proj", "mlp.gate_proj"}
               : std::vector<std::string>{"mlp.switch_mlp.down_proj", "mlp.switch_mlp.up_proj",
                                          "mlp.switch_mlp.gate_proj", "mlp.gate"};
    for (const auto& n : mlp) want.push_back(p + n);
    for (const char* n : {"self_attn.o_proj", "self_attn.v_proj", "self_attn.k_proj", "self_attn.q_proj"})
      want.push_back(p + n);
  }
  EXPECT_EQ(train::lora_targets(t, -1, {}), want);
  // A key that only expert layers have selects them alone.
  EXPECT_EQ(train::lora_targets(t, 2, {"mlp.switch_mlp.up_proj"}),
            std::vector<std::string>{"model.layers.2.mlp.switch_mlp.up_proj"});
  // Stacked experts get mlx-lm's LoRASwitchLinear shapes; DoRA cannot adapt them.
  auto names = train::attach_lora(*m, {"model.layers.0.mlp.switch_mlp.down_proj"}, {.rank = 4}, "lora", 0);
  EXPECT_EQ(m->weights().at(names[0]).shape(), (mx::Shape{8, 4, 64}));   // (E, r, in)
  EXPECT_EQ(m->weights().at(names[1]).shape(), (mx::Shape{8, 64, 4}));   // (E, out, r)
  try {
    (void)train::attach_lora(*m, {"model.layers.2.mlp.switch_mlp.up_proj"}, {.rank = 4}, "dora", 0);
    ADD_FAILURE() << "DoRA was attached to stacked experts";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("stacked experts"), std::string::npos) << e.what();
  }
}

TEST(Gradients, ExpertLoraMatchesFiniteDifferences) {
  // LoRA on every target of the tiny 4-bit Qwen3-MoE, B non-zero; the
  // directions move the stacked experts' adapters (gathered per token) of the
  // last expert layer only, so no routing changes: a router's top-k is a step
  // function, and a finite difference across a flipped choice is meaningless.
  // (The routers' adapters are checked by the parity run against mlx_lm.lora.)
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir("qwen3_moe_q4") / "config.json");
  (void)cpu_context();
  auto m = tiny_moe("qwen3_moe_q4");
  m->set_training(true);
  const auto& t = static_cast<const models::Transformer&>(*m);
  const auto targets = train::lora_targets(t, -1, {});
  train::attach_lora(*m, targets, {.rank = 4, .scale = 2.0f}, "lora", 0);
  Loss loss{t, {}};
  std::vector<int> which;
  uint64_t seed = 300;
  for (const std::string& name : targets) {
    const array& b = m->weights().at(name + ".lora_b");
    m->weights().set(name + ".lora_b", rnd(b.shape(), 0.05f, seed++));
    const bool last_moe = name.rfind("model.layers.2.mlp.switch_mlp.", 0) == 0;
    for (const char* leaf : {".lora_a", ".lora_b"}) {
      if (last_moe) which.push_back(static_cast<int>(loss.names.size()));
      loss.names.push_back(name + leaf);
    }
  }
  ASSERT_EQ(which.size(), 6u);  // down, up, gate × (A, B)
  check_directions(loss, which, "expert LoRA");
}

}  // namespace
}  // namespace lmlab::test
