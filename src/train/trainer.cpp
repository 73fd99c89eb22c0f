// The training loop after mlx_lm/tuner/trainer.py (train, evaluate) and
// mlx_lm/lora.py (train_model): the same order of batch draws, validations,
// reports and saves, so the same config and seed give mlx-lm's run.
#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/context.h"
#include "lmlab/io.h"
#include "lmlab/model.h"
#include "lmlab/train.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/lora.h"
#include "train/loss.h"
#include "train/memory_plan.h"
#include "train/numpy_random.h"
#include "train/optimizer.h"
#include "train/reducer.h"
#include "train/run_log.h"

namespace fs = std::filesystem;
namespace mx = mlx::core;
using mx::array;
using Clock = std::chrono::steady_clock;

namespace lmlab::train {

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// FNV-1a over every split's tokens and offsets: resuming on other data is refused.
uint64_t data_fingerprint(const Dataset& d) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  for (const Split* s : {&d.train, &d.valid, &d.test}) {
    mix(s->examples.size());
    for (const Example& e : s->examples) {
      mix(e.offset);
      for (int t : e.tokens) mix(static_cast<uint32_t>(t));
    }
  }
  return h;
}

// Settings a resumed run must share with the saved one.
nlohmann::json resume_key(const TrainConfig& c) {
  nlohmann::json j = c.to_json();
  for (const char* k : {"iters", "epochs", "steps_per_report", "steps_per_eval", "save_every", "test", "test_batches",
                        "val_batches", "memory_limit_gb", "adapter_path", "resume_adapter_file", "train", "model", "data"})
    j.erase(k);
  return j;
}

}  // namespace

struct Trainer::State {
  LoadedModel& m;
  TrainConfig cfg;
  const models::Transformer& t;
  Dataset data;
  TrainPlan plan;
  fs::path dir;
  std::vector<std::string> names;  // trainable tensors
  std::unique_ptr<Optimizer> opt;
  NumpyRandom rng;
  std::vector<std::vector<int>> train_batches, valid_batches, test_batches;
  RunState run;  // the position of the run (what a checkpoint saves)
  std::optional<std::vector<array>> grad_accum;
  RunLog log;
  std::shared_ptr<GradientReducer> reducer;  // null: one process

  bool writes() const { return !reducer || reducer->rank() == 0; }  // rank 0 alone writes files
  std::vector<int> share(const std::vector<int>& batch) const {
    return reducer ? rank_share(batch, reducer->rank(), reducer->size()) : batch;
  }
  void set_reducer(std::shared_ptr<GradientReducer> r);

  State(LoadedModel& model, TrainConfig c);
  std::vector<array> params() const;
  void set_params(const std::vector<array>& p);
  const std::vector<int>& next_batch();
  double evaluate(const Split& s, const std::vector<std::vector<int>>& batches, int num_batches);
  std::pair<float, int64_t> step(const std::vector<int>& batch, int it);
  void save(int it, const TrainCallbacks& cb);
  void restore(int it);
  void plan_run();
  MemoryInputs memory_inputs() const;
};

namespace {

const models::Transformer& transformer_of(const LoadedModel& m) {
  auto* t = dynamic_cast<const models::Transformer*>(m.model.get());
  if (!t) throw Unsupported("[lora] this model is not a decoder-only transformer lmlab can fine-tune");
  return *t;
}

Dataset load_train_data(const LoadedModel& m, const TrainConfig& cfg) {
  if (cfg.data.empty()) throw std::invalid_argument("[lora] give --data DIR_OR_FILE (or 'data' in the config)");
  Dataset d = load_dataset(cfg.data_options(), m.tokenizer, m.chat_template ? &*m.chat_template : nullptr,
                           /*strict=*/true);
  if (cfg.train && d.train.examples.empty())
    throw std::invalid_argument(fmt::format("[lora] {}: no training records (train.jsonl)", cfg.data));
  if (cfg.test && d.test.examples.empty())
    throw std::invalid_argument(fmt::format("[lora] {}: no test records (test.jsonl) for --test", cfg.data));
  return d;
}

}  // namespace

Trainer::State::State(LoadedModel& model, TrainConfig c)
    : m(model), cfg(std::move(c)), t(transformer_of(model)), data(load_train_data(model, cfg)),
      dir(cfg.adapter_path), rng(static_cast<uint32_t>(cfg.seed)), log(cfg.adapter_path) {
  const bool by_length = !cfg.mlx_lm_compat;
  if (cfg.train) train_batches = batch_indices(data.train.examples, cfg.batch_size, by_length);
  // --val-batches 0: no validation at all (mlx-lm would print a NaN loss).
  if (!data.valid.examples.empty() && cfg.train && cfg.val_batches != 0)
    valid_batches = batch_indices(data.valid.examples, cfg.batch_size, by_length);
  if (cfg.test) test_batches = batch_indices(data.test.examples, cfg.batch_size, by_length);
  if (cfg.train) {
    if (cfg.fine_tune_type == "full") {
      names = unfreeze_layers(*m.model, t, cfg.num_layers);
    } else {
      auto targets = lora_targets(t, cfg.num_layers, cfg.lora_parameters.keys);
      names = attach_lora(*m.model, targets, cfg.lora_parameters, cfg.fine_tune_type, cfg.seed);
    }
    if (!cfg.resume_adapter_file.empty()) {
      // mlx-lm's resume: the weights only (fresh optimizer and schedule).
      io::AdapterFile a = io::read_adapter_dir(fs::path(cfg.resume_adapter_file).parent_path(), cfg.resume_adapter_file);
      for (const std::string& n : names)
        if (auto it = a.tensors.find(n); it != a.tensors.end()) m.model->weights().set(n, it->second);
    }
    mx::eval(params());
  }
  plan_run();
  run.data_fingerprint = data_fingerprint(data);
  run.config = resume_key(cfg);
}

std::vector<array> Trainer::State::params() const {
  std::vector<array> p;
  for (const auto& n : names) p.push_back(m.model->weights().at(n));
  return p;
}

void Trainer::State::set_params(const std::vector<array>& p) {
  for (size_t i = 0; i < names.size(); ++i) m.model->weights().set(names[i], p[i]);
}

void Trainer::State::plan_run() {
  TrainPlan& p = plan;
  p.records = static_cast<int>(data.train.examples.size());
  p.batches_per_epoch = static_cast<int>(train_batches.size());
  p.dropped_records = p.records - p.batches_per_epoch * cfg.batch_size;
  p.iters = cfg.iters;
  if (cfg.epochs > 0) {
    p.iters = std::max(1, static_cast<int>(std::ceil(cfg.epochs * p.batches_per_epoch)));
    // Whole optimizer updates only.
    const int k = cfg.grad_accumulation_steps;
    p.iters = (p.iters + k - 1) / k * k;
  }
  p.epochs = p.batches_per_epoch ? double(p.iters) / p.batches_per_epoch : 0;
  p.updates = p.iters / cfg.grad_accumulation_steps;
  for (const Example& e : data.train.examples) p.truncated += static_cast<int>(e.tokens.size()) > cfg.max_seq_length;
  for (const auto& n : names) p.trainable_params += m.model->weights().at(n).size();
  p.total_params = parameter_count(*m.model);
  opt = Optimizer::make(cfg.optimizer, cfg.optimizer_config.value(cfg.optimizer, nlohmann::json::object()),
                        build_schedule(cfg, p.updates));
  p.memory = plan_memory(memory_inputs(), cfg.memory_limit_gb);
}

MemoryInputs Trainer::State::memory_inputs() const {
  const ModelConfig& c = m.model->config();
  MemoryInputs in;
  const Weights& w = m.model->weights();
  int64_t trainable_bytes = 0;
  for (const auto& n : names) trainable_bytes += w.at(n).nbytes();
  in.weight_bytes = static_cast<int64_t>(w.nbytes()) - trainable_bytes;
  in.trainable_elements = plan.trainable_params;
  in.optimizer_slots = static_cast<int>(opt->slot_names().size());
  if (cfg.optimizer == "sgd" && cfg.optimizer_config.value("sgd", nlohmann::json::object()).value("momentum", 0.0) <= 0)
    in.optimizer_slots = 0;
  in.accumulate = cfg.grad_accumulation_steps > 1;
  in.layers = c.num_hidden_layers;
  in.trained_from = cfg.num_layers < 0 ? 0 : std::max(0, c.num_hidden_layers - cfg.num_layers);
  in.hidden = c.hidden_size;
  in.heads = c.num_attention_heads;
  in.kv_heads = c.num_key_value_heads;
  in.head_dim = c.head_dim;
  // A mixture-of-experts block keeps, per token, its top_k experts' gate, up and
  // activation (k·I_e each), the gathered input rows and the experts' outputs
  // (k·D each) and the router's logits and probabilities (2E): counted as an
  // MLP of that width, the widest trained block's (at least the last block's).
  in.intermediate = 0;
  for (int l = std::min(in.trained_from, c.num_hidden_layers - 1); l < c.num_hidden_layers; ++l) {
    const nn::BlockSpec& b = t.spec().blocks[l].spec();
    const double k = b.moe.top_k, D = c.hidden_size;
    const int width = b.mlp == nn::MlpKind::moe
                          ? static_cast<int>(std::ceil(k * b.moe.intermediate + (2 * k * D + 2.0 * b.moe.experts) / 3))
                          : c.intermediate_size;
    in.intermediate = std::max(in.intermediate, width);
  }
  in.vocab = c.vocab_size;
  in.lora_rank = cfg.fine_tune_type == "full" ? 0 : cfg.lora_parameters.rank;
  in.batch = cfg.batch_size / (reducer ? reducer->size() : 1);  // each rank holds its share
  int longest = 0;
  for (const auto& b : train_batches) longest = std::max(longest, longest_example(data.train.examples, b));
  in.tokens = std::max(1, padded_width(longest, cfg.max_seq_length) - 1);
  in.checkpoint = cfg.grad_checkpoint;
  in.act_bytes = static_cast<int>(mx::size_of(m.model->dtype()));
  in.quantized_head = w.quant(c.tie_word_embeddings ? "model.embed_tokens" : "lm_head") != nullptr;
  // The targets batch_loss counts in the batch with the most.
  for (const auto& b : train_batches) {
    const int width = padded_width(longest_example(data.train.examples, b), cfg.max_seq_length);
    int rows = 0;
    for (int i : b) {
      const Example& e = data.train.examples[i];
      const int len = std::min(static_cast<int>(e.tokens.size()), cfg.max_seq_length);
      const auto [first, last] = counted_range(cfg.mask_prompt ? e.offset : 0, len, width, cfg.mlx_lm_compat);
      rows += std::max(0, last - first + 1);
    }
    in.logit_rows = std::max(in.logit_rows, rows);
  }
  if (reducer) in.logit_rows = (in.logit_rows + reducer->size() - 1) / reducer->size();
  in.attention_scores = !(mx::default_device() == mx::Device::cpu && m.model->dtype() == mx::float32);
  return in;
}

const std::vector<int>& Trainer::State::next_batch() {
  if (run.epoch_pos >= static_cast<int>(run.epoch_order.size())) {
    run.epoch_order = rng.permutation(static_cast<int>(train_batches.size()));
    run.epoch_pos = 0;
  }
  return train_batches[run.epoch_order[run.epoch_pos++]];
}

double Trainer::State::evaluate(const Split& s, const std::vector<std::vector<int>>& batches, int num_batches) {
  m.model->set_training(false);
  const int n = num_batches < 0 ? static_cast<int>(batches.size()) : std::min<int>(num_batches, batches.size());
  float all_losses = 0;
  int64_t ntokens = 0;
  if (n > 0) {
    std::vector<int> order = rng.permutation(static_cast<int>(batches.size()));
    for (int i = 0; i < n; ++i) {
      Batch b = make_batch(s.examples, share(batches[order[i]]), cfg.max_seq_length, cfg.mask_prompt);
      auto [loss, toks] = batch_loss(t, b, LossOptions{.pad_target = cfg.mlx_lm_compat});
      array loss_sum = mx::multiply(loss, mx::astype(toks, mx::float32));
      if (reducer) {
        std::vector<array> all = reducer->sum({loss_sum, toks});
        loss_sum = all[0], toks = all[1];
      }
      mx::eval(loss_sum, toks);
      all_losses += loss_sum.item<float>();  // float32, as mlx-lm accumulates
      ntokens += toks.item<int>();
    }
  }
  m.model->set_training(true);
  return ntokens ? static_cast<double>(all_losses / static_cast<float>(ntokens)) : NAN;
}

std::pair<float, int64_t> Trainer::State::step(const std::vector<int>& indices, int it) {
  Batch b = make_batch(data.train.examples, share(indices), cfg.max_seq_length, cfg.mask_prompt);
  // Dropout masks from (seed, iteration, rank): a resumed run draws the same ones.
  const uint64_t rank = reducer ? reducer->rank() : 0;
  const uint64_t step_seed = cfg.seed * 1000003ull + static_cast<uint64_t>(it) + rank * 0x9E3779B97F4A7C15ull;
  mx::random::seed(step_seed);
  LossOptions lo{.pad_target = cfg.mlx_lm_compat,
                 .checkpoint = cfg.grad_checkpoint,
                 .trainable = &names,
                 .dropout_seed = step_seed};
  std::vector<array> p = params();
  std::vector<int> argnums(p.size());
  for (size_t i = 0; i < p.size(); ++i) argnums[i] = static_cast<int>(i);
  auto loss_of = [&](const std::vector<array>& traced) {
    set_params(traced);
    auto [loss, toks] = batch_loss(t, b, lo);
    return std::vector<array>{loss, toks};
  };
  auto [values, grads] = mx::value_and_grad(loss_of, argnums)(p);
  set_params(p);
  if (reducer) {
    // This share's part of the combined batch's gradient; the ranks' parts
    // are summed right before the update.
    CombinedShare c = combine_share(values[0], values[1], std::move(grads), *reducer);
    values = {c.loss, c.tokens};
    grads = std::move(c.grads);
  }
  if (grad_accum)
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = mx::add(grads[i], (*grad_accum)[i]);
  const int k = cfg.grad_accumulation_steps;
  std::vector<array> to_eval{values[0], values[1]};
  if (it % k == 0) {
    if (reducer) grads = reducer->sum(std::move(grads));
    if (k > 1)
      for (auto& g : grads) g = mx::divide(g, array(static_cast<float>(k), g.dtype()));
    std::vector<array> updated = opt->update(p, grads);
    set_params(updated);
    grad_accum.reset();
    to_eval.insert(to_eval.end(), updated.begin(), updated.end());
    for (auto& slots : opt->slots()) to_eval.insert(to_eval.end(), slots.begin(), slots.end());
  } else {
    grad_accum = grads;
    to_eval.insert(to_eval.end(), grads.begin(), grads.end());
  }
  mx::eval(to_eval);
  return {values[0].item<float>(), values[1].item<int>()};
}

Trainer::Trainer(LoadedModel& m, TrainConfig cfg) : s_(std::make_unique<State>(m, std::move(cfg))) {
  if (s_->cfg.resume) {
    auto it = latest_checkpoint(s_->dir);
    if (!it)
      throw std::invalid_argument(fmt::format("[resume] {} holds no complete checkpoint to resume from", s_->dir.string()));
    s_->restore(*it);
  }
}
Trainer::~Trainer() = default;
void Trainer::set_reducer(std::shared_ptr<GradientReducer> r) { s_->set_reducer(std::move(r)); }

void Trainer::State::set_reducer(std::shared_ptr<GradientReducer> r) {
  if (r && cfg.batch_size % r->size() != 0)
    throw std::invalid_argument(fmt::format("[lora] --batch-size {} does not split over {} ranks (each rank takes an "
                                            "equal share of every batch); use a multiple of {}",
                                            cfg.batch_size, r->size(), r->size()));
  reducer = std::move(r);
  plan.memory = plan_memory(memory_inputs(), cfg.memory_limit_gb);
  // A restored accumulator is the ranks' sum (save() sums it): rank 0 carries it.
  if (grad_accum && !writes())
    for (auto& g : *grad_accum) g = mx::zeros_like(g);
}
const TrainPlan& Trainer::plan() const { return s_->plan; }
const TrainConfig& Trainer::config() const { return s_->cfg; }
const Dataset& Trainer::data() const { return s_->data; }

}  // namespace lmlab::train

namespace lmlab::train {

namespace {

std::unordered_map<std::string, array> named(const std::vector<std::string>& names, const std::vector<array>& a,
                                             const std::string& prefix = "") {
  std::unordered_map<std::string, array> out;
  for (size_t i = 0; i < names.size(); ++i) out.emplace(prefix + names[i], a[i]);
  return out;
}

TrainEvent event(TrainEvent::Kind kind, int it, int iters) {
  TrainEvent e;
  e.kind = kind;
  e.iteration = it;
  e.iters = iters;
  e.peak_memory_gb = static_cast<double>(Context::peak_memory()) / 1e9;
  return e;
}

}  // namespace

void Trainer::State::save(int it, const TrainCallbacks& cb) {
  // Mid-accumulation, every rank holds its own part: the checkpoint keeps their sum.
  std::optional<std::vector<array>> accum = grad_accum;
  if (accum && reducer) {
    accum = reducer->sum(*accum);
    mx::eval(*accum);  // a collective: every rank takes part
  }
  if (!writes()) return;
  auto weights = named(names, params());
  io::save_safetensors_atomic(dir / "adapters.safetensors", weights);
  const fs::path checkpoint = checkpoint_adapters(dir, it);
  io::save_safetensors_atomic(checkpoint, weights);
  RunState s = run;
  s.optimizer_step = opt->step();
  s.learning_rate = opt->learning_rate();
  s.rng = rng.state();
  const auto slot_names = opt->slot_names();
  auto& slots = opt->slots();
  for (size_t i = 0; i < slots.size(); ++i)
    for (size_t k = 0; k < slots[i].size(); ++k)
      s.arrays.emplace(fmt::format("optimizer.{}.{}", slot_names[k], names[i]), slots[i][k]);
  if (accum)
    for (auto& [n, g] : named(names, *accum, "grad_accum.")) s.arrays.emplace(n, g);
  // The state file lands after its adapters: a checkpoint counts once both exist.
  save_state(checkpoint_state(dir, it), s);
  if (cb.on_event) {
    TrainEvent e = event(TrainEvent::Kind::save, it, plan.iters);
    e.path = checkpoint.string();
    cb.on_event(e);
  }
}

void Trainer::State::restore(int it) {
  RunState s = load_state(checkpoint_state(dir, it));
  if (s.data_fingerprint != run.data_fingerprint)
    throw std::invalid_argument(fmt::format(
        "[resume] the data differs from the run saved in {} (records, tokens or masking changed)", dir.string()));
  if (s.config != run.config) {
    std::string diff;
    for (const auto& [k, v] : run.config.items())
      if (!s.config.contains(k) || s.config[k] != v)
        diff += fmt::format(" {}: saved {}, now {};", k, s.config.value(k, nlohmann::json()).dump(), v.dump());
    throw std::invalid_argument(fmt::format("[resume] the settings differ from the run saved in {}:{} use the saved "
                                            "ones or another --adapter-path",
                                            dir.string(), diff));
  }
  io::AdapterFile a = io::read_adapter_dir(dir, checkpoint_adapters(dir, it));
  std::vector<array> p;
  for (const auto& n : names) {
    auto found = a.tensors.find(n);
    if (found == a.tensors.end())
      throw std::runtime_error(fmt::format("[resume] {}: '{}' is missing", a.weights_file.string(), n));
    p.push_back(found->second);
  }
  set_params(p);
  const auto slot_names = opt->slot_names();
  auto& slots = opt->slots();
  slots.assign(names.size(), {});
  bool any_slot = false;
  for (size_t i = 0; i < names.size(); ++i)
    for (const auto& sn : slot_names)
      if (auto f = s.arrays.find(fmt::format("optimizer.{}.{}", sn, names[i])); f != s.arrays.end()) {
        slots[i].push_back(f->second);
        any_slot = true;
      }
  if (!any_slot) slots.clear();  // saved before the first update: initialised on the first one
  opt->restore(s.optimizer_step, s.learning_rate);
  grad_accum.reset();
  if (s.arrays.count("grad_accum." + names.front())) {
    grad_accum.emplace();
    for (const auto& n : names) grad_accum->push_back(s.arrays.at("grad_accum." + n));
  }
  rng.set_state(s.rng);
  s.arrays.clear();
  run = std::move(s);
  std::vector<array> all = params();
  for (auto& sl : slots) all.insert(all.end(), sl.begin(), sl.end());
  if (grad_accum) all.insert(all.end(), grad_accum->begin(), grad_accum->end());
  mx::eval(all);  // read now: adapters.safetensors is rewritten as the run goes on
  log.resume(it);
}

TrainResult Trainer::run(const TrainCallbacks& cb) {
  State& s = *s_;
  const TrainConfig& cfg = s.cfg;
  TrainResult result;
  result.predicted_peak_gb = s.plan.memory.total_gb;
  auto t_start = Clock::now();
  if (cfg.train && s.writes()) {
    fs::create_directories(s.dir);
    remove_stale_temps(s.dir);
    nlohmann::json config = cfg.to_json();
    config["iters"] = s.plan.iters;
    write_file_atomic(s.dir / "adapter_config.json", config.dump(4));
  }
  if (cfg.train) {
    s.m.model->set_training(true);
    const int iters = s.plan.iters;
    RunState& r = s.run;
    float last_train = NAN, last_val = NAN;
    for (int it = r.iteration + 1; it <= iters; ++it) {
      const std::vector<int>& batch = s.next_batch();
      auto tic = Clock::now();
      if (!s.valid_batches.empty() && (it == 1 || it % cfg.steps_per_eval == 0 || it == iters)) {
        last_val = static_cast<float>(s.evaluate(s.data.valid, s.valid_batches, cfg.val_batches));
        TrainEvent e = event(TrainEvent::Kind::val, it, iters);
        e.val_loss = last_val;
        e.seconds = seconds_since(tic);
        s.log.add({.iteration = it, .val_loss = last_val, .peak_memory_gb = e.peak_memory_gb});
        if (s.writes()) s.log.write();
        if (cb.on_event) cb.on_event(e);
        tic = Clock::now();
      }
      const int width = padded_width(longest_example(s.data.train.examples, batch), cfg.max_seq_length);
      if (width - 1 >= s.plan.memory.tokens) result.planned_batch_trained = true;
      auto [loss, toks] = s.step(batch, it);
      r.losses += loss;
      r.n_tokens += toks;
      r.steps += 1;
      const double dt = seconds_since(tic);
      r.train_time += dt;
      r.train_seconds += dt;
      r.iteration = it;
      const double eta = r.train_seconds / (it - 0.0) * (iters - it);
      if (cb.on_step) cb.on_step(it, iters, eta);
      if (it % cfg.steps_per_report == 0 || it == iters) {
        TrainEvent e = event(TrainEvent::Kind::report, it, iters);
        last_train = static_cast<float>(static_cast<double>(r.losses) / r.steps);
        e.train_loss = last_train;
        e.learning_rate = s.opt->learning_rate();
        e.it_per_sec = cfg.steps_per_report / r.train_time;
        e.tokens_per_sec = static_cast<double>(r.n_tokens) / r.train_time;
        r.trained_tokens += r.n_tokens;
        e.trained_tokens = r.trained_tokens;
        e.seconds = r.train_seconds;
        e.eta_seconds = eta;
        s.log.add({.iteration = it,
                   .train_loss = e.train_loss,
                   .learning_rate = e.learning_rate,
                   .it_per_sec = e.it_per_sec,
                   .tokens_per_sec = e.tokens_per_sec,
                   .trained_tokens = e.trained_tokens,
                   .peak_memory_gb = e.peak_memory_gb});
        if (s.writes()) s.log.write();
        if (cb.on_event) cb.on_event(e);
        r.losses = 0, r.n_tokens = 0, r.steps = 0, r.train_time = 0;
      }
      if (it % cfg.save_every == 0) s.save(it, cb);
    }
    if (s.writes()) io::save_safetensors_atomic(s.dir / "adapters.safetensors", named(s.names, s.params()));
    result.iterations = iters;
    result.final_train_loss = last_train;
    result.final_val_loss = last_val;
  }
  if (cfg.test) {
    auto tic = Clock::now();
    const double loss = s.evaluate(s.data.test, s.test_batches, cfg.test_batches);
    result.test_loss = loss;
    result.test_ppl = std::exp(loss);
    TrainEvent e = event(TrainEvent::Kind::test, result.iterations, s.plan.iters);
    e.test_loss = loss;
    e.test_ppl = *result.test_ppl;
    e.seconds = seconds_since(tic);
    if (cb.on_event) cb.on_event(e);
  }
  s.m.model->set_training(false);
  result.peak_memory_gb = static_cast<double>(Context::peak_memory()) / 1e9;
  result.seconds = seconds_since(t_start);
  return result;
}

}  // namespace lmlab::train

namespace lmlab::train {

std::vector<std::string> TrainPlan::lines() const {
  std::vector<std::string> out;
  out.push_back(fmt::format("{} training records, batch {} → {} batches per epoch{}", records,
                            batches_per_epoch ? records / batches_per_epoch : 0, batches_per_epoch,
                            dropped_records ? fmt::format(" ({} records in no batch: mlx-lm drops the last partial one)",
                                                          dropped_records)
                                            : ""));
  out.push_back(fmt::format("{} iterations = {:.2f} epochs, {} optimizer updates", iters, epochs, updates));
  if (truncated > 0)
    out.push_back(fmt::format("{} training records are longer than max_seq_length and will be truncated", truncated));
  out.push_back(fmt::format("Trainable parameters: {:.3f}% ({:.3f}M/{:.3f}M)",
                            total_params ? 100.0 * trainable_params / total_params : 0.0, trainable_params / 1e6,
                            total_params / 1e6));
  const MemoryPlan& m = memory;
  out.push_back(fmt::format("Memory plan: {:.3f} GB peak = weights {:.3f} + trained {:.3f} + optimizer {:.3f} + "
                            "activations {:.3f} + logits {:.3f} (longest batch {} × {} tokens)",
                            m.total_gb, m.weights_gb, m.trainable_gb, m.optimizer_gb, m.activations_gb, m.logits_gb,
                            m.batch, m.tokens));
  return out;
}

}  // namespace lmlab::train
