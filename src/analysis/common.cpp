// Helpers shared by the analysis sources (see internal.h).
#include <algorithm>
#include <sstream>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/io.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "nn/linear.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

std::string dtype_name(mx::Dtype d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

std::vector<float> to_floats(const mx::array& a) {
  mx::array f = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

mx::array ids_array(const Model& m, const std::vector<int>& ids, std::string_view where) {
  check_tokens(m, ids, where);
  return mx::array(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32);
}

mx::array forward_last(const Model& m, const std::vector<int>& ids, nn::Hooks* hooks, std::string_view where) {
  constexpr int kChunk = 512;  // the generator's default prefill step
  ids_array(m, ids, where);    // checks only
  const int n = static_cast<int>(ids.size());
  auto cache = m.make_cache();
  for (int i = 0; i < n - 1; i += kChunk) {
    const int end = std::min(n - 1, i + kChunk);
    m.forward(mx::array(ids.begin() + i, {1, end - i}, mx::int32), cache.get());
    mx::eval(cache->state());
  }
  return m.forward(mx::array({ids.back()}, {1, 1}), cache.get(), hooks);
}

std::string quant_prefix(const Weights& w, const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix))
    return "";
  std::string p = name.substr(0, name.size() - suffix.size());
  return w.quant(p) ? p : "";
}

mx::array logical_tensor(const Weights& w, const std::string& name) {
  const mx::array& a = w.at(name);
  std::string p = quant_prefix(w, name);
  if (p.empty()) return mx::astype(a, mx::float32);
  const QuantSpec* q = w.quant(p);
  if (io::is_ggml_mode(q->mode)) return io::ggml_dequantize(a, io::ggml_mode_type(q->mode));
  std::optional<mx::array> biases;
  if (auto* b = w.find(p + ".biases")) biases = *b;
  return nn::dequantize_exact(a, w.at(p + ".scales"), biases, q->group_size, q->bits, q->mode, mx::float32);
}

}  // namespace lmlab::analysis
