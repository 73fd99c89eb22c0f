// attention: the softmax probabilities of chosen layers and heads captured
// from a real forward pass (nn::attention's explicit path), with the
// grouped-query mapping of query heads to key/value heads, per-row entropy,
// and an SVG heatmap writer.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/model.h"
#include "lmlab/report.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

namespace {

std::vector<int> all_or(const std::vector<int>& chosen, int n, const char* what) {
  std::vector<int> out = chosen;
  if (out.empty())
    for (int i = 0; i < n; ++i) out.push_back(i);
  for (int i : out)
    if (i < 0 || i >= n)
      throw std::invalid_argument(fmt::format("[attention] {} {} out of range [0, {})", what, i, n));
  return out;
}

std::vector<int> shape_of(const mx::array& a) { return {a.shape().begin(), a.shape().end()}; }

float row_entropy_bits(const float* p, int n) {
  double h = 0;
  for (int i = 0; i < n; ++i)
    if (p[i] > 0) h -= p[i] * std::log2(static_cast<double>(p[i]));
  return static_cast<float>(h);
}

}  // namespace

size_t attention_capture_bytes(const Model& m, size_t tokens, size_t layers, size_t heads) {
  const ModelConfig& c = m.config();
  const double L = static_cast<double>(tokens), H = c.num_attention_heads;
  const double maps = L * L * 4;  // one float32 (L, L) map
  // Every hooked layer keeps its (H, L, L) probabilities, the layer being
  // computed holds its scores too, the chosen maps are copied out, and the
  // forward pass ends with (L, V) logits.
  const double bytes = maps * (layers * H + H + layers * heads) + L * c.vocab_size * 4.0;
  return bytes >= 1.8e19 ? SIZE_MAX : static_cast<size_t>(bytes);
}

AttentionCapture capture_attention(const Model& m, const std::vector<int>& ids,
                                   const std::vector<int>& layers, const std::vector<int>& heads) {
  const ModelConfig& c = m.config();
  std::vector<int> ls = all_or(layers, c.num_hidden_layers, "layer");
  std::vector<int> hs = all_or(heads, c.num_attention_heads, "head");
  mx::array tokens = ids_array(m, ids, "attention");
  const size_t need = attention_capture_bytes(m, ids.size(), ls.size(), hs.size());
  if (const size_t have = available_memory(); have > 0 && need > have / 2)
    throw std::invalid_argument(fmt::format(
        "[attention] {} layer{} x {} heads of a {}-token prompt need about {} (maps grow with the square "
        "of the prompt) but {} is available; choose fewer layers or heads, or a shorter prompt",
        ls.size(), ls.size() == 1 ? "" : "s", hs.size(), ids.size(), gigabytes(double(need)),
        gigabytes(double(have))));
  nn::Hooks hooks;
  hooks.attention = hooks.qkv = true;
  hooks.layers = ls;
  mx::array logits = m.forward(tokens, nullptr, &hooks);
  AttentionCapture out{.ids = ids};
  const std::string first = fmt::format("layers.{}.self_attn", ls[0]);
  out.q_shape = shape_of(hooks.captured.at(first + ".q"));
  out.k_shape = shape_of(hooks.captured.at(first + ".k"));
  out.v_shape = shape_of(hooks.captured.at(first + ".v"));
  const int group = c.num_attention_heads / c.num_key_value_heads;
  for (int l : ls) {
    const mx::array& probs = hooks.captured.at(fmt::format("layers.{}.self_attn.probs", l));
    for (int h : hs) {
      AttentionMap map{.layer = l, .head = h, .kv_head = h / group,
                       .rows = probs.shape(2), .cols = probs.shape(3)};
      map.probs = to_floats(mx::take(mx::take(probs, 0, 0), h, 0));
      double sum = 0;
      for (int r = 0; r < map.rows; ++r) {
        map.row_entropy.push_back(row_entropy_bits(map.probs.data() + r * map.cols, map.cols));
        sum += map.row_entropy.back();
      }
      map.mean_entropy = static_cast<float>(sum / std::max(map.rows, 1));
      out.maps.push_back(std::move(map));
    }
  }
  return out;
}

namespace {

using report::xml_escape;

// White (0) to dark blue (1), with a square-root ramp so small weights stay visible.
std::string color(float p) {
  float t = std::sqrt(std::clamp(p, 0.0f, 1.0f));
  auto mix = [&](int a, int b) { return static_cast<int>(a + (b - a) * t); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(255, 8), mix(255, 48), mix(255, 107));
}

}  // namespace

std::string attention_svg(const AttentionMap& map, const std::vector<std::string>& labels,
                          const std::string& title) {
  const int cell = map.rows > 64 ? 6 : 16, margin = map.rows > 64 ? 20 : 110, top = 40;
  const int w = margin + map.cols * cell + 20, h = top + map.rows * cell + margin;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"monospace\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"20\" font-size=\"14\">{}</text>\n",
      w, h, margin, xml_escape(title));
  for (int r = 0; r < map.rows; ++r)
    for (int c = 0; c < map.cols; ++c) {
      float p = map.probs[r * map.cols + c];
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{:.4f}</title></rect>\n",
                       margin + c * cell, top + r * cell, cell, cell, color(p), p);
    }
  if (cell >= 16 && labels.size() >= static_cast<size_t>(std::max(map.rows, map.cols))) {
    for (int r = 0; r < map.rows; ++r)
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", margin - 4,
                       top + r * cell + 12, xml_escape(labels[labels.size() - map.rows + r]));
    for (int c = 0; c < map.cols; ++c) {
      int x = margin + c * cell + 11, y = top + map.rows * cell + 4;
      s += fmt::format("<text x=\"{}\" y=\"{}\" transform=\"rotate(60 {} {})\">{}</text>\n", x, y, x, y,
                       xml_escape(labels[c]));
    }
  }
  return s + "</svg>\n";
}

}  // namespace lmlab::analysis
