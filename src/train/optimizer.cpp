// Adam, AdamW and SGD after mlx/optimizers/optimizers.py. Scalars become
// float32 arrays as mlx's weak Python scalars do; constants such as 1 - beta
// are computed in double first, as Python does.
#include "train/optimizer.h"

#include <cmath>

#include <fmt/format.h>
#include <mlx/mlx.h>

namespace mx = mlx::core;

namespace lmlab::train {

namespace {

array scalar(double v, mx::Dtype t) { return array(static_cast<float>(v), t); }

double option(const nlohmann::json& o, const char* key, double fallback) {
  if (!o.contains(key)) return fallback;
  if (!o[key].is_number()) throw std::invalid_argument(fmt::format("[optimizer] {}: expected a number", key));
  return o[key].get<double>();
}

bool flag(const nlohmann::json& o, const char* key, bool fallback) {
  if (!o.contains(key)) return fallback;
  if (!o[key].is_boolean()) throw std::invalid_argument(fmt::format("[optimizer] {}: expected true or false", key));
  return o[key].get<bool>();
}

class Adam : public Optimizer {
 public:
  Adam(Schedule lr, const nlohmann::json& o, bool decoupled_decay) : Optimizer(std::move(lr)) {
    if (o.contains("betas")) {
      if (!o["betas"].is_array() || o["betas"].size() != 2)
        throw std::invalid_argument("[optimizer] betas: expected two numbers");
      b1_ = o["betas"][0].get<double>(), b2_ = o["betas"][1].get<double>();
    }
    for (double b : {b1_, b2_})
      if (!(b >= 0.0 && b < 1.0)) throw std::invalid_argument(fmt::format("[optimizer] betas must be in [0, 1), got {}", b));
    eps_ = option(o, "eps", 1e-8);
    if (eps_ < 0) throw std::invalid_argument("[optimizer] eps must be ≥ 0");
    bias_correction_ = flag(o, "bias_correction", false);
    weight_decay_ = decoupled_decay ? option(o, "weight_decay", 0.01) : 0.0;
  }
  std::vector<std::string> slot_names() const override { return {"m", "v"}; }

 protected:
  void init(const array& p, std::vector<array>& s) override { s = {mx::zeros_like(p), mx::zeros_like(p)}; }

  array apply(const array& g, const array& param, std::vector<array>& s, const array& lr) override {
    const mx::Dtype t = g.dtype();
    array p = param;
    // AdamW: decay the weights first, then the Adam step on them.
    if (weight_decay_ != 0) p = mx::multiply(p, mx::subtract(scalar(1.0, t), mx::multiply(lr, scalar(weight_decay_, t))));
    array m = mx::add(mx::multiply(scalar(b1_, t), s[0]), mx::multiply(scalar(1.0 - b1_, t), g));
    array v = mx::add(mx::multiply(scalar(b2_, t), s[1]), mx::multiply(scalar(1.0 - b2_, t), mx::square(g)));
    s = {m, v};
    if (bias_correction_) {
      const double k = static_cast<double>(step_);
      array c1 = mx::divide(lr, scalar(1.0 - std::pow(b1_, k), t));
      array c2 = mx::rsqrt(scalar(1.0 - std::pow(b2_, k), t));
      array denom = mx::add(mx::multiply(mx::sqrt(v), c2), scalar(eps_, t));
      return mx::subtract(p, mx::divide(mx::multiply(c1, m), denom));
    }
    return mx::subtract(p, mx::divide(mx::multiply(lr, m), mx::add(mx::sqrt(v), scalar(eps_, t))));
  }

 private:
  double b1_ = 0.9, b2_ = 0.999, eps_ = 1e-8, weight_decay_ = 0;
  bool bias_correction_ = false;
};

class Sgd : public Optimizer {
 public:
  Sgd(Schedule lr, const nlohmann::json& o) : Optimizer(std::move(lr)) {
    momentum_ = option(o, "momentum", 0.0);
    weight_decay_ = option(o, "weight_decay", 0.0);
    dampening_ = option(o, "dampening", 0.0);
    nesterov_ = flag(o, "nesterov", false);
    if (nesterov_ && (momentum_ <= 0 || dampening_ != 0))
      throw std::invalid_argument("[optimizer] Nesterov momentum requires a momentum and zero dampening");
  }
  std::vector<std::string> slot_names() const override { return {"v"}; }

 protected:
  void init(const array& p, std::vector<array>& s) override { s = {mx::zeros_like(p)}; }

  array apply(const array& grad, const array& p, std::vector<array>& s, const array& lr) override {
    const mx::Dtype t = grad.dtype();
    array g = weight_decay_ != 0 ? mx::add(grad, mx::multiply(scalar(weight_decay_, t), p)) : grad;
    if (momentum_ <= 0) return mx::subtract(p, mx::multiply(lr, g));
    array v = mx::multiply(scalar(momentum_, t), s[0]);
    v = mx::add(v, dampening_ > 0 ? mx::multiply(scalar(1.0 - dampening_, t), g) : g);
    array update = nesterov_ ? mx::add(g, mx::multiply(scalar(momentum_, t), v)) : v;
    s = {v};
    return mx::subtract(p, mx::multiply(lr, update));
  }

 private:
  double momentum_ = 0, weight_decay_ = 0, dampening_ = 0;
  bool nesterov_ = false;
};

}  // namespace

std::unique_ptr<Optimizer> Optimizer::make(const std::string& name, const nlohmann::json& options, Schedule lr) {
  const nlohmann::json o = options.is_object() ? options : nlohmann::json::object();
  if (name == "adam") return std::make_unique<Adam>(std::move(lr), o, /*decoupled_decay=*/false);
  if (name == "adamw") return std::make_unique<Adam>(std::move(lr), o, /*decoupled_decay=*/true);
  if (name == "sgd") return std::make_unique<Sgd>(std::move(lr), o);
  throw std::invalid_argument(fmt::format("[optimizer] unknown optimizer '{}' (adam, adamw, sgd)", name));
}

std::vector<array> Optimizer::update(const std::vector<array>& params, const std::vector<array>& grads) {
  if (params.size() != grads.size())
    throw std::invalid_argument(fmt::format("[optimizer] {} parameters but {} gradients", params.size(), grads.size()));
  if (slots_.empty()) {
    slots_.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) init(params[i], slots_[i]);
  }
  lr_ = schedule_(step_);
  ++step_;
  std::vector<array> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    out.push_back(apply(grads[i], params[i], slots_[i], scalar(lr_, grads[i].dtype())));
  return out;
}

}  // namespace lmlab::train
