// A (fused) model as a GGUF file that llama.cpp runs: the tensors under the
// family's GGUF names (models/gguf.cpp), float matrices as F16, vectors as
// F32, quantized layers as Q4_1 or Q8_0 blocks when those hold them exactly
// (others dequantized to F16);
// the metadata (architecture, tokenizer, general.*) carried over from the
// base GGUF, as llama.cpp's loader reads it.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "lmlab/train.h"
#include "models/gguf.h"
#include "nn/linear.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using mx::array;

namespace lmlab::train {

namespace {

// ggml's general.file_type values (llama_ftype): the file's main tensor type.
constexpr int64_t kFileTypeF16 = 1, kFileTypeQ4_1 = 3, kFileTypeQ8_0 = 7;

// Whether every value of `a` survives a trip through float16.
bool exact_in_f16(const array& a) {
  array back = mx::astype(mx::astype(a, mx::float16), a.dtype());
  return mx::all(mx::equal(back, a)).item<bool>();
}

// Q4_1 exactly holds a 4-bit affine layer with 32-element groups whose scales
// and biases are float16 values: block = {d: scale, m: bias, 16 bytes of q}.
bool is_4bit_32(const nn::Linear& l) {
  return l.quant && l.quant->mode == "affine" && l.quant->bits == 4 && l.quant->group_size == 32 && l.scales &&
         l.biases;
}
bool q4_1_exact(const nn::Linear& l) { return is_4bit_32(l) && exact_in_f16(*l.scales) && exact_in_f16(*l.biases); }

// MLX packs element k of a row at bits 4·(k % 8) of word k / 8; a Q4_1 block
// stores element j (j < 16) in the low nibble of byte j and element j + 16 in
// its high nibble, after the float16 scale and bias.
array q4_1_blocks(const nn::Linear& l) {
  const int rows = l.weight.shape(0);
  array bytes = mx::view(l.weight, mx::uint8);  // (rows, in / 2): elements 2b (low), 2b + 1 (high)
  array q = mx::stack({mx::bitwise_and(bytes, array(uint8_t{15})), mx::right_shift(bytes, array(uint8_t{4}))}, -1);
  const int groups = bytes.shape(1) * 2 / 32;
  q = mx::reshape(q, {rows, groups, 32});
  array lo = mx::slice(q, {0, 0, 0}, {rows, groups, 16});
  array hi = mx::slice(q, {0, 0, 16}, {rows, groups, 32});
  array qs = mx::bitwise_or(lo, mx::left_shift(hi, array(uint8_t{4})));
  auto half_bytes = [&](const array& a) {
    return mx::reshape(mx::view(mx::astype(a, mx::float16), mx::uint8), {rows, groups, 2});
  };
  array blocks = mx::concatenate({half_bytes(*l.scales), half_bytes(*l.biases), qs}, -1);
  return mx::reshape(blocks, {rows, groups * 20});
}

// Q8_0 exactly holds an 8-bit affine layer with 32-element groups whose bias
// is −128 × its float16 scale (what reading a Q8_0 GGUF gives): block = {d, 32 × int8}.
bool q8_0_exact(const nn::Linear& l) {
  if (!(l.quant && l.quant->mode == "affine" && l.quant->bits == 8 && l.quant->group_size == 32 && l.scales &&
        l.biases && exact_in_f16(*l.scales)))
    return false;
  array s = mx::astype(*l.scales, mx::float32);
  return mx::all(mx::equal(mx::astype(*l.biases, mx::float32), mx::multiply(s, array(-128.0f)))).item<bool>();
}

// MLX stores 8-bit element k as byte k of the row; q − 128 as int8 has the bits of q xor 0x80.
array q8_0_blocks(const nn::Linear& l) {
  const int rows = l.weight.shape(0);
  array bytes = mx::view(l.weight, mx::uint8);
  const int groups = bytes.shape(1) / 32;
  array qs = mx::bitwise_xor(mx::reshape(bytes, {rows, groups, 32}), array(uint8_t{0x80}));
  array d = mx::reshape(mx::view(mx::astype(*l.scales, mx::float16), mx::uint8), {rows, groups, 2});
  return mx::reshape(mx::concatenate({d, qs}, -1), {rows, groups * 34});
}

io::GgufTensorOut tensor(const std::string& name, array data, io::GgmlType type, std::vector<int64_t> dims) {
  return io::GgufTensorOut{name, std::move(dims), type, std::move(data)};
}

// GGML dims are the array's shape reversed (dims[0] contiguous).
std::vector<int64_t> ggml_dims(const mx::Shape& shape) { return std::vector<int64_t>(shape.rbegin(), shape.rend()); }

// One module (`P.weight` with its scales, biases) or a plain tensor as GGUF tensors.
void add_tensors(const Weights& g, const std::string& name, bool keep_blocks, io::GgufOut& out, GgufExport& report) {
  if (name.ends_with(".scales") || name.ends_with(".biases")) {
    const std::string prefix = name.substr(0, name.size() - 7);
    if (g.quant(prefix)) return;  // written with its weight
  }
  const array& a = g.at(name);
  if (name.ends_with(".weight") && g.quant(name.substr(0, name.size() - 7))) {
    const std::string prefix = name.substr(0, name.size() - 7);
    nn::Linear l = nn::Linear::view(g, prefix);
    const int64_t in = l.in_features(), rows = l.out_features();
    if (keep_blocks && is_4bit_32(l)) {
      if (!q4_1_exact(l)) {
        // A layer fuse quantized back with float32 scales: quantized again from
        // its values with float16 scales, as Q4_1 stores them (values move by
        // the float16 rounding of each group's scale and bias, ~1e-3 relative).
        auto packed = mx::quantize(l.dense_weight(mx::float16), 32, 4);
        mx::eval(packed);
        l.weight = packed[0];
        l.scales = packed[1];
        l.biases = packed[2];
        ++report.requantized;
      }
      out.tensors.push_back(tensor(name, q4_1_blocks(l), io::GgmlType::Q4_1, {in, rows}));
      ++report.q4_1;
    } else if (keep_blocks && q8_0_exact(l)) {
      out.tensors.push_back(tensor(name, q8_0_blocks(l), io::GgmlType::Q8_0, {in, rows}));
      ++report.q8_0;
    } else {
      out.tensors.push_back(tensor(name, l.dense_weight(mx::float16), io::GgmlType::F16, {in, rows}));
      ++report.f16;
    }
    return;
  }
  if (!mx::issubdtype(a.dtype(), mx::floating))
    throw Unsupported(fmt::format("[export-gguf] tensor '{}' is not a float tensor, which lmlab does not write to GGUF",
                                  name));
  // llama.cpp's converter keeps vectors (norms, biases) in float32.
  if (a.ndim() == 1) {
    out.tensors.push_back(tensor(name, mx::astype(a, mx::float32), io::GgmlType::F32, ggml_dims(a.shape())));
    ++report.f32;
  } else {
    out.tensors.push_back(tensor(name, mx::astype(a, mx::float16), io::GgmlType::F16, ggml_dims(a.shape())));
    ++report.f16;
  }
}

}  // namespace

GgufExport export_gguf(const Model& model, const fs::path& base_gguf, const fs::path& path, bool dequantize) {
  const io::GgufFile base = io::read_gguf(base_gguf);
  const Weights g = models::hf_to_gguf_weights(model.weights(), model.config());
  GgufExport report;
  io::GgufOut out;
  for (const auto& [name, _] : g.items()) add_tensors(g, name, !dequantize, out, report);
  // Tensors of the base the model folds into its config (llama3's rope_freqs.weight) go over as they are.
  for (const auto& t : base.tensors)
    if (!g.contains(t.name) && t.name != "output.weight") report.carried.push_back(t.name);
  if (!report.carried.empty()) {
    const Weights raw = io::read_gguf_tensors(base);
    for (const std::string& name : report.carried) {
      const array& a = raw.at(name);
      out.tensors.push_back(tensor(name, mx::astype(a, mx::float32), io::GgmlType::F32, ggml_dims(a.shape())));
    }
  }
  out.meta = base.meta;
  out.types = base.meta_types;
  out.meta["general.file_type"] = report.q4_1 > 0 ? kFileTypeQ4_1 : report.q8_0 > 0 ? kFileTypeQ8_0 : kFileTypeF16;
  out.types["general.file_type"] = {io::GgufType::U32};
  io::write_gguf(path, out);
  return report;
}

}  // namespace lmlab::train
