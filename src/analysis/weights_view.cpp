// weights: one tensor seen at every level — for quantized modules the packed
// uint32 words, the n-bit fields in the order MLX's affine kernels read them
// (low bits first), the group's scale and bias and the dequantized values —
// plus whole-tensor statistics and a histogram.
#include <fnmatch.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/ggml.h"
#include "lmlab/model.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

std::vector<std::string> match_tensors(const Model& m, const std::string& pattern) {
  const Weights& w = m.weights();
  if (w.contains(pattern)) return {pattern};
  if (w.contains(pattern + ".weight")) return {pattern + ".weight"};
  std::vector<std::string> out;
  for (const auto& [name, a] : w.items())
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) out.push_back(name);
  // A tied model has no head of its own: the logits come from the embedding.
  if (out.empty() && m.config().tie_word_embeddings && pattern.starts_with("lm_head"))
    throw std::invalid_argument(fmt::format(
        "[weights] no tensor matches '{}': this model ties its output head to its input embedding "
        "(tie_word_embeddings), so the head is 'model.embed_tokens.weight' (editing it changes both)",
        pattern));
  if (out.empty())
    throw std::invalid_argument(fmt::format(
        "[weights] no tensor matches '{}' (try 'lmlab inspect' for the names, or a glob like "
        "'model.layers.0.*')",
        pattern));
  return out;
}

std::vector<int> unpack_fields(const std::vector<uint32_t>& words, int bits, int count) {
  if (bits < 1 || bits > 8) throw std::invalid_argument(fmt::format("[weights] bad bits {}", bits));
  if (static_cast<int64_t>(count) * bits > static_cast<int64_t>(words.size()) * 32)
    throw std::invalid_argument("[weights] more fields asked than the words hold");
  // Field i sits at bit i*bits of the little-endian bit stream of the row.
  std::vector<int> out(count);
  const uint32_t mask = (1u << bits) - 1;
  for (int i = 0; i < count; ++i) {
    int64_t bit = static_cast<int64_t>(i) * bits;
    uint64_t lo = words[bit / 32];
    uint64_t hi = bit / 32 + 1 < static_cast<int64_t>(words.size()) ? words[bit / 32 + 1] : 0;
    out[i] = static_cast<int>(((lo | (hi << 32)) >> (bit % 32)) & mask);
  }
  return out;
}

namespace {

Stats stats_of(const mx::array& x) {
  mx::array f = mx::astype(x, mx::float32);
  std::vector<mx::array> parts = {mx::min(f), mx::max(f), mx::mean(f), mx::std(f),
                                  mx::mean(mx::abs(f)), mx::sum(mx::equal(f, mx::array(0.0f)))};
  mx::eval(parts);
  return Stats{.min = parts[0].item<float>(),
               .max = parts[1].item<float>(),
               .mean = parts[2].item<float>(),
               .std = parts[3].item<float>(),
               .abs_mean = parts[4].item<float>(),
               .count = static_cast<int64_t>(f.size()),
               .zeros = static_cast<int64_t>(mx::astype(parts[5], mx::int64).item<int64_t>())};
}

Histogram histogram_of(const mx::array& x, const Stats& s, int bins) {
  Histogram h{.lo = s.min, .hi = s.max, .counts = std::vector<int64_t>(std::max(bins, 1), 0)};
  std::vector<float> v = to_floats(mx::flatten(x));
  const float width = (h.hi - h.lo) / h.counts.size();
  for (float f : v) {
    int b = width > 0 ? static_cast<int>((f - h.lo) / width) : 0;
    h.counts[std::clamp(b, 0, static_cast<int>(h.counts.size()) - 1)]++;
  }
  return h;
}

// Stacked experts (E, rows, cols) are viewed as E·rows rows: expert e's row r
// is row e·rows + r.
mx::array as_rows(const mx::array& a) {
  return a.ndim() == 3 ? mx::reshape(a, {a.shape(0) * a.shape(1), a.shape(2)}) : a;
}

std::vector<uint32_t> row_words(const mx::array& packed, int row) {
  mx::array r = mx::contiguous(packed.ndim() == 1 ? packed : mx::take(as_rows(packed), row, 0));
  mx::eval(r);
  return std::vector<uint32_t>(r.data<uint32_t>(), r.data<uint32_t>() + r.size());
}

void view_groups(const Weights& w, const std::string& prefix, const QuantSpec& q, TensorView& v) {
  std::vector<uint32_t> words = row_words(w.at(prefix + ".weight"), v.row);
  std::vector<float> scales = to_floats(mx::take(as_rows(w.at(prefix + ".scales")), v.row, 0));
  std::vector<float> biases;
  if (auto* b = w.find(prefix + ".biases")) biases = to_floats(mx::take(as_rows(*b), v.row, 0));
  const int words_per_group = q.group_size * q.bits / 32;
  const int first = v.col / q.group_size;
  const int last = (v.col + static_cast<int>(v.values.size()) - 1) / q.group_size;
  for (int g = first; g <= last; ++g) {
    GroupView gv{.group = g, .scale = scales[g], .bias = biases.empty() ? 0.0f : biases[g]};
    gv.words.assign(words.begin() + g * words_per_group, words.begin() + (g + 1) * words_per_group);
    gv.fields = unpack_fields(gv.words, q.bits, q.group_size);
    for (int f : gv.fields) gv.values.push_back(gv.scale * static_cast<float>(f) + gv.bias);
    auto [mn, mxv] = std::minmax_element(gv.fields.begin(), gv.fields.end());
    gv.field_min = *mn;
    gv.field_max = *mxv;
    v.groups.push_back(std::move(gv));
  }
  v.scale_stats = stats_of(w.at(prefix + ".scales"));
  if (auto* b = w.find(prefix + ".biases")) v.bias_stats = stats_of(*b);
}

// The raw ggml blocks of the viewed row that cover the shown values.
void view_blocks(const Weights& w, const std::string& prefix, const QuantSpec& q, TensorView& v) {
  const io::GgmlType type = io::ggml_mode_type(q.mode);
  const io::GgmlBlock blk = *io::ggml_block(static_cast<uint32_t>(type));
  mx::array row = mx::contiguous(mx::take(as_rows(w.at(prefix + ".weight")), v.row, 0));
  mx::eval(row);
  const uint8_t* bytes = row.data<uint8_t>();
  const int first = v.col / blk.elements;
  const int last = (v.col + static_cast<int>(v.values.size()) - 1) / blk.elements;
  for (int b = first; b <= last; ++b) {
    const uint8_t* p = bytes + static_cast<size_t>(b) * blk.bytes;
    io::GgmlBlockFields f = io::ggml_unpack_block(type, p);
    BlockView bv{.block = b, .bytes = std::vector<uint8_t>(p, p + blk.bytes), .d = f.d, .dmin = f.dmin,
                 .sub_block = f.sub_block, .scales = f.scales, .mins = f.mins, .fields = f.q,
                 .values = std::vector<float>(blk.elements)};
    io::ggml_dequantize_row(type, p, bv.values.data(), blk.elements);
    v.blocks.push_back(std::move(bv));
  }
}

}  // namespace

void validate(const ViewOptions& o) {
  if (o.count < 0) throw std::invalid_argument(fmt::format("[weights] count {}: must be >= 0", o.count));
  if (o.bins < 0 || o.bins > kMaxBins)
    throw std::invalid_argument(fmt::format("[weights] bins {}: must be in [0, {}] (0: no histogram)", o.bins, kMaxBins));
  if (o.row < 0 || o.col < 0)
    throw std::invalid_argument(fmt::format("[weights] row {} col {}: must be >= 0", o.row, o.col));
}

TensorView view_tensor(const Model& m, const std::string& name, const ViewOptions& o) {
  validate(o);
  const Weights& w = m.weights();
  if (!w.contains(name)) match_tensors(m, name);  // throws the standard message
  ParamInfo p = param_info(w, name);
  TensorView v{.name = name, .shape = p.shape, .stored_shape = p.stored_shape, .dtype = p.dtype,
               .bits = p.bits, .group_size = p.group_size, .row = o.row, .col = o.col};
  const int rows = p.shape.size() == 3 ? p.shape[0] * p.shape[1] : p.shape.size() == 2 ? p.shape[0] : 1;
  const int cols = p.shape.empty() ? 1 : p.shape.back();
  if (p.shape.size() > 3)
    throw std::invalid_argument(fmt::format(
        "[weights] {} has {} dims; only 1-D, 2-D and stacked-expert 3-D tensors are viewed", name, p.shape.size()));
  if (o.row < 0 || o.row >= rows || o.col < 0 || o.col >= cols)
    throw std::invalid_argument(fmt::format("[weights] {}: row {} col {} outside shape ({}, {}){}", name, o.row, o.col,
                                            rows, cols,
                                            p.shape.size() == 3 ? " (stacked experts: rows counted across experts)"
                                                                : ""));
  mx::array logical = as_rows(logical_tensor(w, name));
  mx::array row = logical.ndim() == 1 ? logical : mx::take(logical, o.row, 0);
  const int n = std::clamp(o.count, 0, cols - o.col);
  v.values = to_floats(mx::slice(row, {o.col}, {o.col + n}));
  if (std::string prefix = quant_prefix(w, name); !prefix.empty()) {
    const QuantSpec& q = *w.quant(prefix);
    v.mode = q.mode;
    if (io::is_ggml_mode(q.mode)) {
      if (n > 0) view_blocks(w, prefix, q, v);
    } else if (n > 0) view_groups(w, prefix, q, v);
    else {
      v.scale_stats = stats_of(w.at(prefix + ".scales"));
      if (auto* b = w.find(prefix + ".biases")) v.bias_stats = stats_of(*b);
    }
  }
  v.stats = stats_of(logical);
  if (o.bins > 0) v.histogram = histogram_of(logical, v.stats, o.bins);
  return v;
}

}  // namespace lmlab::analysis
