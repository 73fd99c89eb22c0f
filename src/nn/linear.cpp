// nn::Linear, after mlx-lm's QuantizedLinear and tuner/lora.py, tuner/dora.py.
#include "nn/linear.h"

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "nn/cpu/dequantize.h"
#include "nn/cpu/ggml_matmul.h"
#include "nn/cpu/quantized_matmul.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace {

std::optional<array> find(const Weights& w, const std::string& name) {
  const array* a = w.find(name);
  return a ? std::optional<array>(*a) : std::nullopt;
}

std::string shape_str(const array& a) {
  std::string s = "(";
  for (int i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + ")";
}

array dropout(const array& x, float p) {
  if (p <= 0.0f) return x;
  array keep = mx::random::bernoulli(array(1.0f - p), x.shape());
  return mx::multiply(mx::multiply(keep, x), array(1.0f / (1.0f - p), x.dtype()));
}

// The low-rank update scale·(x A) B, computed in the adapter's dtype (float32,
// as mlx-lm's LoRALinear promotes it) and returned in x's. For half-precision
// x, mx::custom_vjp gives it a derivative that recomputes x's float32 copy
// instead of keeping it for A's gradient: the composed graph kept one float32
// copy of its input per adapted projection and trained block until the
// backward pass (on a Llama 1B shape in bfloat16 with the seven projections
// adapted, 82 KB a token and block, 2.7 GB at batch 4 × 512).
array low_rank(const array& x, const Adapter& ad) {
  const float scale = ad.spec.scale;
  auto forward = [scale](const std::vector<array>& in) {
    array z = mx::matmul(mx::matmul(mx::astype(in[0], in[1].dtype()), in[1]), in[2]);
    return std::vector<array>{mx::astype(mx::multiply(z, array(scale, z.dtype())), in[0].dtype())};
  };
  if (x.dtype() == ad.a.dtype()) return forward({x, ad.a, ad.b})[0];
  auto backward = [scale](const std::vector<array>& primals, const std::vector<array>& cotangents,
                          const std::vector<array>&) {
    const array &x = primals[0], &a = primals[1], &b = primals[2];
    const array xf = mx::reshape(mx::astype(x, a.dtype()), {-1, x.shape(-1)});
    const array c = mx::multiply(mx::reshape(mx::astype(cotangents[0], b.dtype()), {-1, b.shape(-1)}),
                                 array(scale, b.dtype()));
    const array dxa = mx::matmul(c, mx::transpose(b));  // (N, r)
    return std::vector<array>{
        mx::astype(mx::reshape(mx::matmul(dxa, mx::transpose(a)), x.shape()), x.dtype()),
        mx::matmul(mx::transpose(xf), dxa),                  // dA (in, r)
        mx::matmul(mx::transpose(mx::matmul(xf, a)), c),  // dB (r, out)
    };
  };
  return mx::custom_vjp(forward, backward)({x, ad.a, ad.b})[0];
}

}  // namespace

array dequantize_exact(const array& w, const array& scales, const std::optional<array>& biases, int group_size,
                       int bits, const std::string& mode, mx::Dtype dtype, mx::StreamOrDevice s) {
  auto widen = [&](const array& p) {
    return mx::size_of(p.dtype()) < mx::size_of(dtype) && mx::issubdtype(dtype, mx::floating) ? mx::astype(p, dtype, s)
                                                                                                : p;
  };
  std::optional<array> b = biases ? std::optional<array>(widen(*biases)) : std::nullopt;
  return mx::dequantize(w, widen(scales), b, group_size, bits, mode, std::nullopt, dtype, s);
}

array adapter_input(const Adapter& a, const array& x, bool training) {
  return training ? dropout(x, a.spec.dropout) : x;
}

Linear Linear::view(const Weights& w, const std::string& name) {
  Linear l{.name = &name, .weight = w.at(name + ".weight")};
  l.bias = find(w, name + ".bias");
  if (const QuantSpec* q = w.quant(name)) {
    l.quant = *q;
    if (!l.ggml_blocks()) {
      l.scales = w.at(name + ".scales");
      l.biases = find(w, name + ".biases");
    }
  }
  if (const AdapterSpec* a = w.adapter(name))
    l.adapter = Adapter{w.at(name + ".lora_a"), w.at(name + ".lora_b"), find(w, name + ".m"), *a};
  return l;
}

int Linear::in_features() const {
  return quant ? static_cast<int>(quant->unpacked_columns(weight.shape(-1))) : weight.shape(-1);
}

bool Linear::ggml_blocks() const { return quant && io::is_ggml_mode(quant->mode); }

array Linear::base(const array& x) const {
  auto product = [&] {
    if (!quant) return mx::matmul(x, mx::transpose(weight));
    if (ggml_blocks()) return ggml_matmul(x, weight, io::ggml_mode_type(quant->mode));
    // Many rows on the CPU (a prompt, a training batch): the dequantized
    // weights through BLAS's GEMM (nn/cpu/dequantize.h).
    if (cpu::dense_rows(x, weight, *scales, biases, *quant))
      return cpu::dense_quantized_matmul(x, weight, *scales, *biases, quant->group_size, quant->bits);
    return quantized_matmul(x, weight, *scales, biases, quant->group_size, quant->bits, quant->mode,
                            quant->activations);
  };
  array y = product();
  return bias ? mx::add(y, *bias) : y;
}

array Linear::dense_weight(mx::Dtype dtype) const {
  if (!quant) return mx::astype(weight, dtype);
  if (ggml_blocks()) return io::ggml_dequantize(weight, io::ggml_mode_type(quant->mode), dtype);
  return dequantize_exact(weight, *scales, biases, quant->group_size, quant->bits, quant->mode, dtype);
}

array Linear::operator()(const array& x, bool training) const {
  if (!adapter) return base(x);
  const Adapter& ad = *adapter;
  if (stacked_experts())
    throw std::invalid_argument(fmt::format("[linear] {}: stacked experts run through nn::moe_mlp", *name));
  array lora = low_rank(adapter_input(ad, x, training), ad);
  if (ad.spec.kind == "lora") return mx::add(base(x), lora);
  if (ad.spec.kind != "dora")
    throw std::invalid_argument(fmt::format("[linear] {}: unknown adapter kind '{}' (lora, dora)", *name, ad.spec.kind));
  if (!ad.m) throw std::invalid_argument(fmt::format("[linear] {}: DoRA adapter without its magnitude '{}.m'", *name, *name));
  // DoRA: the adapted weight's row norms (held constant for the gradient) are
  // replaced by the learned magnitude m; the base bias is added afterwards.
  array w = dense_weight(x.dtype());
  array out = mx::add(mx::matmul(x, mx::transpose(w)), lora);
  array delta = mx::matmul(mx::multiply(mx::transpose(ad.b), array(ad.spec.scale, ad.b.dtype())), mx::transpose(ad.a));
  array denom = mx::stop_gradient(mx::sqrt(mx::sum(mx::square(mx::add(w, delta)), -1)));
  out = mx::multiply(mx::astype(mx::divide(*ad.m, denom), x.dtype()), out);
  return bias ? mx::add(out, *bias) : out;
}

void check_linear(const Weights& w, const std::string& name, int out, int in) {
  const array* a = w.find(name + ".weight");
  if (!a) throw std::invalid_argument(fmt::format("[model] missing tensor '{}.weight'", name));
  int want_in = in;
  const QuantSpec* q = w.quant(name);
  if (q && io::is_ggml_mode(q->mode)) {
    const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(io::ggml_mode_type(q->mode)));
    if (in % b.elements != 0)
      throw std::invalid_argument(fmt::format("[model] '{}': {} inputs are not whole {} blocks of {}", name, in,
                                              q->mode, b.elements));
    want_in = in / b.elements * b.bytes;
  } else if (q) {
    want_in = in * q->bits / 32;
    const array* s = w.find(name + ".scales");
    if (!s || s->ndim() != 2 || s->shape(0) != out || in % q->group_size != 0 || s->shape(1) != in / q->group_size)
      throw std::invalid_argument(fmt::format("[model] '{}.scales' has shape {}, expected ({}, {})", name,
                                              s ? shape_str(*s) : "none", out, in / q->group_size));
  }
  if (a->ndim() != 2 || a->shape(0) != out || a->shape(1) != want_in)
    throw std::invalid_argument(
        fmt::format("[model] '{}.weight' has shape {}, expected ({}, {})", name, shape_str(*a), out, want_in));
}

void check_vector(const Weights& w, const std::string& name, int n) {
  const array* a = w.find(name);
  if (!a) throw std::invalid_argument(fmt::format("[model] missing tensor '{}'", name));
  if (a->ndim() != 1 || a->shape(0) != n)
    throw std::invalid_argument(fmt::format("[model] '{}' has shape {}, expected ({})", name, shape_str(*a), n));
}

namespace {

// Refuses ids outside the table when they are already evaluated (a prompt the
// caller built): MLX's take does not check and would read past the table.
// Ids still being computed (the argmax of the previous step's logits, during
// decoding) are in range by construction and are not waited for.
void check_ids(const Linear& table, const array& ids) {
  if (!ids.is_available() || ids.size() == 0 || !ids.flags().row_contiguous) return;
  const int64_t rows = table.weight.shape(0);
  auto scan = [&](const auto* p) {
    for (size_t i = 0; i < ids.size(); ++i)
      if (static_cast<int64_t>(p[i]) < 0 || static_cast<int64_t>(p[i]) >= rows)
        throw std::out_of_range(fmt::format("[embedding] {}: token id {} outside the vocabulary (0..{})", *table.name,
                                            static_cast<int64_t>(p[i]), rows - 1));
  };
  switch (ids.dtype()) {
    case mx::int32: return scan(ids.data<int32_t>());
    case mx::int64: return scan(ids.data<int64_t>());
    case mx::uint32: return scan(ids.data<uint32_t>());
    default: return;
  }
}

}  // namespace

array embedding_rows(const Linear& table, const array& ids, mx::Dtype dtype) {
  check_ids(table, ids);
  // Every row gather runs one (element, index) type pair: on a GPU, MLX
  // compiles its gather kernel for each pair at first use (about 2 s each, the
  // whole wait before a first token). So: int32 ids, and rows of 2- or 4-byte
  // elements gathered as uint32 words (a bit-exact view).
  const array ids32 = ids.dtype() == mx::int32 ? ids : mx::astype(ids, mx::int32);
  auto rows = [&](const array& a) {
    const bool words = a.dtype() != mx::uint32 && a.ndim() == 2 &&
                       (mx::size_of(a.dtype()) == 4 || (mx::size_of(a.dtype()) == 2 && a.shape(1) % 2 == 0));
    if (!words) return mx::take(a, ids32, 0);
    return mx::view(mx::take(mx::view(a, mx::uint32), ids32, 0), a.dtype());
  };
  if (!table.quant) return mx::astype(rows(table.weight), dtype);
  if (table.ggml_blocks())
    return io::ggml_dequantize(rows(table.weight), io::ggml_mode_type(table.quant->mode), dtype);
  std::optional<array> biases;
  if (table.biases) biases = rows(*table.biases);
  return dequantize_exact(rows(table.weight), rows(*table.scales), biases, table.quant->group_size, table.quant->bits,
                          table.quant->mode, dtype);
}

}  // namespace lmlab::nn
