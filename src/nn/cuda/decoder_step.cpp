// nn::cuda::decoder_step: the primitive (LmlabCudaDecoderStep) that adds the
// fused block's kernels to MLX's CUDA graph.
#include "nn/cuda/decoder_step.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/cuda/device.h"
#include "nn/cuda/kernel_params.h"
#include "nn/cuda/qgemv_launch.h"

namespace mx = mlx::core;

namespace lmlab::nn::cuda {

namespace {

// Input slots: h, inv_freq, keys, values, the two block norms, then per
// projection w, scales, biases (and its bias), then the optional q/k norms and
// sandwich norms.
enum Slot { kH, kInvFreq, kKeys, kValues, kInNorm, kPostNorm, kFirstProjection };
enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kProjections };

struct LinearSlots {
  int w = -1, bias = -1;  // scales at w + 1, biases at w + 2
  int bits = 4, group_size = 64;
};

struct Layout {
  LinearSlots proj[kProjections];
  int q_norm = -1, k_norm = -1;
  int attn_out_norm = -1, mlp_out_norm = -1;
};

const QuantizedLinear& projection(const DecoderLayerArrays& w, int i) {
  const QuantizedLinear* all[kProjections] = {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
  return *all[i];
}

const char* type_name(mx::Dtype t) { return t == mx::float16 ? "f16" : "bf16"; }

template <class T>
T* ptr(mx::array& a) {
  return mx::gpu_ptr<T>(a);
}
template <class T>
const T* cptr(const mx::array& a) {
  return mx::gpu_ptr<T>(a);
}

class LmlabCudaDecoderStep : public mx::Primitive {
 public:
  LmlabCudaDecoderStep(mx::Stream stream, Layout layout, DecoderStepShape shape, int offset, float rope_scale)
      : mx::Primitive(stream), layout_(layout), shape_(shape), offset_(offset), rope_scale_(rope_scale) {}

  void eval_cpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn::cuda::decoder_step] GPU only");
  }

  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cu::get_command_encoder(stream());
    mx::cu::device(stream().device).make_current();
    const mx::array& h = in[kH];
    const int B = h.shape(0), L = h.shape(1), D = h.shape(2), M = B * L;
    const int H = shape_.heads, Hk = shape_.kv_heads, Dh = shape_.head_dim;
    const int I = in[layout_.proj[kGate].w].shape(0);
    const int cap = in[kKeys].shape(2);
    const int Lk = offset_ + L;
    // Key ranges of 16 for decode (one warp each, two rounds of key loads:
    // a warp's serial rounds are what a short context's step waits for; 64
    // keys a warp took 21-25 us a layer on an H200), of 256 for prompt rows.
    const int span = M <= 8 ? 16 : 256;
    const int splits = std::clamp((Lk + span - 1) / span, 1, 128);
    const int split_len = (Lk + splits - 1) / splits;
    const size_t t = mx::size_of(h.dtype());

    // Outputs: the new residual stream, and the cache buffers written in place.
    out[0].set_data(device_memory(out[0].nbytes(), enc));
    out[1].copy_shared_buffer(in[kKeys]);
    out[2].copy_shared_buffer(in[kValues]);

    // Scratch for the step's intermediates, held until the graph has run.
    const size_t n_q = static_cast<size_t>(M) * H * Dh, n_kv = static_cast<size_t>(M) * Hk * Dh;
    const size_t sizes[] = {n_q * t,
                            n_kv * t,
                            n_kv * t,
                            n_q * t,
                            n_q * t,
                            static_cast<size_t>(M) * D * t,
                            static_cast<size_t>(M) * I * t,
                            static_cast<size_t>(M) * H * splits * (Dh + 2) * 4,
                            layout_.attn_out_norm >= 0 ? static_cast<size_t>(M) * D * t : 0};
    size_t total = 0, offsets[9];
    for (int i = 0; i < 9; ++i) {
      offsets[i] = total;
      total += (sizes[i] + 255) / 256 * 256;
    }
    mx::array scratch(device_memory(total, enc), {static_cast<int>(total)}, mx::uint8);
    char* base = ptr<char>(scratch);
    void* q = base + offsets[0];
    void* k = base + offsets[1];
    void* v = base + offsets[2];
    void* q_rot = base + offsets[3];
    void* att = base + offsets[4];
    void* h1 = base + offsets[5];
    void* act = base + offsets[6];
    float* partials = reinterpret_cast<float*>(base + offsets[7]);
    void* sublayer = base + offsets[8];  // a sublayer's output before its sandwich norm

    enc.add_temporary(scratch);
    // MLX orders the nodes of its CUDA graph by the arrays registered before
    // each one: every launch names what it reads and writes, the scratch
    // included, so each kernel follows the one before it.
    auto uses = [&](std::initializer_list<int> reads, std::initializer_list<int> outputs) {
      for (int i : reads) enc.set_input_array(in[i]);
      enc.set_input_array(scratch);
      enc.set_output_array(scratch);
      for (int i : outputs) enc.set_output_array(out[i]);
    };
    auto projection_inputs = [&](int p) {
      const LinearSlots& s = layout_.proj[p];
      enc.set_input_array(in[s.w]);
      enc.set_input_array(in[s.w + 1]);
      enc.set_input_array(in[s.w + 2]);
      if (s.bias >= 0) enc.set_input_array(in[s.bias]);
    };

    const std::string ty = type_name(h.dtype());
    auto quant = [&](int p) {
      const LinearSlots& s = layout_.proj[p];
      return QMat{cptr<uint32_t>(in[s.w]), cptr<void>(in[s.w + 1]), cptr<void>(in[s.w + 2]),
                  s.bias >= 0 ? cptr<void>(in[s.bias]) : nullptr, nullptr, in[s.w].shape(0)};
    };
    // One GEMV over all M rows; `first` names the projection whose format
    // (bits, group size) the launch's matrices share.
    auto gemv = [&](QGemvParams p, int K, int first, std::initializer_list<int> outputs = {}) {
      p.M = M;
      add_qgemv(enc, p, K, layout_.proj[first].bits, layout_.proj[first].group_size, h.dtype(),
                [&] { uses({}, outputs); });
    };
    const void* norm_q = layout_.q_norm >= 0 ? cptr<void>(in[layout_.q_norm]) : nullptr;
    const void* norm_k = layout_.k_norm >= 0 ? cptr<void>(in[layout_.k_norm]) : nullptr;

    // A sandwich norm on a sublayer's output (in `sublayer`) and the residual add.
    auto norm_add = [&](int norm, const void* res, void* dst, std::initializer_list<int> outputs) {
      NormAddParams n{sublayer, res, cptr<void>(in[norm]), dst, shape_.norm_eps, shape_.norm_offset, D};
      enc.set_input_array(in[norm]);
      uses({kH}, outputs);
      launch(enc, kernel("lmlab_norm_add_" + ty), dim3(M), dim3(std::min(1024, (D + 31) / 32 * 32)), 0, n);
    };

    // 1. RMSNorm + q, k, v: one launch for each run of matrices in one format
    // (a GGUF may store v in another type than q and k).
    void* const qkv_out[3] = {q, k, v};
    for (int first = kQ; first <= kV;) {
      int last = first;
      while (last < kV && layout_.proj[last + 1].bits == layout_.proj[first].bits &&
             layout_.proj[last + 1].group_size == layout_.proj[first].group_size)
        ++last;
      QGemvParams p{};
      p.x = cptr<void>(h);
      p.x_stride = D;
      p.norm = cptr<void>(in[kInNorm]);
      p.eps = shape_.norm_eps;
      p.norm_offset = shape_.norm_offset;
      p.nmat = last - first + 1;
      for (int j = first; j <= last; ++j) {
        p.mat[j - first] = quant(j);
        p.mat[j - first].out = qkv_out[j - kQ];
        projection_inputs(j);
      }
      p.out_stride = p.mat[0].n;  // read when the run is one matrix
      uses({kH, kInNorm}, {});
      gemv(p, D, first);
      first = last + 1;
    }

    // 2. q/k norms, RoPE, cache write.
    RopeCacheParams r{};
    r.q = q, r.k = k, r.v = v, r.q_out = q_rot;
    r.keys = ptr<void>(out[1]), r.values = ptr<void>(out[2]);
    r.q_norm = norm_q, r.k_norm = norm_k;
    r.inv_freq = cptr<float>(in[kInvFreq]);
    r.eps = shape_.norm_eps, r.norm_offset = shape_.norm_offset, r.mscale = shape_.rope_mscale;
    r.rope_scale = rope_scale_;
    r.heads = H, r.kv_heads = Hk, r.head_dim = Dh, r.rope_dims = shape_.rope_dims;
    r.traditional = shape_.rope_traditional ? 1 : 0;
    r.L = L, r.offset = offset_, r.capacity = cap;
    if (layout_.q_norm >= 0) enc.set_input_array(in[layout_.q_norm]);
    if (layout_.k_norm >= 0) enc.set_input_array(in[layout_.k_norm]);
    uses({kInvFreq, kKeys, kValues}, {1, 2});
    launch(enc, kernel("lmlab_rope_cache_" + ty), dim3((H + 2 * Hk + 3) / 4, M), dim3(128), 0, r);

    // 3-4. Attention over the cache, split over keys, and the merge.
    AttentionParams a{};
    a.q = q_rot, a.keys = ptr<void>(out[1]), a.values = ptr<void>(out[2]), a.partials = partials;
    a.scale = shape_.attn_scale;
    a.heads = H, a.kv_heads = Hk, a.head_dim = Dh;
    a.L = L, a.offset = offset_, a.capacity = cap, a.window = shape_.window;
    a.splits = splits, a.split_len = split_len;
    const std::string dtag = fmt::format("_p{}", Dh <= 32 ? 1 : Dh <= 64 ? 2 : Dh <= 128 ? 4 : 8);
    enc.set_input_array(out[1]);
    enc.set_input_array(out[2]);
    uses({}, {});
    launch(enc, kernel("lmlab_attention_" + ty + dtag), dim3(splits, H, M), dim3(32), 0, a);
    CombineParams c{partials, att, H, Dh, splits};
    uses({}, {});
    launch(enc, kernel("lmlab_combine_" + ty + dtag), dim3(H, M), dim3(32), 0, c);

    // 5. Output projection + residual (through the sandwich norm: its own launch).
    const bool sandwich = layout_.attn_out_norm >= 0;
    QGemvParams o{};
    o.x = att, o.x_stride = static_cast<long>(H) * Dh;
    o.res = sandwich ? nullptr : cptr<void>(h);
    o.out_stride = D;
    o.nmat = 1, o.mode = sandwich ? 0 : 1;
    o.mat[0] = quant(kO);
    o.mat[0].out = sandwich ? sublayer : h1;
    projection_inputs(kO);
    uses({kH}, {});
    gemv(o, H * Dh, kO);
    if (sandwich) norm_add(layout_.attn_out_norm, cptr<void>(h), h1, {});

    // 6. RMSNorm + gate and up + activation.
    QGemvParams g{};
    g.x = h1, g.x_stride = D;
    g.norm = cptr<void>(in[kPostNorm]);
    g.eps = shape_.norm_eps, g.norm_offset = shape_.norm_offset;
    g.out_stride = I;
    g.nmat = 2, g.mode = 2, g.act = shape_.gelu ? 1 : 0;
    g.mat[0] = quant(kGate), g.mat[1] = quant(kUp);
    g.mat[0].out = act;
    projection_inputs(kGate);
    projection_inputs(kUp);
    uses({kPostNorm}, {});
    gemv(g, D, kGate);

    // 7. Down projection + residual.
    QGemvParams d{};
    d.x = act, d.x_stride = I;
    d.res = sandwich ? nullptr : h1;
    d.out_stride = D;
    d.nmat = 1, d.mode = sandwich ? 0 : 1;
    d.mat[0] = quant(kDown);
    d.mat[0].out = sandwich ? sublayer : ptr<void>(out[0]);
    projection_inputs(kDown);
    if (!sandwich) {
      uses({}, {0, 1, 2});
      gemv(d, I, kDown, {0, 1, 2});
      return;
    }
    uses({}, {});
    gemv(d, I, kDown);
    norm_add(layout_.mlp_out_norm, h1, ptr<void>(out[0]), {0, 1, 2});
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&, const std::vector<int>&,
                             const std::vector<mx::array>&) override {
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_step] no derivatives: it is an inference step over a KV cache");
  }
  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override {
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_step] no derivatives: it is an inference step over a KV cache");
  }
  const char* name() const override { return "LmlabCudaDecoderStep"; }
  // Each step writes its own cache positions: never merged with another.
  bool is_equivalent(const mx::Primitive& other) const override { return &other == this; }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[kH].shape(), inputs[kKeys].shape(), inputs[kValues].shape()};
  }

 private:
  Layout layout_;
  DecoderStepShape shape_;
  int offset_;
  float rope_scale_;
};

bool same_vector(const std::optional<array>& a, int n, mx::Dtype t) {
  return !a || (a->dtype() == t && a->ndim() == 1 && a->shape(0) == n);
}

bool on_gpu(const mx::StreamOrDevice& s) { return mx::to_stream(s).device == mx::Device::gpu; }

}  // namespace

bool decoder_step_is_native(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                            const array& keys, const array& values, int offset, mx::StreamOrDevice s) {
  if (!on_gpu(s) || h.ndim() != 3 || (h.dtype() != mx::float16 && h.dtype() != mx::bfloat16)) return false;
  const mx::Dtype t = h.dtype();
  const int B = h.shape(0), L = h.shape(1), D = h.shape(2);
  const int H = shape.heads, Hk = shape.kv_heads, Dh = shape.head_dim;
  if (B < 1 || L < 1 || B * L > kMaxRows || H < 1 || Hk < 1 || H % Hk != 0) return false;
  if (Dh < 1 || Dh > 256) return false;
  if (shape.rope_dims < 2 || shape.rope_dims % 2 != 0 || shape.rope_dims > Dh) return false;
  if (w.attn_out_norm.has_value() != w.mlp_out_norm.has_value()) return false;  // sandwich norms come in pairs
  if (keys.dtype() != t || values.dtype() != t || keys.ndim() != 4 || keys.shape() != values.shape()) return false;
  if (!keys.flags().row_contiguous || !values.flags().row_contiguous) return false;
  if (keys.shape(0) != B || keys.shape(1) != Hk || keys.shape(3) != Dh) return false;
  if (offset < 0 || offset + L > keys.shape(2)) return false;
  if (!same_vector(w.in_norm, D, t) || !same_vector(w.post_norm, D, t)) return false;
  if (!same_vector(w.q_norm, Dh, t) || !same_vector(w.k_norm, Dh, t)) return false;
  if (!same_vector(w.attn_out_norm, D, t) || !same_vector(w.mlp_out_norm, D, t)) return false;
  const int I = w.gate.w.ndim() == 2 ? w.gate.w.shape(0) : -1;
  const int in_dims[kProjections] = {D, D, D, H * Dh, D, D, I};
  const int out_dims[kProjections] = {H * Dh, Hk * Dh, Hk * Dh, D, I, I, D};
  // The gated launch reads gate and up in one format (q, k and v may differ:
  // each run of one format is a launch).
  if (w.gate.bits != w.up.bits || w.gate.group_size != w.up.group_size) return false;
  for (int i = 0; i < kProjections; ++i) {
    const QuantizedLinear& p = projection(w, i);
    if (p.ggml_type >= 0 || (p.bits != 4 && p.bits != 8)) return false;  // nn::cuda::gemv_form repacks the others
    if (p.group_size != 32 && p.group_size != 64 && p.group_size != 128 && !(p.bits == 8 && p.group_size == 16))
      return false;
    if (p.w.dtype() != mx::uint32 || p.w.ndim() != 2 || p.w.shape(0) != out_dims[i]) return false;
    if (in_dims[i] % p.group_size != 0 || static_cast<long>(p.w.shape(1)) * 32 / p.bits != in_dims[i]) return false;
    if (p.scales.dtype() != t || p.biases.dtype() != t) return false;
    if (p.scales.shape() != mx::Shape{out_dims[i], in_dims[i] / p.group_size} || p.biases.shape() != p.scales.shape())
      return false;
    if (!p.w.flags().row_contiguous || !p.scales.flags().row_contiguous || !p.biases.flags().row_contiguous) return false;
    if (p.bias && !same_vector(p.bias, out_dims[i], t)) return false;
  }
  // The GEMV stages a launch's rows in shared memory (one row at least).
  for (int i = 0; i < kProjections; ++i)
    if (qgemv_smem(1, in_dims[i], projection(w, i).bits) > kQGemvSmemLimit) return false;
  return h.flags().row_contiguous;
}

DecoderStepResult decoder_step(const array& h, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                               const array& inv_freq, float rope_scale, const array& keys, const array& values,
                               int offset, mx::StreamOrDevice s) {
  if (!decoder_step_is_native(h, w, shape, keys, values, offset, s))
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_step] unsupported inputs (see decoder_step_is_native)");
  if (inv_freq.dtype() != mx::float32 || inv_freq.ndim() != 1 || inv_freq.shape(0) != shape.rope_dims / 2)
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_step] inv_freq must be float32 (rope_dims / 2)");
  std::vector<array> inputs{h, inv_freq, keys, values, w.in_norm, w.post_norm};
  Layout layout;
  for (int i = 0; i < kProjections; ++i) {
    const QuantizedLinear& p = projection(w, i);
    layout.proj[i].bits = p.bits;
    layout.proj[i].group_size = p.group_size;
    layout.proj[i].w = static_cast<int>(inputs.size());
    inputs.insert(inputs.end(), {p.w, p.scales, p.biases});
    if (p.bias) {
      layout.proj[i].bias = static_cast<int>(inputs.size());
      inputs.push_back(*p.bias);
    }
  }
  if (w.q_norm) {
    layout.q_norm = static_cast<int>(inputs.size());
    inputs.push_back(*w.q_norm);
  }
  if (w.k_norm) {
    layout.k_norm = static_cast<int>(inputs.size());
    inputs.push_back(*w.k_norm);
  }
  if (w.attn_out_norm) {
    layout.attn_out_norm = static_cast<int>(inputs.size());
    inputs.push_back(*w.attn_out_norm);
    layout.mlp_out_norm = static_cast<int>(inputs.size());
    inputs.push_back(*w.mlp_out_norm);
  }
  auto outs = array::make_arrays({h.shape(), keys.shape(), values.shape()}, {h.dtype(), keys.dtype(), values.dtype()},
                                 std::make_shared<LmlabCudaDecoderStep>(mx::to_stream(s), layout, shape, offset,
                                                                        rope_scale),
                                 std::move(inputs));
  return {outs[0], outs[1], outs[2]};
}

}  // namespace lmlab::nn::cuda
