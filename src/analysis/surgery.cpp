// surgery: reversible edits of stored tensors. Every edit builds new arrays and
// swaps the handles in the model's Weights; the first original of each tensor
// is kept, so restore() puts back the very same buffers (bit-exact by
// construction, checked with weights_hash). Quantized modules are edited in
// their packed form: value edits go through scales/biases or the n-bit fields,
// so the model stays quantized and runs on the same kernels.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include <fmt/format.h>

#include "analysis/internal.h"
#include "lmlab/ggml.h"
#include "lmlab/io.h"
#include "lmlab/model.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::analysis {

// The first state of a tensor (value) or of a module's format (is_format:
// name is the module prefix, format its quantization or none).
struct Surgery::Original {
  std::string name;
  std::optional<array> value;
  bool is_format = false;
  std::optional<QuantSpec> format;
};

namespace {

using Changes = std::map<std::string, array>;
// Modules whose quantization format an edit changes (Requantize).
using Formats = std::map<std::string, QuantSpec>;

const std::map<std::string, EditOp> kOps = {
    {"zero", EditOp::Zero},          {"scale", EditOp::Scale},
    {"noise", EditOp::Noise},        {"set", EditOp::Set},
    {"shift-words", EditOp::ShiftWords}, {"shift-fields", EditOp::ShiftFields},
    {"flip-bits", EditOp::FlipBits},     {"requantize", EditOp::Requantize}};

// (R, W) uint32 words → (R, W * 32/bits) fields, low bits first (MLX's order).
array unpack(const array& words, int bits) {
  array shifts = mx::arange(0, 32, bits, mx::uint32);
  array f = mx::right_shift(mx::expand_dims(words, -1), shifts);
  f = mx::bitwise_and(f, mx::array((1u << bits) - 1, mx::uint32));
  auto shape = words.shape();
  shape.back() *= 32 / bits;
  return mx::reshape(f, shape);
}

array pack(const array& fields, int bits) {
  auto shape = fields.shape();
  shape.back() /= 32 / bits;
  mx::Shape split = shape;
  split.push_back(32 / bits);
  array f = mx::left_shift(mx::reshape(mx::astype(fields, mx::uint32), split),
                           mx::arange(0, 32, bits, mx::uint32));
  return mx::astype(mx::sum(f, -1), mx::uint32);  // disjoint bits: sum == or
}

void require_field_bits(const std::string& name, int bits) {
  if (bits != 2 && bits != 4 && bits != 8)
    throw std::invalid_argument(fmt::format(
        "[surgery] {}: field edits support 2-, 4- and 8-bit packing, not {}-bit", name, bits));
}

// Fields edited by fn(fields as float32, group scales broadcast to fields) then
// rounded, clamped and packed again.
template <typename Fn>
array edit_fields(const Weights& w, const std::string& prefix, const QuantSpec& q, Fn fn) {
  require_field_bits(prefix + ".weight", q.bits);
  array fields = mx::astype(unpack(w.at(prefix + ".weight"), q.bits), mx::float32);
  array scales = mx::repeat(mx::astype(w.at(prefix + ".scales"), mx::float32), q.group_size, -1);
  array edited = mx::round(fn(fields, scales));
  edited = mx::clip(edited, mx::array(0.0f), mx::array(float((1 << q.bits) - 1)));
  return pack(edited, q.bits);
}

// A mask with `n` distinct bits of `total` set, drawn uniformly: rejection
// sampling, or the complement when n > total / 2, so the work stays below 2n
// draws and the memory one bit per stored bit, whatever the rate.
std::vector<uint8_t> random_mask(int64_t total, int64_t n, uint64_t seed) {
  const bool complement = n > total / 2;
  const int64_t picks = complement ? total - n : n;
  std::vector<uint8_t> mask(static_cast<size_t>((total + 7) / 8), 0);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> d(0, total - 1);
  for (int64_t set = 0; set < picks;) {
    const int64_t p = d(rng);
    uint8_t& byte = mask[p / 8];
    const uint8_t bit = static_cast<uint8_t>(1u << (p % 8));
    if (byte & bit) continue;
    byte |= bit;
    ++set;
  }
  if (complement) {
    for (auto& b : mask) b = static_cast<uint8_t>(~b);
    if (total % 8) mask.back() &= static_cast<uint8_t>((1u << (total % 8)) - 1);
  }
  return mask;
}

// Stored bit p is bit p % 8 of byte p / 8 (little-endian words, as MLX's
// kernels and the GGUF/safetensors files lay them out).
array flip_bits(const std::string& name, const array& a, const EditSpec& s) {
  if (a.itemsize() > 4)
    throw std::invalid_argument(fmt::format("[surgery] {}: cannot flip bits of {}", name, dtype_name(a.dtype())));
  const int64_t total = static_cast<int64_t>(a.nbytes()) * 8;
  std::vector<uint8_t> mask;
  if (s.positions.empty()) {
    mask = random_mask(total, std::llround(s.rate * static_cast<double>(total)), s.seed);
  } else {
    mask.assign(static_cast<size_t>((total + 7) / 8), 0);
    for (int64_t p : s.positions) {
      if (p < 0 || p >= total)
        throw std::invalid_argument(fmt::format("[surgery] {}: bit position {} outside [0, {})", name, p, total));
      mask[p / 8] |= static_cast<uint8_t>(1u << (p % 8));
    }
  }
  array c = mx::contiguous(a);
  mx::eval(c);
  std::vector<uint8_t> bytes(c.data<uint8_t>(), c.data<uint8_t>() + c.nbytes());  // the original is never written
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] ^= mask[i];
  array out(bytes.begin(), {static_cast<int>(bytes.size())}, mx::uint8);
  return mx::reshape(a.dtype() == mx::uint8 ? out : mx::view(out, a.dtype()), c.shape());
}

array noise(const mx::Shape& shape, double sigma, uint64_t seed) {
  return mx::multiply(mx::random::normal(shape, mx::float32, 0.0f, 1.0f, mx::random::key(seed)),
                      mx::array(static_cast<float>(sigma)));
}

// (bits, group size) of a Requantize spec, checked against the row length.
std::pair<int, int> requant_format(const std::string& name, int row, const EditSpec& s) {
  const int bits = static_cast<int>(s.value);
  if (s.value != bits || (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8))
    throw std::invalid_argument(fmt::format("[surgery] {}: requantize to {} bits; choose 2, 3, 4, 5, 6 or 8", name, s.value));
  if (s.group_size != 32 && s.group_size != 64 && s.group_size != 128)
    throw std::invalid_argument(fmt::format("[surgery] {}: group size {}; choose 32, 64 or 128", name, s.group_size));
  if (row % s.group_size)
    throw std::invalid_argument(
        fmt::format("[surgery] {}: rows of {} values do not split into groups of {}", name, row, s.group_size));
  return {bits, s.group_size};
}

void edit_dense(const std::string& name, const array& a, const EditSpec& s, Changes& out) {
  auto same = [&](const array& x) { return mx::astype(x, a.dtype()); };
  const float v = static_cast<float>(s.value);
  switch (s.op) {
    case EditOp::Zero: out.emplace(name, mx::zeros_like(a)); return;
    case EditOp::Set: out.emplace(name, mx::full(a.shape(), mx::array(v), a.dtype())); return;
    case EditOp::Scale: out.emplace(name, same(mx::multiply(a, mx::array(v)))); return;
    case EditOp::Noise: {
      double sigma = s.value;
      if (s.relative) sigma *= mx::sqrt(mx::mean(mx::square(mx::astype(a, mx::float32)))).item<float>();
      out.emplace(name, same(mx::add(mx::astype(a, mx::float32), noise(a.shape(), sigma, s.seed))));
      return;
    }
    case EditOp::ShiftWords:
      if (a.dtype() != mx::uint32)
        throw std::invalid_argument(fmt::format(
            "[surgery] {}: shift-words needs packed uint32 words, the tensor is {}", name,
            dtype_name(a.dtype())));
      // The seed notebook: cast to int64, subtract, cast back (wrapping) to uint32.
      out.emplace(name, mx::astype(mx::subtract(mx::astype(a, mx::int64),
                                                mx::array(static_cast<int64_t>(s.value))),
                                   mx::uint32));
      return;
    case EditOp::ShiftFields:
      throw std::invalid_argument(
          fmt::format("[surgery] {}: shift-fields needs a quantized weight", name));
    case EditOp::FlipBits: out.emplace(name, flip_bits(name, a, s)); return;
    case EditOp::Requantize: {
      auto [bits, group] = requant_format(name, a.shape(-1), s);
      if (a.ndim() < 2 || !mx::issubdtype(a.dtype(), mx::floating))
        throw std::invalid_argument(fmt::format(
            "[surgery] {}: requantize needs a float matrix, the tensor is {}-D {}", name, a.ndim(), dtype_name(a.dtype())));
      auto q = mx::quantize(a, group, bits);
      out.emplace(name, mx::dequantize(q[0], q[1], q[2], group, bits, "affine", std::nullopt, a.dtype()));
      return;
    }
  }
}

// A ggml block-mode weight with each block's fields edited by fn(fields, index of
// the block's first value in the flattened tensor); a fresh buffer.
template <typename Fn>
array edit_blocks(const array& weight, io::GgmlType type, Fn fn) {
  const io::GgmlBlock blk = *io::ggml_block(static_cast<uint32_t>(type));
  array c = mx::contiguous(weight);
  mx::eval(c);
  std::vector<uint8_t> bytes(c.data<uint8_t>(), c.data<uint8_t>() + c.size());
  for (size_t b = 0; b * blk.bytes < bytes.size(); ++b) {
    io::GgmlBlockFields f = io::ggml_unpack_block(type, bytes.data() + b * blk.bytes);
    fn(f, static_cast<int64_t>(b) * blk.elements);
    io::ggml_pack_block(type, f, bytes.data() + b * blk.bytes);
  }
  return array(bytes.begin(), c.shape(), mx::uint8);
}

// Element i's field after adding `n` in value units: the nearest point of the
// block's grid (linear in the field, or IQ4's codebook).
int nearest_field(io::GgmlType t, const io::GgmlBlockFields& f, int i, float n, int top) {
  const float sc = f.scales.empty() ? 1.0f : static_cast<float>(f.scales[i / f.sub_block]);
  const float unit = t == io::GgmlType::Q2_K || t == io::GgmlType::Q6_K ? f.d * sc
                     : t == io::GgmlType::IQ4_NL                       ? f.d
                                                                       : f.d * (sc - 32.0f);
  if (unit == 0.0f) return f.q[i];
  if (t != io::GgmlType::IQ4_NL && t != io::GgmlType::IQ4_XS)
    return std::clamp(static_cast<int>(std::lround(static_cast<float>(f.q[i]) + n / unit)), 0, top);
  const float target = static_cast<float>(io::kIq4Values[f.q[i]]) + n / unit;
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(io::kIq4Values[k] - target) < std::fabs(io::kIq4Values[best] - target)) best = k;
  return best;
}

// Value edits of a module kept as raw ggml blocks: the super-block scales or
// the element fields, clamped to their range; the blocks stay valid ggml blocks.
void edit_ggml_blocks(const Weights& w, const std::string& prefix, const EditSpec& s, Changes& out) {
  const QuantSpec& q = *w.quant(prefix);
  const io::GgmlType type = io::ggml_mode_type(q.mode);
  const std::string wn = prefix + ".weight";
  const array& weight = w.at(wn);
  const int top = (1 << io::ggml_field_bits(type)) - 1;
  auto clamp = [&](float f) { return std::clamp(static_cast<int>(std::lround(f)), 0, top); };
  switch (s.op) {
    case EditOp::Zero: out.emplace(wn, mx::zeros_like(weight)); return;
    case EditOp::Scale:
      out.emplace(wn, edit_blocks(weight, type, [&](io::GgmlBlockFields& f, int64_t) {
                    f.d *= static_cast<float>(s.value);  // rounded to float16 when packed
                    f.dmin *= static_cast<float>(s.value);
                  }));
      return;
    case EditOp::ShiftFields:
      out.emplace(wn, edit_blocks(weight, type, [&](io::GgmlBlockFields& f, int64_t) {
                    for (int& x : f.q) x = clamp(static_cast<float>(x) + static_cast<float>(s.value));
                  }));
      return;
    case EditOp::Noise: {
      const int64_t values = q.unpacked_columns(weight.shape(-1)) * (weight.size() / weight.shape(-1));
      std::vector<float> n = to_floats(noise({static_cast<int>(values)}, s.value, s.seed));
      out.emplace(wn, edit_blocks(weight, type, [&](io::GgmlBlockFields& f, int64_t first) {
                    for (size_t i = 0; i < f.q.size(); ++i)
                      f.q[i] = s.relative ? clamp(static_cast<float>(f.q[i]) + n[first + i])
                                          : nearest_field(type, f, static_cast<int>(i), n[first + i], top);
                  }));
      return;
    }
    case EditOp::Set:
      throw std::invalid_argument(fmt::format(
          "[surgery] {}: set needs affine biases; {} blocks have none (try zero, scale or noise)", wn, q.mode));
    case EditOp::ShiftWords:
    case EditOp::FlipBits: edit_dense(wn, weight, s, out); return;
  }
}

void edit_quantized(const Weights& w, const std::string& prefix, const EditSpec& s, Changes& out) {
  const QuantSpec& q = *w.quant(prefix);
  if (io::is_ggml_mode(q.mode)) return edit_ggml_blocks(w, prefix, s, out);
  const std::string wn = prefix + ".weight", sn = prefix + ".scales", bn = prefix + ".biases";
  const array& weight = w.at(wn);
  const array& scales = w.at(sn);
  const array* biases = w.find(bn);
  const float v = static_cast<float>(s.value);
  auto need_biases = [&] {
    if (!biases)
      throw std::invalid_argument(fmt::format("[surgery] {}: needs affine biases ({} mode)", wn, q.mode));
  };
  switch (s.op) {
    case EditOp::Zero:
    case EditOp::Set:
      need_biases();
      out.emplace(wn, mx::zeros_like(weight));
      out.emplace(sn, mx::zeros_like(scales));
      out.emplace(bn, mx::full(biases->shape(), mx::array(s.op == EditOp::Zero ? 0.0f : v), biases->dtype()));
      return;
    case EditOp::Scale:
      out.emplace(sn, mx::astype(mx::multiply(scales, mx::array(v)), scales.dtype()));
      if (biases) out.emplace(bn, mx::astype(mx::multiply(*biases, mx::array(v)), biases->dtype()));
      return;
    case EditOp::Noise:
      out.emplace(wn, edit_fields(w, prefix, q, [&](const array& f, const array& sc) {
                    array n = noise(f.shape(), s.value, s.seed);
                    // Absolute noise is in value units: divide by the step size.
                    if (!s.relative) n = mx::divide(n, mx::where(mx::equal(sc, mx::array(0.0f)),
                                                                 mx::array(1.0f), sc));
                    return mx::add(f, n);
                  }));
      return;
    case EditOp::ShiftFields:
      out.emplace(wn, edit_fields(w, prefix, q, [&](const array& f, const array&) {
                    return mx::add(f, mx::array(v));
                  }));
      return;
    case EditOp::ShiftWords:
    case EditOp::FlipBits: edit_dense(wn, weight, s, out); return;
    case EditOp::Requantize: return;  // a change of format: requantize_module
  }
}

// The module re-quantized from its exact values at the spec's bits and group
// size; scales and biases keep their dtype.
void requantize_module(const Weights& w, const std::string& prefix, const EditSpec& s, Changes& out,
                       Formats& formats) {
  const QuantSpec& q = *w.quant(prefix);
  const std::string wn = prefix + ".weight", sn = prefix + ".scales", bn = prefix + ".biases";
  if (q.mode != "affine" || !w.find(bn))
    throw std::invalid_argument(fmt::format("[surgery] {}: requantize needs affine quantization ({} mode)", wn, q.mode));
  const array values = logical_tensor(w, wn);
  auto [bits, group] = requant_format(wn, values.shape(-1), s);
  auto r = mx::quantize(values, group, bits);
  const mx::Dtype dt = w.at(sn).dtype();
  out.emplace(wn, r[0]);
  out.emplace(sn, mx::astype(r[1], dt));
  out.emplace(bn, mx::astype(r[2], dt));
  QuantSpec spec = q;
  spec.bits = bits;
  spec.group_size = group;
  if (bits != 4 && bits != 5 && bits != 8) spec.activations.clear();  // int8 activations exist for 4/5/8-bit kernels only
  formats.emplace(prefix, spec);
}

int64_t changed_elements(const array& a, const array& b) {
  auto bits = [](const array& x) {
    mx::Dtype u = x.itemsize() == 8 ? mx::uint64 : x.itemsize() == 4 ? mx::uint32
                : x.itemsize() == 2 ? mx::uint16 : mx::uint8;
    return x.dtype() == u ? x : mx::view(x, u);
  };
  return mx::sum(mx::astype(mx::not_equal(bits(a), bits(b)), mx::int64)).item<int64_t>();
}

}  // namespace

EditOp parse_edit_op(const std::string& name) {
  auto it = kOps.find(name);
  if (it == kOps.end())
    throw std::invalid_argument(fmt::format(
        "[surgery] unknown edit '{}' (zero, scale, noise, set, shift-words, shift-fields, flip-bits, requantize)", name));
  return it->second;
}

std::string edit_op_name(EditOp op) {
  for (const auto& [n, o] : kOps)
    if (o == op) return n;
  return "?";
}

void validate(const EditSpec& s) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format("[surgery] {}: {}", edit_op_name(s.op), what));
  };
  if (s.target.empty()) bad("no target tensor given");
  if (!std::isfinite(s.value)) bad(fmt::format("value {} is not a finite number", s.value));
  const bool integral = s.value == std::floor(s.value);
  switch (s.op) {
    case EditOp::Noise:
      if (s.value < 0) bad(fmt::format("sigma {} must be >= 0", s.value));
      break;
    case EditOp::ShiftWords:
      // Words wrap modulo 2^32: a larger shift means nothing more.
      if (!integral || std::fabs(s.value) >= 4294967296.0)
        bad(fmt::format("value {} must be an integer in (-2^32, 2^32) (words are uint32)", s.value));
      break;
    case EditOp::ShiftFields:
      if (!integral || std::fabs(s.value) > 255)
        bad(fmt::format("value {} must be an integer in [-255, 255] (fields hold at most 8 bits)", s.value));
      break;
    case EditOp::FlipBits:
      if (!s.positions.empty() && s.rate != 0) bad("give a rate or bit positions, not both");
      if (s.positions.empty() && !(s.rate > 0 && s.rate <= 1))
        bad(fmt::format("rate {} must be in (0, 1], or give bit positions", s.rate));
      break;
    default: break;
  }
  if (s.relative && s.op != EditOp::Noise) bad("relative applies to noise only");
}

uint64_t weights_hash(const Model& m, const std::vector<std::string>& names) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  auto add = [&](const std::string& name, const array& a) {
    mix(reinterpret_cast<const uint8_t*>(name.data()), name.size());
    array c = mx::contiguous(a);
    mx::eval(c);
    mix(c.data<uint8_t>(), c.nbytes());
  };
  if (names.empty())
    for (const auto& [n, a] : m.weights().items()) add(n, a);
  for (const auto& n : names) add(n, m.weights().at(n));
  return h;
}

const EditRecord& Surgery::apply(const EditSpec& spec) {
  validate(spec);
  Weights& w = model_.weights();
  Changes changes;
  Formats formats;
  std::vector<std::string> names = match_tensors(model_, spec.target);
  auto matched = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  for (const auto& name : names) {
    // A module's scales/biases matched beside its weight are edited with it.
    bool companion = false;
    for (const char* suffix : {".scales", ".biases"}) {
      std::string sfx = suffix;
      if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
        std::string p = name.substr(0, name.size() - sfx.size());
        companion |= w.quant(p) && matched(p + ".weight");
      }
    }
    if (companion) continue;
    std::string prefix = quant_prefix(w, name);
    if (prefix.empty()) edit_dense(name, w.at(name), spec, changes);
    else if (spec.op == EditOp::Requantize) requantize_module(w, prefix, spec, changes, formats);
    else edit_quantized(w, prefix, spec, changes);
  }
  auto reformatted = [&](const std::string& name) {
    const size_t dot = name.rfind('.');
    return dot != std::string::npos && formats.count(name.substr(0, dot)) > 0;
  };
  EditRecord rec{.spec = spec};
  for (auto& [name, value] : changes) {
    mx::eval(value);
    const array& old = w.at(name);
    if (reformatted(name)) {
      rec.elements_changed += static_cast<int64_t>(value.size());  // a new packing: every element is new
    } else {
      if (old.shape() != value.shape() || old.dtype() != value.dtype())
        throw std::logic_error(fmt::format("[surgery] {}: edit changed shape or dtype", name));
      rec.elements_changed += changed_elements(old, value);
    }
    rec.tensors.push_back(name);
  }
  // Everything computed: only now touch the model.
  auto remember = [&](const std::string& name, bool is_format) {
    auto seen = std::find_if(originals_.begin(), originals_.end(),
                             [&](const auto& o) { return o->name == name && o->is_format == is_format; });
    if (seen != originals_.end()) return;
    Original o{.name = name, .is_format = is_format};
    if (is_format) {
      if (const QuantSpec* q = w.quant(name)) o.format = *q;
    } else {
      o.value = w.at(name);
    }
    originals_.push_back(std::make_shared<Original>(std::move(o)));
  };
  for (auto& [name, value] : changes) {
    remember(name, false);
    w.set(name, value);
  }
  for (auto& [prefix, q] : formats) {
    remember(prefix, true);
    w.set_quant(prefix, q);
  }
  log_.push_back(std::move(rec));
  return log_.back();
}

int Surgery::restore() {
  Weights& w = model_.weights();
  int n = 0;
  for (const auto& o : originals_) {
    if (!o->is_format) {
      w.set(o->name, *o->value);
      ++n;
    } else if (o->format) {
      w.set_quant(o->name, *o->format);
    } else {
      w.clear_quant(o->name);
    }
  }
  originals_.clear();
  log_.clear();
  return n;
}

std::vector<std::string> Surgery::edited() const {
  std::vector<std::string> out;
  for (const auto& o : originals_)
    if (!o->is_format) out.push_back(o->name);
  return out;
}

namespace {

const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "chat_template.jinja", "generation_config.json"};

}  // namespace

void check_save(const LoadedModel& m, const std::string& dir, const std::string& tokenizer_dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) throw std::invalid_argument("[save] no directory given");
  if (fs::exists(dir))
    throw std::invalid_argument(fmt::format("[save] {} already exists; choose a new directory", dir));
  fs::path parent = fs::absolute(fs::path(dir)).parent_path();
  while (!parent.empty() && !fs::exists(parent) && parent != parent.parent_path()) parent = parent.parent_path();
  if (!fs::is_directory(parent))
    throw std::runtime_error(fmt::format("[save] cannot create {}: {} is not a folder", dir, parent.string()));
  // Permissions do not tell (root, read-only mounts, /proc): make and drop a folder.
  std::error_code ec;
  const fs::path probe = parent / fmt::format(".lmlab-save-check-{}", ::getpid());
  if (!fs::create_directory(probe, ec) || ec)
    throw std::runtime_error(fmt::format("[save] cannot write into {}: {}", parent.string(),
                                         ec ? ec.message() : "the folder was not created"));
  fs::remove(probe, ec);
  if (!tokenizer_dir.empty()) {
    // The tokenizer must be the model's: a larger vocabulary gives ids the
    // embedding does not have.
    Tokenizer tok = Tokenizer::from_file(tokenizer_dir);
    if (tok.vocab_size() > m.model->config().vocab_size)
      throw std::invalid_argument(fmt::format(
          "[save] the tokenizer in {} has {} tokens but the model's vocabulary has {}: it belongs to another "
          "model; give the model's own tokenizer folder",
          tokenizer_dir, tok.vocab_size(), m.model->config().vocab_size));
  } else if (m.format == "gguf") {
    gguf_tokenizer_files(m.gguf_metadata);  // throws Unsupported for SentencePiece vocabularies
  }
}

void save_model(const LoadedModel& m, const std::string& dir, const std::string& tokenizer_dir) {
  namespace fs = std::filesystem;
  check_save(m, dir, tokenizer_dir);
  std::vector<fs::path> extra;
  std::map<std::string, std::string> written;
  fs::path src = !tokenizer_dir.empty() ? fs::path(tokenizer_dir)
                 : m.format == "safetensors" ? fs::path(m.path)
                                             : fs::path();
  if (fs::is_regular_file(src)) src = src.parent_path();  // a tokenizer.json file
  if (!src.empty()) {
    for (const char* f : kTokenizerFiles) extra.push_back(src / f);
  } else {
    // A GGUF carries its tokenizer in its header: write it as HF files, with
    // every end-of-generation id in generation_config.json.
    TokenizerFiles files = gguf_tokenizer_files(m.gguf_metadata);
    written["tokenizer.json"] = std::move(files.tokenizer_json);
    written["tokenizer_config.json"] = std::move(files.tokenizer_config_json);
    written["generation_config.json"] = nlohmann::json{{"eos_token_id", m.tokenizer.eos_ids()}}.dump(2);
  }
  io::save_model_dir(dir, m.model->config().raw, m.model->weights(), extra, written);
}

}  // namespace lmlab::analysis
