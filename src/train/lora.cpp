// LoRA/DoRA targets and initialisation after mlx_lm/tuner/utils.py
// (linear_to_lora_layers), tuner/lora.py (LoRALinear) and tuner/dora.py.
#include "train/lora.h"

#include <cmath>
#include <set>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/random.h>

#include "nn/linear.h"

namespace mx = mlx::core;

namespace lmlab::train {

namespace {

// A block's projections in mlx-lm's Module.named_modules() order, a stack walk
// that visits children in reverse of their definition: the MLP before
// self_attn; a dense MLP's up, down, gate; a mixture of experts' SwitchGLU
// (down, up, gate) and then its router; attention's o, v, k, q.
std::vector<const std::string*> walk_order(const nn::BlockNames& n, bool moe) {
  if (moe) return {&n.down, &n.up, &n.gate, &n.router, &n.o, &n.v, &n.k, &n.q};
  return {&n.up, &n.down, &n.gate, &n.o, &n.v, &n.k, &n.q};
}

bool is_moe(const nn::DecoderBlock& b) { return b.spec().mlp == nn::MlpKind::moe; }

std::string relative(const std::string& name, int layer) {
  const std::string prefix = fmt::format("model.layers.{}.", layer);
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

int first_adapted(const models::Transformer& t, int num_layers) {
  const int n = static_cast<int>(t.spec().blocks.size());
  if (num_layers > n)
    throw std::invalid_argument(fmt::format(
        "[lora] num_layers {} but the model has {} layers (-1 adapts all)", num_layers, n));
  return num_layers < 0 ? 0 : n - num_layers;
}

}  // namespace

std::vector<std::string> lora_targets(const models::Transformer& t, int num_layers,
                                      const std::vector<std::string>& keys) {
  const auto& blocks = t.spec().blocks;
  const int first = first_adapted(t, num_layers);
  std::set<std::string> wanted(keys.begin(), keys.end()), matched;
  std::vector<std::string> out;
  for (int l = first; l < static_cast<int>(blocks.size()); ++l)
    for (const std::string* name : walk_order(blocks[l].names(), is_moe(blocks[l]))) {
      const std::string rel = relative(*name, l);
      if (!keys.empty() && !wanted.count(rel)) continue;
      matched.insert(rel);
      out.push_back(*name);
    }
  // Full names outside the adapted blocks (mlx-lm's second pass over model.named_modules()).
  for (const std::string& k : keys) {
    if (matched.count(k) || std::find(out.begin(), out.end(), k) != out.end()) continue;
    const mx::array* w = t.weights().find(k + ".weight");
    if (!w) continue;
    if (k == t.spec().embed)
      throw Unsupported(fmt::format("[lora] adapting the embedding '{}' is not supported; adapt the projections "
                                    "or an untied lm_head",
                                    k));
    out.push_back(k);
    matched.insert(k);
  }
  std::set<std::string> block_keys;
  for (const auto& b : blocks)
    for (const std::string* name : walk_order(b.names(), is_moe(b))) block_keys.insert(relative(*name, b.layer()));
  for (const std::string& k : keys)
    if (!matched.count(k) && !std::count(out.begin(), out.end(), k))
      throw std::invalid_argument(fmt::format("[lora] lora_parameters.keys: '{}' matches no layer (in a block: {})", k,
                                              fmt::join(block_keys, ", ")));
  if (out.empty()) throw std::invalid_argument("[lora] no layer to adapt (num_layers 0?)");
  return out;
}

std::vector<std::string> attach_lora(Model& m, const std::vector<std::string>& targets, const LoraParameters& p,
                                     const std::string& kind, uint64_t seed) {
  if (kind != "lora" && kind != "dora")
    throw std::invalid_argument(fmt::format("[lora] unknown adapter kind '{}' (lora, dora)", kind));
  Weights& w = m.weights();
  mx::random::seed(seed);
  std::vector<std::string> trainable;
  for (const std::string& name : targets) {
    nn::Linear l = nn::Linear::view(w, name);
    const int in = l.in_features(), out = l.out_features();
    if (w.adapter(name)) throw std::invalid_argument(fmt::format("[lora] '{}' already has an adapter", name));
    const bool experts = l.stacked_experts();
    if (experts && kind == "dora")
      throw Unsupported(fmt::format("[lora] '{}' holds stacked experts, which DoRA cannot adapt (nor can mlx-lm); "
                                    "use fine_tune_type lora, or leave the experts out of lora_parameters.keys",
                                    name));
    // The layer mlx-lm builds and then replaces (nn.Linear, or SwitchLinear for
    // stacked experts) draws its weights once.
    (void)mx::random::KeySequence::default_().next();
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    const mx::array lo(static_cast<float>(-bound)), hi(static_cast<float>(bound));
    if (experts) {  // mlx-lm's LoRASwitchLinear: lora_a (E, r, in), lora_b (E, out, r)
      const int E = l.weight.shape(0);
      w.set(name + ".lora_a", mx::random::uniform(lo, hi, {E, p.rank, in}, mx::float32));
      w.set(name + ".lora_b", mx::zeros({E, out, p.rank}, mx::float32));
    } else {
      w.set(name + ".lora_a", mx::random::uniform(lo, hi, {in, p.rank}, mx::float32));
      w.set(name + ".lora_b", mx::zeros({p.rank, out}, mx::float32));
    }
    trainable.push_back(name + ".lora_a");
    trainable.push_back(name + ".lora_b");
    if (kind == "dora") {
      mx::array dense = l.dense_weight(mx::float32);
      w.set(name + ".m", mx::sqrt(mx::sum(mx::square(dense), -1)));
      trainable.push_back(name + ".m");
    }
    w.set_adapter(name, AdapterSpec{.kind = kind, .scale = p.scale, .dropout = p.dropout});
  }
  return trainable;
}

std::vector<std::string> unfreeze_layers(Model& m, const models::Transformer& t, int num_layers) {
  const auto& blocks = t.spec().blocks;
  const int first = first_adapted(t, num_layers);
  Weights& w = m.weights();
  std::vector<std::string> trainable;
  for (int l = first; l < static_cast<int>(blocks.size()); ++l) {
    const std::string prefix = fmt::format("model.layers.{}.", l);
    for (const std::string* name : blocks[l].names().projections()) {
      if (!w.quant(*name)) continue;
      mx::array dense = nn::Linear::view(w, *name).dense_weight(m.dtype());
      mx::eval(dense);
      w.erase(*name + ".scales");
      w.erase(*name + ".biases");
      w.clear_quant(*name);
      w.set(*name + ".weight", dense);
    }
    for (const auto& [name, a] : w.items())
      if (name.rfind(prefix, 0) == 0 && mx::issubdtype(a.dtype(), mx::floating)) trainable.push_back(name);
  }
  return trainable;
}

}  // namespace lmlab::train
