// lmlab weights: any tensor by name or glob. One match: its values from a
// chosen row and column; for quantized tensors the packed uint32 words, their
// n-bit fields in the order the kernel reads them, the group's scale and bias
// and the dequantized values; statistics and a histogram. Several matches: one
// line of statistics per tensor.
#include <algorithm>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct WeightsOptions {
  ModelOptions model;
  std::string name;
  an::ViewOptions view;
  bool json = false;
};

std::string shape_str(const std::vector<int>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? " × " : "") + std::to_string(s[i]);
  return out;
}

std::string stats_line(const an::Stats& s) {
  return fmt::format("min {:+.5g}  max {:+.5g}  mean {:+.4g}  std {:.4g}  |mean| {:.4g}  zeros {}/{}", s.min,
                     s.max, s.mean, s.std, s.abs_mean, s.zeros, s.count);
}

void print_groups(const an::TensorView& v) {
  const int per_word = 32 / v.bits;
  fmt::print("\nPacked groups of row {} ({}-bit fields, low bits first: field j of a word is bits {}j..{}j+{})\n",
             v.row, v.bits, v.bits, v.bits, v.bits - 1);
  for (const auto& g : v.groups) {
    fmt::print("  group {:<4} columns {}..{}  scale {:+.6g}  bias {:+.6g}  fields {}..{}\n", g.group,
               g.group * v.group_size, (g.group + 1) * v.group_size - 1, g.scale, g.bias, g.field_min,
               g.field_max);
    if (32 % v.bits != 0) {
      fmt::print("    words");
      for (uint32_t w : g.words) fmt::print(" 0x{:08X}", w);
      fmt::print("\n");
    }
    for (size_t wi = 0; wi < g.words.size() && 32 % v.bits == 0; ++wi) {
      std::string fields, values;
      for (int j = 0; j < per_word; ++j) {
        size_t k = wi * per_word + j;
        fields += fmt::format("{:>3}", g.fields[k]);
        values += fmt::format(" {:+.4f}", g.values[k]);
      }
      fmt::print("    word {:<2} 0x{:08X}  fields{}  →{}\n", wi, g.words[wi], fields, values);
    }
    if (32 % v.bits != 0) {
      fmt::print("    fields");
      for (int f : g.fields) fmt::print(" {}", f);
      fmt::print("\n");
    }
  }
  fmt::print("  value = scale × field + bias (MLX affine dequantization)\n");
}

// How a ggml block mode turns stored fields into values (the formulas of lmlab/ggml.h).
const char* block_formula(const std::string& mode) {
  if (mode == "q2_k") return "value = d × scale × field − dmin × min";
  if (mode == "q3_k") return "value = d × (scale − 32) × (field − 4)";
  if (mode == "q6_k") return "value = d × scale × (field − 32)";
  if (mode == "iq4_nl") return "value = d × codebook[field]  (codebook −127 … 113)";
  return "value = d × (scale − 32) × codebook[field]  (codebook −127 … 113)";
}

void print_blocks(const an::TensorView& v) {
  fmt::print("\nGGML blocks of row {} ({} mode: {} elements in {} bytes, {}-bit fields)\n", v.row, v.mode,
             v.group_size, v.blocks.empty() ? 0 : v.blocks[0].bytes.size(), v.bits);
  for (const auto& b : v.blocks) {
    fmt::print("  block {:<4} columns {}..{}  d {:+.6g}", b.block, b.block * v.group_size,
               (b.block + 1) * v.group_size - 1, b.d);
    if (!b.mins.empty()) fmt::print("  dmin {:+.6g}", b.dmin);
    fmt::print("\n");
    const int subs = static_cast<int>(b.fields.size()) / b.sub_block;
    for (int s = 0; s < subs; ++s) {
      const int c0 = b.block * v.group_size + s * b.sub_block;
      if (c0 + b.sub_block <= v.col || c0 >= v.col + static_cast<int>(v.values.size())) continue;
      fmt::print("    sub-block {:<2}", s);
      if (!b.scales.empty()) fmt::print(" scale {:>4}", b.scales[s]);
      if (!b.mins.empty()) fmt::print(" min {:>3}", b.mins[s]);
      fmt::print("  fields");
      for (int i = 0; i < b.sub_block; ++i) fmt::print(" {}", b.fields[s * b.sub_block + i]);
      fmt::print("\n      values");
      for (int i = 0; i < b.sub_block; ++i) fmt::print(" {:+.4f}", b.values[s * b.sub_block + i]);
      fmt::print("\n");
    }
  }
  fmt::print("  {} (ggml's dequantization)\n", block_formula(v.mode));
}

void print_histogram(const an::Histogram& h) {
  if (h.counts.empty()) return;
  int64_t top = *std::max_element(h.counts.begin(), h.counts.end());
  const float w = (h.hi - h.lo) / h.counts.size();
  fmt::print("\nHistogram (all values)\n");
  for (size_t i = 0; i < h.counts.size(); ++i)
    fmt::print("  [{:+.4f}, {:+.4f}) {:<40} {}\n", h.lo + i * w, h.lo + (i + 1) * w,
               an::bar(top ? double(h.counts[i]) / top : 0, 40), h.counts[i]);
}

void print_view(const an::TensorView& v) {
  fmt::print("{}\n  shape {}  stored {} {}", v.name, shape_str(v.shape), v.dtype, shape_str(v.stored_shape));
  if (!v.blocks.empty() || (v.bits && v.mode != "affine"))
    fmt::print("  (ggml {} blocks of {})", v.mode, v.group_size);
  else if (v.bits) fmt::print("  ({}-bit affine, group {})", v.bits, v.group_size);
  if (v.shape.size() == 3)  // stacked experts (E, rows, cols): rows are counted across experts
    fmt::print("\n  {} experts of {} rows: row {} is expert {}'s row {}", v.shape[0], v.shape[1], v.row,
               v.row / v.shape[1], v.row % v.shape[1]);
  fmt::print("\n\nValues at row {}, columns {}..{}\n ", v.row, v.col, v.col + (int)v.values.size() - 1);
  for (size_t i = 0; i < v.values.size(); ++i)
    fmt::print("{}{:+.5f}", i && i % 8 == 0 ? "\n  " : " ", v.values[i]);
  fmt::print("\n");
  if (!v.blocks.empty()) print_blocks(v);
  else if (v.bits && !v.groups.empty()) print_groups(v);
  fmt::print("\nStatistics (whole tensor{})\n  values  {}\n", v.bits ? ", dequantized" : "", stats_line(v.stats));
  if (v.scale_stats) fmt::print("  scales  {}\n", stats_line(*v.scale_stats));
  if (v.bias_stats) fmt::print("  biases  {}\n", stats_line(*v.bias_stats));
  print_histogram(v.histogram);
}

void run_weights(const WeightsOptions& o) {
  check_usage([&] { an::validate(o.view); });
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<std::string> names = an::match_tensors(*m.model, o.name);
  if (names.size() == 1) {
    an::TensorView v = an::view_tensor(*m.model, names[0], o.view);
    if (o.json) print_json(v);
    else print_view(v);
    return;
  }
  an::ViewOptions brief{.count = 0, .bins = 0};
  json all = json::array();
  if (!o.json)
    fmt::print("{} tensors match '{}'\n  {:<48} {:<13} {:<9} {:>11} {:>11} {:>10} {:>10}\n", names.size(), o.name,
               "name", "shape", "storage", "min", "max", "mean", "std");
  for (const auto& n : names) {
    an::TensorView v = an::view_tensor(*m.model, n, brief);
    if (o.json) {
      all.push_back(v);
      continue;
    }
    std::string storage = !v.bits ? v.dtype
                          : v.mode == "affine" ? fmt::format("{}-bit g{}", v.bits, v.group_size)
                                               : v.mode;
    fmt::print("  {:<48} {:<13} {:<9} {:>+11.4g} {:>+11.4g} {:>+10.3g} {:>10.3g}\n", n, shape_str(v.shape), storage,
               v.stats.min, v.stats.max, v.stats.mean, v.stats.std);
  }
  if (o.json) print_json(all);
}

}  // namespace

void setup_weights(CLI::App& app) {
  auto o = std::make_shared<WeightsOptions>();
  o->model.add(app);
  app.add_option("name", o->name, "tensor name, module name or glob (e.g. 'model.layers.0.*')")->required();
  app.add_option("--row", o->view.row, "row of the values shown")->capture_default_str();
  app.add_option("--col", o->view.col, "first column of the values shown")->capture_default_str();
  app.add_option("--count", o->view.count, "values shown")->capture_default_str();
  app.add_option("--bins", o->view.bins, fmt::format("histogram bins, 0 to {} (0: none)", an::kMaxBins))
      ->capture_default_str();
  add_json_flag(app, o->json, "values, words, fields, scales, biases, stats, histogram");
  app.callback([o] { run_weights(*o); });
}

}  // namespace lmlab::cli
