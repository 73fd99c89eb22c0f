// RoPE variants, matching mlx-lm's rope_utils.initialize_rope: default, linear
// (scale 1/factor), llama3 (long-wavelength frequencies stretched by `factor`
// with a smooth band between), yarn (ramp-mixed frequencies and mscale), and
// the per-pair frequency factors GGUF files carry as `rope_freqs.weight`.
#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/nn.h"

namespace mx = mlx::core;
using json = nlohmann::json;

namespace lmlab::nn {

namespace {

std::vector<double> base_periods(double base, int dims) {
  std::vector<double> f;
  for (int i = 0; i < dims; i += 2) f.push_back(std::pow(base, static_cast<double>(i) / dims));
  return f;
}

array to_array(const std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  return array(f.begin(), {static_cast<int>(f.size())}, mx::float32);
}

std::vector<double> llama3_periods(const json& rs, double base, int dims) {
  double factor = rs.value("factor", 8.0);
  double low = rs.value("low_freq_factor", 1.0);
  double high = rs.value("high_freq_factor", 4.0);
  double old_ctx = rs.value("original_max_position_embeddings", 8192.0);
  double low_wl = old_ctx / low, high_wl = old_ctx / high;
  auto f = base_periods(base, dims);
  for (auto& p : f) {
    double wl = 2 * std::numbers::pi * p;
    if (wl > low_wl) {
      p *= factor;
    } else if (wl > high_wl) {
      double smooth = (old_ctx / wl - low) / (high - low);
      p = p / ((1 - smooth) / factor + smooth);
    }
  }
  return f;
}

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

std::vector<double> yarn_periods(const json& rs, double base, int dims, float& mscale_out) {
  double factor = rs.value("factor", 1.0);
  double orig = rs.value("original_max_position_embeddings", 4096.0);
  double beta_fast = rs.value("beta_fast", 32.0), beta_slow = rs.value("beta_slow", 1.0);
  double mscale = rs.value("mscale", 1.0), mscale_all = rs.value("mscale_all_dim", 0.0);
  auto dim_for = [&](double rot) {
    return dims * std::log(orig / (rot * 2 * std::numbers::pi)) / (2 * std::log(base));
  };
  double lo = std::max(std::floor(dim_for(beta_fast)), 0.0);
  double hi = std::min(std::ceil(dim_for(beta_slow)), static_cast<double>(dims - 1));
  if (lo == hi) hi += 0.001;
  auto f = base_periods(base, dims);
  for (size_t i = 0; i < f.size(); ++i) {
    double ramp = std::clamp((static_cast<double>(i) - lo) / (hi - lo), 0.0, 1.0);
    double mask = 1 - ramp;  // 1 keeps extrapolated (original) frequency
    double inv_extra = 1 / f[i], inv_inter = 1 / (factor * f[i]);
    f[i] = 1 / (inv_inter * (1 - mask) + inv_extra * mask);
  }
  mscale_out = static_cast<float>(yarn_get_mscale(factor, mscale) /
                                  yarn_get_mscale(factor, mscale_all));
  return f;
}

}  // namespace

RoPE make_rope(const json& c, int head_dim) {
  RoPE r;
  r.dims = c.value("lmlab_rope_dims", head_dim);
  if (c.contains("partial_rotary_factor"))
    r.dims = static_cast<int>(head_dim * c["partial_rotary_factor"].get<double>());
  r.base = c.value("rope_theta", 10000.0f);
  r.traditional = c.value("rope_traditional", false);
  if (c.contains("lmlab_rope_freq_factors")) {
    auto factors = c["lmlab_rope_freq_factors"].get<std::vector<double>>();
    auto f = base_periods(r.base, r.dims);
    if (factors.size() != f.size())
      throw std::invalid_argument(fmt::format(
          "[rope] rope_freqs has {} factors, expected {}", factors.size(), f.size()));
    for (size_t i = 0; i < f.size(); ++i) f[i] *= factors[i];
    r.freqs = to_array(f);
  }
  if (!c.contains("rope_scaling") || c["rope_scaling"].is_null()) return r;
  const json& rs = c["rope_scaling"];
  std::string type = rs.value("type", rs.value("rope_type", std::string("default")));
  if (type == "default" || type == "mrope") return r;
  if (type == "linear") {
    r.scale = 1.0f / rs.value("factor", 1.0f);
  } else if (type == "llama3") {
    r.freqs = to_array(llama3_periods(rs, r.base, r.dims));
  } else if (type == "yarn") {
    r.freqs = to_array(yarn_periods(rs, r.base, r.dims, r.mscale));
  } else {
    throw std::invalid_argument(fmt::format("[rope] unsupported rope_scaling type '{}'", type));
  }
  return r;
}

array RoPE::operator()(const array& x, int offset) const {
  array y = x;
  if (mscale != 1.0f) y = mx::multiply(y, array(mscale, x.dtype()));
  if (freqs)
    return mx::fast::rope(y, dims, traditional, std::nullopt, scale, offset, *freqs);
  return mx::fast::rope(y, dims, traditional, base, scale, offset);
}

}  // namespace lmlab::nn
