// nn::decoder_step: the fused decoder block (LmlabDecoderStep) and the rotary
// tables it reads. Compiled with -ffp-contract=off: the norms and the rotation
// round each product as MLX's op-by-op fallbacks do.
#include "nn/cpu/decoder_step.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "lmlab/ggml.h"
#include "nn/cpu/attention_kernels.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/elementwise_kernels.h"
#include "nn/cpu/quantized_matmul.h"

namespace mx = mlx::core;

namespace lmlab::nn::cpu {

std::pair<array, array> rope_tables(const RoPE& rope, int offset, int L) {
  // fast::rope's definition: angle = (position · scale) · inv_freq, with
  // inv_freq = base^(-i/half) as exp(-i · log(base)/half), or 1/freqs.
  const int half = rope.dims / 2;
  array positions = mx::multiply(mx::add(mx::arange(L, mx::float32), array(offset, mx::int32)),
                                 array(rope.scale, mx::float32));
  array inv = rope.freqs
                  ? mx::reciprocal(mx::astype(*rope.freqs, mx::float32))
                  : mx::exp(mx::multiply(mx::arange(0, -half, -1, mx::float32),
                                         array(std::log(rope.base) / half, mx::float32)));
  array theta = mx::multiply(mx::expand_dims(positions, -1), inv);
  return {mx::cos(theta), mx::sin(theta)};
}

namespace {

using cpu::ActQuant;

// Input slots of the primitive. Each projection adds w, scales, biases and,
// when it has one, its bias; then the optional norms; then the cache buffers,
// keys and values in turn: one pair shared by all B sequences (decoder_step),
// or one pair per sequence (decoder_step_rows).
enum Slot { kH, kCos, kSin, kInNorm, kPostNorm };
enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kProjections };

struct LinearSlots {
  int w = -1, bias = -1;  // affine: scales at w + 1, biases at w + 2; raw GGML blocks: w alone
  int group_size = 0, bits = 0;
  ActQuant act = ActQuant::none;
  int ggml_type = -1;  // ≥ 0: w holds raw blocks of this io::GgmlType
};

struct Layout {
  LinearSlots proj[kProjections];
  int q_norm = -1, k_norm = -1, attn_out_norm = -1, mlp_out_norm = -1;
  int cache = -1;       // slot of the first keys buffer; values follow each keys
  int cache_pairs = 1;  // 1: one (B, Hk, capacity, Dh) pair; B: a (1, Hk, capacity_b, Dh) pair per sequence
};

// Where sequence b of the step writes and reads its keys and values.
struct RowCache {
  float* keys;
  float* values;
  int capacity;
  int offset;        // position of its first new token
  const float* cos;  // L rows of rope_dims/2 angles
  const float* sin;
};

// The primitive's inputs as row-major buffers, each gathered at most once.
class Inputs {
 public:
  Inputs(const std::vector<mx::array>& in, const std::vector<std::shared_ptr<mx::array::Data>>& buffers)
      : in_(in), buffers_(buffers), rows_(in.size()) {}
  const mx::array& operator[](int i) const { return in_[i]; }
  // Input i's buffer as the graph holds it (the weak copies in in_ have their own).
  const std::shared_ptr<mx::array::Data>& buffer(int i) const { return buffers_[i]; }
  template <class T>
  const T* data(int i) {
    if (!rows_[i]) rows_[i].emplace(in_[i]);
    return rows_[i]->data<T>();
  }

 private:
  const std::vector<mx::array>& in_;
  const std::vector<std::shared_ptr<mx::array::Data>>& buffers_;
  std::vector<std::optional<cpu::RowMajor>> rows_;
};

// y = x · w / sqrt(mean(x²) + eps) for each row of n, products rounded as MLX's
// fallback rounds them (square, sum, × 1/n, + eps, rsqrt, × x, × w).
void rms_norm_rows(const float* x, const float* w, float* y, long rows, int n, float eps) {
  const float inv_n = 1.0f / static_cast<float>(n);
  for (long r = 0; r < rows; ++r, x += n, y += n) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float sq = x[i] * x[i];
      sum += sq;
    }
    const float scale = 1.0f / std::sqrt(sum * inv_n + eps);
    for (int i = 0; i < n; ++i) {
      const float normed = x[i] * scale;
      y[i] = normed * w[i];
    }
  }
}

// Rotates the first `dims` features of each head: pairs (i, i + dims/2), or
// (2i, 2i + 1) when traditional; cos/sin hold dims/2 angles per position.
void rotate(float* x, int heads, int head_dim, int dims, bool traditional, const float* cos,
            const float* sin) {
  const int half = dims / 2;
  for (int h = 0; h < heads; ++h, x += head_dim)
    for (int i = 0; i < half; ++i) {
      float& a = traditional ? x[2 * i] : x[i];
      float& b = traditional ? x[2 * i + 1] : x[i + half];
      const float x1 = a, x2 = b;
      const float c = cos[i], s = sin[i];
      const float p1 = x1 * c, p2 = x2 * s, p3 = x1 * s, p4 = x2 * c;
      a = p1 - p2;
      b = p3 + p4;
    }
}

class LmlabDecoderStep : public mx::Primitive {
 public:
  LmlabDecoderStep(mx::Stream stream, Layout layout, DecoderStepShape shape, std::vector<int> offsets)
      : mx::Primitive(stream), layout_(layout), shape_(shape), offsets_(std::move(offsets)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    outputs[0].set_data(mx::allocator::malloc(outputs[0].nbytes()));
    // The new keys and values go into the cache buffers in place (see
    // decoder_step.h): the outputs share the inputs' buffers whether or not MLX
    // could donate them, since a step scheduled while the previous one still
    // runs would otherwise copy the whole cache. A buffer that is not plain
    // row-major memory of its own size is copied instead.
    const int buffers = 2 * layout_.cache_pairs;
    std::vector<bool> copy_cache(buffers);
    for (int i = 0; i < buffers; ++i) {
      const mx::array& in = inputs[layout_.cache + i];
      copy_cache[i] = !(in.flags().row_contiguous && in.data_size() == in.size());
      if (copy_cache[i]) outputs[1 + i].set_data(mx::allocator::malloc(outputs[1 + i].nbytes()));
      else outputs[1 + i].copy_shared_buffer(in);
    }
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    for (auto& out : outputs) encoder.set_output_array(out);
    std::vector<mx::array> in, out;
    std::vector<std::shared_ptr<mx::array::Data>> data;  // the inputs' buffers, as the graph holds them
    for (auto& a : inputs) in.push_back(mx::array::unsafe_weak_copy(a)), data.push_back(a.data_shared_ptr());
    for (auto& a : outputs) out.push_back(mx::array::unsafe_weak_copy(a));
    encoder.dispatch([in = std::move(in), out = std::move(out), data = std::move(data), layout = layout_,
                      shape = shape_, offsets = offsets_, copy_cache = std::move(copy_cache)]() mutable {
      for (size_t i = 0; i < copy_cache.size(); ++i)
        if (copy_cache[i]) {
          const cpu::RowMajor src(in[layout.cache + i]);
          std::memcpy(out[1 + i].data<char>(), src.data<char>(), out[1 + i].nbytes());
        }
      run(in, data, out, layout, shape, offsets);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn::decoder_step] CPU only; GPU streams run the composed block");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&, const std::vector<mx::array>&) override {
    throw std::invalid_argument("[lmlab::nn::decoder_step] no derivatives: it is an inference step over a KV cache");
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override {
    throw std::invalid_argument("[lmlab::nn::decoder_step] no derivatives: it is an inference step over a KV cache");
  }

  const char* name() const override { return "LmlabDecoderStep"; }

  // Each step writes its own cache positions: never merged with another.
  bool is_equivalent(const mx::Primitive& other) const override { return &other == this; }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    std::vector<mx::Shape> shapes{inputs[kH].shape()};
    for (int i = 0; i < 2 * layout_.cache_pairs; ++i) shapes.push_back(inputs[layout_.cache + i].shape());
    return shapes;
  }

 private:
  // y_i = x W_iᵀ (+ b_i) for projections sharing one input, in one pass over the pool.
  static void linears(Inputs& in, std::initializer_list<std::pair<const LinearSlots*, float*>> outs, const float* x,
                      int M) {
    std::vector<cpu::QmmProblem> problems;
    for (auto [s, y] : outs) {
      const mx::array& w = in[s->w];
      if (s->ggml_type >= 0) {
        const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(s->ggml_type));
        problems.push_back({
            .x = x,
            .w = reinterpret_cast<const uint32_t*>(in.data<uint8_t>(s->w)),
            .scales = nullptr,
            .biases = nullptr,
            .scale_type = cpu::ScaleType::f32,
            .out = y,
            .M = M,
            .N = w.shape(0),
            .K = w.shape(1) / b.bytes * b.elements,
            .group_size = b.elements,
            .bits = s->bits,
            .ggml_type = s->ggml_type,
        });
        continue;
      }
      problems.push_back({
          .x = x,
          .w = in.data<uint32_t>(s->w),
          .scales = in.data<char>(s->w + 1),
          .biases = in.data<char>(s->w + 2),
          .scale_type = cpu::scale_type(in[s->w + 1].dtype()),
          .out = y,
          .M = M,
          .N = w.shape(0),
          .K = static_cast<int>(static_cast<long>(w.shape(1)) * 32 / s->bits),
          .group_size = s->group_size,
          .bits = s->bits,
          .act = s->act,
          .symmetric = cpu::symmetric_biases(in[s->w + 1], in[s->w + 2], s->bits, in.buffer(s->w + 1),
                                             in.buffer(s->w + 2)),
      });
    }
    cpu::run_qmm_many(problems.data(), static_cast<int>(problems.size()));
    for (auto [s, y] : outs)
      if (s->bias >= 0) {
        const float* b = in.data<float>(s->bias);
        const int N = in[s->w].shape(0);
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) y[static_cast<long>(m) * N + n] += b[n];
      }
  }

  // Sequence b's cache: its rows of the shared buffers, or its own pair.
  static std::vector<RowCache> row_caches(Inputs& in, std::vector<mx::array>& out, const Layout& layout,
                                          const DecoderStepShape& shape, const std::vector<int>& offsets) {
    const int B = in[kH].shape(0), L = in[kH].shape(1), half = shape.rope_dims / 2;
    const long per_row = static_cast<long>(shape.kv_heads) * shape.head_dim;
    const float* cos = in.data<float>(kCos);
    const float* sin = in.data<float>(kSin);
    std::vector<RowCache> rows(B);
    for (int b = 0; b < B; ++b) {
      if (layout.cache_pairs == 1) {
        const int cap = out[1].shape(2);
        const long at = b * per_row * cap;
        rows[b] = {out[1].data<float>() + at, out[2].data<float>() + at, cap, offsets[0], cos, sin};
      } else {
        const long tables = static_cast<long>(b) * L * half;
        rows[b] = {out[1 + 2 * b].data<float>(), out[2 + 2 * b].data<float>(), out[1 + 2 * b].shape(2), offsets[b],
                   cos + tables, sin + tables};
      }
    }
    return rows;
  }

  static void run(const std::vector<mx::array>& arrays, const std::vector<std::shared_ptr<mx::array::Data>>& buffers,
                  std::vector<mx::array>& out, const Layout& layout,
                  const DecoderStepShape& shape, const std::vector<int>& offsets) {
    Inputs in(arrays, buffers);
    const mx::array& h = in[kH];
    const int B = h.shape(0), L = h.shape(1), D = h.shape(2), M = B * L;
    const int H = shape.heads, Hk = shape.kv_heads, Dh = shape.head_dim;
    const int I = in[layout.proj[kGate].w].shape(0);
    const float eps = shape.norm_eps;
    const std::vector<RowCache> rows = row_caches(in, out, layout, shape, offsets);

    // The factors each norm multiplies by: the weights themselves, or offset +
    // weight (Gemma), rounded as MLX's float32 add rounds it.
    std::vector<std::vector<float>> factors;
    auto factor = [&](int slot) -> const float* {
      const float* w = in.data<float>(slot);
      if (shape.norm_offset == 0.0f) return w;
      const int n = static_cast<int>(in[slot].size());
      factors.emplace_back(n);
      for (int i = 0; i < n; ++i) factors.back()[i] = w[i] + shape.norm_offset;
      return factors.back().data();
    };
    factors.reserve(6);
    const float* hp = in.data<float>(kH);
    std::vector<float> x(static_cast<size_t>(M) * D), q(static_cast<size_t>(M) * H * Dh),
        k(static_cast<size_t>(M) * Hk * Dh), v(k.size()), att(q.size()), att_rows(q.size()),
        h1(x.size()), gate(static_cast<size_t>(M) * I), up(gate.size());

    // Attention half: norm, projections, per-head norms, RoPE, cache write.
    rms_norm_rows(hp, factor(kInNorm), x.data(), M, D, eps);
    linears(in, {{&layout.proj[kQ], q.data()}, {&layout.proj[kK], k.data()}, {&layout.proj[kV], v.data()}}, x.data(), M);
    if (layout.q_norm >= 0) rms_norm_rows(q.data(), factor(layout.q_norm), q.data(), static_cast<long>(M) * H, Dh, eps);
    if (layout.k_norm >= 0) rms_norm_rows(k.data(), factor(layout.k_norm), k.data(), static_cast<long>(M) * Hk, Dh, eps);
    if (shape.rope_mscale != 1.0f) {
      for (float& e : q) e *= shape.rope_mscale;
      for (float& e : k) e *= shape.rope_mscale;
    }
    const int half = shape.rope_dims / 2;
    for (int b = 0; b < B; ++b) {
      const RowCache& c = rows[b];
      for (int l = 0; l < L; ++l) {
        const long m = static_cast<long>(b) * L + l;
        rotate(q.data() + m * H * Dh, H, Dh, shape.rope_dims, shape.rope_traditional, c.cos + l * half, c.sin + l * half);
        rotate(k.data() + m * Hk * Dh, Hk, Dh, shape.rope_dims, shape.rope_traditional, c.cos + l * half,
               c.sin + l * half);
        for (int j = 0; j < Hk; ++j) {
          const long dst = (static_cast<long>(j) * c.capacity + c.offset + l) * Dh;
          std::memcpy(c.keys + dst, k.data() + (m * Hk + j) * Dh, sizeof(float) * Dh);
          std::memcpy(c.values + dst, v.data() + (m * Hk + j) * Dh, sizeof(float) * Dh);
        }
      }
    }

    // Attention over each sequence's cache, then the output projection and residual.
    for (int b = 0; b < B; ++b) {
      const RowCache& c = rows[b];
      cpu::AttnProblem p{};
      p.q = q.data() + static_cast<long>(b) * L * H * Dh;
      p.k = c.keys;
      p.v = c.values;
      p.out = att.data() + static_cast<long>(b) * H * L * Dh;
      const long qs[4] = {static_cast<long>(L) * H * Dh, Dh, static_cast<long>(H) * Dh, 1};
      const long cs[4] = {static_cast<long>(Hk) * c.capacity * Dh, static_cast<long>(c.capacity) * Dh, Dh, 1};
      for (int i = 0; i < 4; ++i) p.qs[i] = qs[i], p.ks[i] = cs[i], p.vs[i] = cs[i];
      p.B = 1, p.H = H, p.Hk = Hk, p.L = L, p.Lk = c.offset + L, p.D = Dh;
      p.scale = shape.attn_scale;
      p.window = shape.window;
      cpu::run_attention(p);
    }
    const float* att_in = att.data();
    if (L > 1) {  // (B, H, L, Dh) → (B, L, H·Dh)
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j)
          for (int l = 0; l < L; ++l)
            std::memcpy(att_rows.data() + ((static_cast<long>(b) * L + l) * H + j) * Dh,
                        att.data() + ((static_cast<long>(b) * H + j) * L + l) * Dh, sizeof(float) * Dh);
      att_in = att_rows.data();
    }
    linears(in, {{&layout.proj[kO], x.data()}}, att_in, M);
    if (layout.attn_out_norm >= 0) rms_norm_rows(x.data(), factor(layout.attn_out_norm), x.data(), M, D, eps);
    for (size_t i = 0; i < h1.size(); ++i) h1[i] = hp[i] + x[i];

    // MLP half.
    rms_norm_rows(h1.data(), factor(kPostNorm), x.data(), M, D, eps);
    linears(in, {{&layout.proj[kGate], gate.data()}, {&layout.proj[kUp], up.data()}}, x.data(), M);
    const cpu::SwigluKernel act = shape.gelu ? cpu::geglu_kernel() : cpu::swiglu_kernel();
    act(gate.data(), up.data(), gate.data(), static_cast<long>(gate.size()));
    linears(in, {{&layout.proj[kDown], x.data()}}, gate.data(), M);
    if (layout.mlp_out_norm >= 0) rms_norm_rows(x.data(), factor(layout.mlp_out_norm), x.data(), M, D, eps);
    float* ho = out[0].data<float>();
    for (size_t i = 0; i < h1.size(); ++i) ho[i] = h1[i] + x[i];
  }

  Layout layout_;
  DecoderStepShape shape_;
  std::vector<int> offsets_;  // one for the shared buffers, else one per sequence
};

const QuantizedLinear& projection(const DecoderLayerArrays& w, int i) {
  const QuantizedLinear* all[kProjections] = {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
  return *all[i];
}

bool float32_vector(const std::optional<array>& a, int n) {
  return !a || (a->dtype() == mx::float32 && a->ndim() == 1 && a->shape(0) == n);
}

// (N, K / block · block bytes) uint8 rows of raw GGML blocks of a type lmlab decodes.
bool raw_blocks_are_native(const array& w, int type, int K) {
  const auto b = io::ggml_block(static_cast<uint32_t>(type));
  if (!b || !io::is_ggml_mode(io::ggml_mode_name(static_cast<io::GgmlType>(type)))) return false;
  return w.dtype() == mx::uint8 && K % b->elements == 0 &&
         static_cast<long>(w.shape(1)) == static_cast<long>(K) / b->elements * b->bytes;
}

// The checks both entry points share: a CPU stream, float32 h of B·L rows
// within max_rows, the block's arrays in shapes and types the step computes.
bool block_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape, int max_rows,
                     mx::StreamOrDevice s) {
  if (!cpu::on_cpu(s)) return false;
  if (h.ndim() != 3 || h.dtype() != mx::float32) return false;
  const int B = h.shape(0), L = h.shape(1), D = h.shape(2);
  const int H = shape.heads, Hk = shape.kv_heads, Dh = shape.head_dim;
  if (L < 1 || B < 1 || B * L > max_rows || H < 1 || Hk < 1 || H % Hk != 0 || Dh < 1) return false;
  if (shape.rope_dims < 2 || shape.rope_dims % 2 != 0 || shape.rope_dims > Dh) return false;
  if (!float32_vector(w.in_norm, D) || !float32_vector(w.post_norm, D)) return false;
  if (!float32_vector(w.q_norm, Dh) || !float32_vector(w.k_norm, Dh)) return false;
  if (!float32_vector(w.attn_out_norm, D) || !float32_vector(w.mlp_out_norm, D)) return false;
  if (shape.window < 0) return false;
  if (w.gate.w.ndim() != 2) return false;
  const int I = w.gate.w.shape(0);
  const int in_dims[kProjections] = {D, D, D, H * Dh, D, D, I};
  const int out_dims[kProjections] = {H * Dh, Hk * Dh, Hk * Dh, D, I, I, D};
  for (int i = 0; i < kProjections; ++i) {
    const QuantizedLinear& p = projection(w, i);
    if (p.w.ndim() != 2 || p.w.shape(0) != out_dims[i]) return false;
    if (p.ggml_type >= 0) {
      if (!raw_blocks_are_native(p.w, p.ggml_type, in_dims[i]) || !p.activations.empty() ||
          !float32_vector(p.bias, out_dims[i]))
        return false;
      continue;
    }
    if (!cpu::native_activations(p.bits, p.activations)) return false;
    if (!cpu::native_weights(p.w, p.scales, p.biases, p.group_size, p.bits, "affine", in_dims[i]) ||
        !float32_vector(p.bias, out_dims[i]))
      return false;
  }
  return true;
}

// A cache pair the step can write: float32 (batch, Hk, capacity, Dh) with room for L tokens at offset.
bool cache_is_native(const array& keys, const array& values, int batch, const DecoderStepShape& shape, int offset,
                     int L) {
  if (keys.dtype() != mx::float32 || values.dtype() != mx::float32 || keys.ndim() != 4) return false;
  if (keys.shape() != values.shape() || keys.shape(0) != batch || keys.shape(1) != shape.kv_heads ||
      keys.shape(3) != shape.head_dim)
    return false;
  return offset >= 0 && offset + L <= keys.shape(2);
}

void check_tables(const array& cos, const array& sin, const mx::Shape& expected) {
  if (cos.shape() != expected || sin.shape() != expected || cos.dtype() != mx::float32 || sin.dtype() != mx::float32)
    throw std::invalid_argument(fmt::format("[lmlab::nn::decoder_step] rope tables must be float32 {}",
                                            fmt::join(expected, "x")));
}

// The primitive's inputs up to the caches, and the slots they fill.
std::vector<array> block_inputs(const array& h, const DecoderLayerArrays& w, const array& rope_cos,
                                const array& rope_sin, Layout& layout) {
  std::vector<array> inputs{h, rope_cos, rope_sin, w.in_norm, w.post_norm};
  for (int i = 0; i < kProjections; ++i) {
    const QuantizedLinear& p = projection(w, i);
    LinearSlots& slot = layout.proj[i];
    slot.w = static_cast<int>(inputs.size());
    slot.group_size = p.group_size;
    slot.bits = p.bits;
    slot.act = cpu::parse_activations(p.activations);
    slot.ggml_type = p.ggml_type;
    if (p.ggml_type >= 0) inputs.push_back(p.w);
    else inputs.insert(inputs.end(), {p.w, p.scales, p.biases});
    if (p.bias) {
      slot.bias = static_cast<int>(inputs.size());
      inputs.push_back(*p.bias);
    }
  }
  auto optional_slot = [&](const std::optional<array>& a, int& slot) {
    if (!a) return;
    slot = static_cast<int>(inputs.size());
    inputs.push_back(*a);
  };
  optional_slot(w.q_norm, layout.q_norm);
  optional_slot(w.k_norm, layout.k_norm);
  optional_slot(w.attn_out_norm, layout.attn_out_norm);
  optional_slot(w.mlp_out_norm, layout.mlp_out_norm);
  layout.cache = static_cast<int>(inputs.size());
  return inputs;
}

std::vector<array> make_step(const array& h, std::vector<array> inputs, const Layout& layout,
                             const DecoderStepShape& shape, std::vector<int> offsets, mx::StreamOrDevice s) {
  std::vector<mx::Shape> shapes{h.shape()};
  for (size_t i = layout.cache; i < inputs.size(); ++i) shapes.push_back(inputs[i].shape());
  std::vector<mx::Dtype> types(shapes.size(), mx::float32);
  return array::make_arrays(std::move(shapes), std::move(types),
                            std::make_shared<LmlabDecoderStep>(mx::to_stream(s), layout, shape, std::move(offsets)),
                            std::move(inputs));
}

}  // namespace

bool decoder_step_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                            const array& keys, const array& values, int offset, mx::StreamOrDevice s) {
  return block_is_native(h, w, shape, kDecoderStepMaxRows, s) &&
         cache_is_native(keys, values, h.shape(0), shape, offset, h.shape(1));
}

DecoderStepResult decoder_step(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                               const array& rope_cos, const array& rope_sin, const array& keys,
                               const array& values, int offset, mx::StreamOrDevice s) {
  if (!decoder_step_is_native(h, w, shape, keys, values, offset, s))
    throw std::invalid_argument("[lmlab::nn::decoder_step] unsupported inputs (see decoder_step_is_native)");
  check_tables(rope_cos, rope_sin, {h.shape(1), shape.rope_dims / 2});
  Layout layout;
  std::vector<array> inputs = block_inputs(h, w, rope_cos, rope_sin, layout);
  inputs.insert(inputs.end(), {keys, values});
  auto outs = make_step(h, std::move(inputs), layout, shape, {offset}, s);
  return {outs[0], outs[1], outs[2]};
}

bool decoder_step_rows_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                                 const std::vector<array>& keys, const std::vector<array>& values,
                                 const std::vector<int>& offsets, mx::StreamOrDevice s) {
  if (!block_is_native(h, w, shape, kDecoderStepMaxBatch, s) || h.shape(1) != 1) return false;
  const size_t B = h.shape(0);
  if (keys.size() != B || values.size() != B || offsets.size() != B) return false;
  for (size_t b = 0; b < B; ++b)
    if (!cache_is_native(keys[b], values[b], 1, shape, offsets[b], 1)) return false;
  return true;
}

DecoderRowsResult decoder_step_rows(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                                    const array& rope_cos, const array& rope_sin, const std::vector<array>& keys,
                                    const std::vector<array>& values, const std::vector<int>& offsets,
                                    mx::StreamOrDevice s) {
  if (!decoder_step_rows_is_native(h, w, shape, keys, values, offsets, s))
    throw std::invalid_argument("[lmlab::nn::decoder_step_rows] unsupported inputs (see decoder_step_rows_is_native)");
  const int B = h.shape(0);
  check_tables(rope_cos, rope_sin, {B, shape.rope_dims / 2});
  Layout layout;
  layout.cache_pairs = B;
  std::vector<array> inputs = block_inputs(h, w, rope_cos, rope_sin, layout);
  for (int b = 0; b < B; ++b) inputs.insert(inputs.end(), {keys[b], values[b]});
  auto outs = make_step(h, std::move(inputs), layout, shape, offsets, s);
  DecoderRowsResult r{outs[0], {}, {}};
  for (int b = 0; b < B; ++b) {
    r.keys.push_back(outs[1 + 2 * b]);
    r.values.push_back(outs[2 + 2 * b]);
  }
  return r;
}

}  // namespace lmlab::nn::cpu
