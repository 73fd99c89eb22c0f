// What an edit did to the stored numbers: how far the n-bit fields and the
// dequantized values moved, the histogram of field changes per field
// position, a few real words before and after, and the borrow arithmetic
// that explains a packed-word shift field by field.
#include <cmath>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "analysis/sweep_internal.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::analysis::detail {

namespace {

constexpr int kRowChunk = 4096;  // rows per step, so a 49152-row embedding never needs every field at once

// The module prefix of a quantized tensor name (P.weight, P.scales, P.biases), or "".
std::string module_of(const Weights& w, const std::string& name) {
  for (const char* suffix : {".weight", ".scales", ".biases"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      std::string p = name.substr(0, name.size() - s.size());
      if (w.quant(p)) return p;
    }
  }
  return "";
}

// The n-bit fields of packed rows [r0, r1) as float32: dequantization with scale 1 and bias 0.
array fields_of(const Weights& w, const std::string& prefix, int r0, int r1) {
  const QuantSpec& q = *w.quant(prefix);
  const array& words = w.at(prefix + ".weight");
  const array& scales = w.at(prefix + ".scales");
  array rows = mx::slice(words, {r0, 0}, {r1, words.shape(1)});
  mx::Shape sshape = {r1 - r0, scales.shape(1)};
  return mx::dequantize(rows, mx::ones(sshape, mx::float32), mx::zeros(sshape, mx::float32), q.group_size, q.bits,
                        "affine", std::nullopt, mx::float32);
}

struct Sums {
  double abs = 0, max = 0, base_abs = 0;
  int64_t count = 0;
};

// Row sums of |d| and |base| read back in double (float32 sums over a whole
// embedding would lose digits), and the max.
void accumulate(Sums& s, const array& d, const array& base) {
  array ad = mx::abs(d);
  array rows = mx::sum(ad, -1), base_rows = mx::sum(mx::abs(base), -1), mx_ = mx::max(ad);
  mx::eval({rows, base_rows, mx_});
  for (float v : to_floats(rows)) s.abs += v;
  for (float v : to_floats(base_rows)) s.base_abs += v;
  s.max = std::max(s.max, static_cast<double>(mx_.item<float>()));
  s.count += static_cast<int64_t>(d.size());
}

bool same_packing(const Weights& a, const Weights& b, const std::string& prefix) {
  const QuantSpec *qa = a.quant(prefix), *qb = b.quant(prefix);
  return qa && qb && qa->same_format(*qb);
}

std::vector<std::string> modules_and_tensors(const Weights& before, const std::vector<std::string>& edited) {
  std::vector<std::string> out;
  for (const auto& n : edited) {
    std::string p = module_of(before, n);
    std::string key = p.empty() ? n : p;
    if (std::find(out.begin(), out.end(), key) == out.end()) out.push_back(key);
  }
  return out;
}

}  // namespace

Measured measure(const Weights& before, const Weights& after, const std::vector<std::string>& edited) {
  Measured m;
  Change& c = m.change;
  Sums values, fields;
  std::vector<std::vector<int64_t>> counts;  // [field position][Δ + 255]
  for (const auto& n : edited) {
    const array &a = before.at(n), &b = after.at(n);
    if (a.shape() == b.shape() && a.dtype() == b.dtype())
      c.elements_changed += mx::sum(mx::astype(mx::not_equal(a, b), mx::int64)).item<int64_t>();
    else
      c.elements_changed += static_cast<int64_t>(b.size());
  }
  for (const auto& key : modules_and_tensors(before, edited)) {
    if (!before.quant(key)) {
      array b = mx::astype(before.at(key), mx::float32), a = mx::astype(after.at(key), mx::float32);
      accumulate(values, mx::subtract(a, b), b);
      continue;
    }
    // One histogram (the first packing's), over weights whose words changed in place.
    const int bits = before.quant(key)->bits;
    const bool words_moved = same_packing(before, after, key) &&
                             before.at(key + ".weight").id() != after.at(key + ".weight").id() &&
                             (!m.fields || m.fields->bits == bits);
    const int per = bits == 3 || bits == 5 ? 8 : bits == 6 ? 4 : 32 / bits;  // fields per word (or pack)
    if (words_moved && !m.fields) {
      m.fields = FieldHistogram{.bits = bits};
      counts.assign(per, std::vector<int64_t>(511, 0));
    }
    const int rows = before.at(key + ".weight").shape(0);
    for (int r0 = 0; r0 < rows; r0 += kRowChunk) {
      const int r1 = std::min(rows, r0 + kRowChunk);
      auto slice_rows = [&](const Weights& w) {
        Weights part;
        for (const char* s : {".weight", ".scales", ".biases"})
          if (const array* x = w.find(key + s)) part.set(key + s, mx::slice(*x, {r0, 0}, {r1, x->shape(1)}));
        part.set_quant(key, *w.quant(key));
        return logical_tensor(part, key + ".weight");
      };
      array vb = slice_rows(before), va = slice_rows(after);
      accumulate(values, mx::subtract(va, vb), vb);
      if (!same_packing(before, after, key)) continue;
      array fb = fields_of(before, key, r0, r1), fa = fields_of(after, key, r0, r1);
      array d = mx::subtract(fa, fb);
      accumulate(fields, d, fb);
      if (!words_moved) continue;
      array di = mx::contiguous(mx::astype(d, mx::int16));
      mx::eval(di);
      const int16_t* p = di.data<int16_t>();
      const size_t cols = di.shape(1);
      for (size_t i = 0; i < di.size(); ++i) ++counts[(i % cols) % per][p[i] + 255];
    }
  }
  if (values.count) {
    c.value_mean = values.abs / static_cast<double>(values.count);
    c.value_max = values.max;
    c.value_rel = values.base_abs > 0 ? values.abs / values.base_abs : 0.0;
  }
  if (fields.count) {
    c.field_mean = fields.abs / static_cast<double>(fields.count);
    c.field_max = fields.max;
  }
  if (m.fields) {
    m.fields->counts.resize(counts.size());
    for (size_t j = 0; j < counts.size(); ++j)
      for (int k = 0; k < 511; ++k)
        if (counts[j][k]) m.fields->counts[j][k - 255] = counts[j][k];
  }
  return m;
}

std::vector<WordExample> example_words(const Weights& before, const Weights& after,
                                       const std::vector<std::string>& edited, int count) {
  std::vector<WordExample> out;
  for (const auto& key : modules_and_tensors(before, edited)) {
    if (!before.quant(key) || !same_packing(before, after, key) || count <= 0) continue;
    const QuantSpec& q = *before.quant(key);
    const int words = std::min(count, before.at(key + ".weight").shape(1));
    auto row_words = [&](const Weights& w) {
      array r = mx::contiguous(mx::slice(w.at(key + ".weight"), {0, 0}, {1, words}));
      mx::eval(r);
      return std::vector<uint32_t>(r.data<uint32_t>(), r.data<uint32_t>() + words);
    };
    auto values = [&](const Weights& w, const std::vector<int>& f) {
      std::vector<float> s = to_floats(mx::slice(w.at(key + ".scales"), {0, 0}, {1, w.at(key + ".scales").shape(1)}));
      std::vector<float> b = to_floats(mx::slice(w.at(key + ".biases"), {0, 0}, {1, w.at(key + ".biases").shape(1)}));
      std::vector<float> v;
      for (size_t i = 0; i < f.size(); ++i) v.push_back(s[i / q.group_size] * f[i] + b[i / q.group_size]);
      return v;
    };
    std::vector<uint32_t> wb = row_words(before), wa = row_words(after);
    const int fields_per_word = 32 / q.bits;  // whole fields inside one word (3/5/6-bit fields may straddle)
    std::vector<int> fb = unpack_fields(wb, q.bits, words * 32 / q.bits);
    std::vector<int> fa = unpack_fields(wa, q.bits, words * 32 / q.bits);
    std::vector<float> vb = values(before, fb), va = values(after, fa);
    for (int i = 0; i < words; ++i) {
      WordExample e{.tensor = key + ".weight", .bits = q.bits, .row = 0, .word = i, .before = wb[i], .after = wa[i]};
      const int f0 = i * 32 / q.bits, f1 = std::min<int>(fb.size(), f0 + fields_per_word);
      e.fields_before.assign(fb.begin() + f0, fb.begin() + f1);
      e.fields_after.assign(fa.begin() + f0, fa.begin() + f1);
      e.values_before.assign(vb.begin() + f0, vb.begin() + f1);
      e.values_after.assign(va.begin() + f0, va.begin() + f1);
      out.push_back(std::move(e));
    }
    break;
  }
  return out;
}

double mean_word(const Weights& w, const std::vector<std::string>& tensors) {
  double sum = 0;
  int64_t n = 0;
  for (const auto& name : tensors) {
    if (quant_prefix(w, name).empty()) continue;
    const array& a = w.at(name);
    sum += static_cast<double>(mx::sum(mx::astype(a, mx::uint64)).item<uint64_t>());
    n += static_cast<int64_t>(a.size());
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

std::string hex_word(uint32_t w) { return fmt::format("0x{:08X}", w); }
std::string hex64(uint64_t h) { return fmt::format("{:016x}", h); }

}  // namespace lmlab::analysis::detail

namespace lmlab::analysis {

std::vector<BorrowStep> borrow_steps(uint32_t word, int64_t shift, int bits) {
  if (bits != 2 && bits != 4 && bits != 8)
    throw std::invalid_argument(fmt::format("[sweep] borrows are shown for 2-, 4- and 8-bit fields, not {}-bit", bits));
  const uint64_t mask = (1u << bits) - 1;
  const bool add = shift < 0;  // subtracting a negative shift adds: carries instead of borrows
  const uint64_t s = static_cast<uint64_t>(add ? -shift : shift) & 0xFFFFFFFFull;
  std::vector<BorrowStep> out;
  int carry = 0;
  for (int j = 0; j < 32 / bits; ++j) {
    const int f = static_cast<int>((word >> (j * bits)) & mask), d = static_cast<int>((s >> (j * bits)) & mask);
    const int raw = add ? f + d + carry : f - d - carry;
    const int after = static_cast<int>(static_cast<uint64_t>(raw) & mask);
    const int out_c = add ? (raw > static_cast<int>(mask)) : (raw < 0);
    out.push_back({.field = j, .before = f, .digit = d, .borrow_in = carry, .after = after, .borrow_out = out_c});
    carry = out_c;
  }
  return out;
}

}  // namespace lmlab::analysis
