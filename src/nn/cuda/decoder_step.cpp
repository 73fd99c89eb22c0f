// nn::cuda::decoder_step and decoder_stack: the primitives that run the fused
// block's kernels, one layer's through MLX's CUDA graph (LmlabCudaDecoderStep)
// or a decode step's every layer from a graph lmlab keeps (LmlabCudaDecoderStack).
#include "nn/cuda/decoder_step.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/cuda/device.h"
#include "nn/cuda/kernel_params.h"
#include "nn/cuda/qgemv_launch.h"
#include "nn/cuda/step_graph.h"

namespace mx = mlx::core;

namespace lmlab::nn::cuda {

namespace {

enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kProjections };

struct LinearSlots {
  int w = -1, bias = -1;  // scales at w + 1, biases at w + 2
  int bits = 4, group_size = 64;
};

// Where one layer's arrays sit in a primitive's inputs, and its shape.
struct Layout {
  int inv_freq = -1, keys = -1, values = -1, in_norm = -1, post_norm = -1;
  LinearSlots proj[kProjections];
  int q_norm = -1, k_norm = -1;
  int attn_out_norm = -1, mlp_out_norm = -1;
  DecoderStepShape shape;
  float rope_scale = 1.0f;
};

const QuantizedLinear& projection(const DecoderLayerArrays& w, int i) {
  const QuantizedLinear* all[kProjections] = {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
  return *all[i];
}

// Appends a layer's arrays to a primitive's inputs.
Layout append_layer(std::vector<array>& inputs, const DecoderLayerArrays& w, const DecoderStepShape& shape,
                    const array& inv_freq, float rope_scale, const array& keys, const array& values) {
  Layout layout;
  layout.shape = shape;
  layout.rope_scale = rope_scale;
  auto slot = [&](const array& a) {
    inputs.push_back(a);
    return static_cast<int>(inputs.size()) - 1;
  };
  layout.inv_freq = slot(inv_freq);
  layout.keys = slot(keys);
  layout.values = slot(values);
  layout.in_norm = slot(w.in_norm);
  layout.post_norm = slot(w.post_norm);
  for (int i = 0; i < kProjections; ++i) {
    const QuantizedLinear& p = projection(w, i);
    layout.proj[i].bits = p.bits;
    layout.proj[i].group_size = p.group_size;
    layout.proj[i].w = slot(p.w);
    slot(p.scales);
    slot(p.biases);
    if (p.bias) layout.proj[i].bias = slot(*p.bias);
  }
  if (w.q_norm) layout.q_norm = slot(*w.q_norm);
  if (w.k_norm) layout.k_norm = slot(*w.k_norm);
  if (w.attn_out_norm) {
    layout.attn_out_norm = slot(*w.attn_out_norm);
    layout.mlp_out_norm = slot(*w.mlp_out_norm);
  }
  return layout;
}

const char* type_name(mx::Dtype t) { return t == mx::float16 ? "f16" : "bf16"; }

template <class T>
const T* cptr(const mx::array& a) {
  return mx::gpu_ptr<T>(a);
}

// Key ranges of 16 for decode (one warp each, two rounds of key loads: a
// warp's serial rounds are what a short context's step waits for; 64 keys a
// warp took 21-25 us a layer on an H200), of 256 for prompt rows.
constexpr int kMaxSplits = 128;
int key_splits(int M, int Lk) {
  const int span = M <= 8 ? 16 : 256;
  return std::clamp((Lk + span - 1) / span, 1, kMaxSplits);
}

// The step's intermediates in one scratch buffer.
struct Scratch {
  enum Part { kQ, kK, kV, kQRot, kAtt, kH1, kAct, kPartials, kSublayer, kParts };
  size_t offset[kParts] = {};
  size_t total = 0;

  Scratch(int M, int D, int I, const DecoderStepShape& s, int splits, bool sandwich, size_t t) {
    const size_t n_q = static_cast<size_t>(M) * s.heads * s.head_dim, n_kv = static_cast<size_t>(M) * s.kv_heads * s.head_dim;
    const size_t sizes[kParts] = {n_q * t,
                                  n_kv * t,
                                  n_kv * t,
                                  n_q * t,
                                  n_q * t,
                                  static_cast<size_t>(M) * D * t,
                                  static_cast<size_t>(M) * I * t,
                                  static_cast<size_t>(M) * s.heads * splits * (s.head_dim + 2) * 4,
                                  sandwich ? static_cast<size_t>(M) * D * t : 0};
    for (int i = 0; i < kParts; ++i) {
      offset[i] = total;
      total += (sizes[i] + 255) / 256 * 256;
    }
  }
};

// One layer's launches: the residual stream x (M = B·L rows of D) in, y out;
// keys and values are the layer's cache buffers, written at offset..offset+L-1.
// Every pointer is the caller's: the launches may be replayed (StepGraph).
struct LayerIO {
  const void* x;
  void* y;
  void* keys;
  void* values;
  char* scratch;
  unsigned* counters = nullptr;  // (M, H) zeros: attention merges its own ranges (no combine launch)
  bool prefetch = false;         // GEMVs ask for their first weights before waiting (overlapping launches)
};

// `step` (nullable): the device's StepValues, which a replayed step's launches
// read instead of their parameters, so that those stay the same from step to step.
void record_layer(Launches& to, const std::vector<mx::array>& in, const Layout& lay, int B, int L, int offset,
                  const LayerIO& io, const Scratch& sc, mx::Dtype dtype, const int* step = nullptr) {
  const DecoderStepShape& shape = lay.shape;
  const int M = B * L, D = in[lay.in_norm].shape(0);
  const int H = shape.heads, Hk = shape.kv_heads, Dh = shape.head_dim;
  const int I = in[lay.proj[kGate].w].shape(0);
  const int cap = in[lay.keys].shape(2);
  const int Lk = offset + L;
  const int splits = key_splits(M, Lk);
  const int split_len = (Lk + splits - 1) / splits;
  auto part = [&](Scratch::Part p) { return io.scratch + sc.offset[p]; };
  void* q = part(Scratch::kQ);
  void* k = part(Scratch::kK);
  void* v = part(Scratch::kV);
  void* q_rot = part(Scratch::kQRot);
  void* att = part(Scratch::kAtt);
  void* h1 = part(Scratch::kH1);
  void* act = part(Scratch::kAct);
  float* partials = reinterpret_cast<float*>(part(Scratch::kPartials));
  void* sublayer = part(Scratch::kSublayer);  // a sublayer's output before its sandwich norm

  const std::string ty = type_name(dtype);
  auto quant = [&](int p) {
    const LinearSlots& s = lay.proj[p];
    return QMat{cptr<uint32_t>(in[s.w]), cptr<void>(in[s.w + 1]), cptr<void>(in[s.w + 2]),
                s.bias >= 0 ? cptr<void>(in[s.bias]) : nullptr, nullptr, in[s.w].shape(0)};
  };
  // One GEMV over all M rows; `first` names the projection whose format
  // (bits, group size) the launch's matrices share.
  auto gemv = [&](QGemvParams p, int K, int first) {
    p.M = M;
    p.prefetch = io.prefetch ? 1 : 0;
    add_qgemv(to, p, K, lay.proj[first].bits, lay.proj[first].group_size, dtype);
  };
  const void* norm_q = lay.q_norm >= 0 ? cptr<void>(in[lay.q_norm]) : nullptr;
  const void* norm_k = lay.k_norm >= 0 ? cptr<void>(in[lay.k_norm]) : nullptr;

  // A sandwich norm on a sublayer's output (in `sublayer`) and the residual add.
  auto norm_add = [&](int norm, const void* res, void* dst) {
    NormAddParams n{sublayer, res, cptr<void>(in[norm]), dst, shape.norm_eps, shape.norm_offset, D};
    launch(to, kernel("lmlab_norm_add_" + ty), dim3(M), dim3(std::min(1024, (D + 31) / 32 * 32)), 0, n);
  };

  // 1. RMSNorm + q, k, v: one launch for each run of matrices in one format
  // (a GGUF may store v in another type than q and k).
  void* const qkv_out[3] = {q, k, v};
  for (int first = kQ; first <= kV;) {
    int last = first;
    while (last < kV && lay.proj[last + 1].bits == lay.proj[first].bits &&
           lay.proj[last + 1].group_size == lay.proj[first].group_size)
      ++last;
    QGemvParams p{};
    p.x = io.x;
    p.x_stride = D;
    p.norm = cptr<void>(in[lay.in_norm]);
    p.eps = shape.norm_eps;
    p.norm_offset = shape.norm_offset;
    p.nmat = last - first + 1;
    for (int j = first; j <= last; ++j) {
      p.mat[j - first] = quant(j);
      p.mat[j - first].out = qkv_out[j - kQ];
    }
    p.out_stride = p.mat[0].n;  // read when the run is one matrix
    gemv(p, D, first);
    first = last + 1;
  }

  // 2. q/k norms, RoPE, cache write.
  RopeCacheParams r{};
  r.q = q, r.k = k, r.v = v, r.q_out = q_rot;
  r.keys = io.keys, r.values = io.values;
  r.q_norm = norm_q, r.k_norm = norm_k;
  r.inv_freq = cptr<float>(in[lay.inv_freq]);
  r.eps = shape.norm_eps, r.norm_offset = shape.norm_offset, r.mscale = shape.rope_mscale;
  r.rope_scale = lay.rope_scale;
  r.heads = H, r.kv_heads = Hk, r.head_dim = Dh, r.rope_dims = shape.rope_dims;
  r.traditional = shape.rope_traditional ? 1 : 0;
  r.L = L, r.offset = step ? 0 : offset, r.capacity = cap;
  r.step = step;
  launch(to, kernel("lmlab_rope_cache_" + ty), dim3((H + 2 * Hk + 3) / 4, M), dim3(128), 0, r);

  // 3-4. Attention over the cache, split over keys, and the merge.
  AttentionParams a{};
  a.q = q_rot, a.keys = io.keys, a.values = io.values, a.partials = partials;
  a.scale = shape.attn_scale;
  a.heads = H, a.kv_heads = Hk, a.head_dim = Dh;
  a.L = L, a.offset = step ? 0 : offset, a.capacity = cap, a.window = shape.window;
  a.splits = step ? 0 : splits, a.split_len = step ? 0 : split_len;
  a.step = step;
  a.counters = io.counters, a.out = att;
  const std::string dtag = fmt::format("_p{}", Dh <= 32 ? 1 : Dh <= 64 ? 2 : Dh <= 128 ? 4 : 8);
  // A replayed step's grid holds the ranges of a full cache (those past the
  // step's splits return at once): it changes only when the cache grows.
  const int grid_splits = step ? key_splits(M, cap) : splits;
  launch(to, kernel("lmlab_attention_" + ty + dtag), dim3(grid_splits, H, M), dim3(32), 0, a);
  if (!io.counters) {
    CombineParams c{partials, att, H, Dh, step ? 0 : splits, step};
    launch(to, kernel("lmlab_combine_" + ty + dtag), dim3(H, M), dim3(32), 0, c);
  }

  // 5. Output projection + residual (through the sandwich norm: its own launch).
  const bool sandwich = lay.attn_out_norm >= 0;
  QGemvParams o{};
  o.x = att, o.x_stride = static_cast<long>(H) * Dh;
  o.res = sandwich ? nullptr : io.x;
  o.out_stride = D;
  o.nmat = 1, o.mode = sandwich ? 0 : 1;
  o.mat[0] = quant(kO);
  o.mat[0].out = sandwich ? sublayer : h1;
  gemv(o, H * Dh, kO);
  if (sandwich) norm_add(lay.attn_out_norm, io.x, h1);

  // 6. RMSNorm + gate and up + activation.
  QGemvParams g{};
  g.x = h1, g.x_stride = D;
  g.norm = cptr<void>(in[lay.post_norm]);
  g.eps = shape.norm_eps, g.norm_offset = shape.norm_offset;
  g.out_stride = I;
  g.nmat = 2, g.mode = 2, g.act = shape.gelu ? 1 : 0;
  g.mat[0] = quant(kGate), g.mat[1] = quant(kUp);
  g.mat[0].out = act;
  gemv(g, D, kGate);

  // 7. Down projection + residual.
  QGemvParams d{};
  d.x = act, d.x_stride = I;
  d.res = sandwich ? nullptr : h1;
  d.out_stride = D;
  d.nmat = 1, d.mode = sandwich ? 0 : 1;
  d.mat[0] = quant(kDown);
  d.mat[0].out = sandwich ? sublayer : io.y;
  gemv(d, I, kDown);
  if (sandwich) norm_add(lay.mlp_out_norm, h1, io.y);
}

Scratch layer_scratch(const std::vector<mx::array>& in, const Layout& lay, int M, int splits) {
  return Scratch(M, in[lay.in_norm].shape(0), in[lay.proj[kGate].w].shape(0), lay.shape, splits,
                 lay.attn_out_norm >= 0, mx::size_of(in[lay.in_norm].dtype()));
}

class LmlabCudaDecoderStep : public mx::Primitive {
 public:
  LmlabCudaDecoderStep(mx::Stream stream, Layout layout, int offset)
      : mx::Primitive(stream), layout_(layout), offset_(offset) {}

  void eval_cpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn::cuda::decoder_step] GPU only");
  }

  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cu::get_command_encoder(stream());
    mx::cu::device(stream().device).make_current();
    const mx::array& h = in[0];
    const int B = h.shape(0), L = h.shape(1), M = B * L;
    // Outputs: the new residual stream, and the cache buffers written in place.
    out[0].set_data(device_memory(out[0].nbytes(), enc));
    out[1].copy_shared_buffer(in[layout_.keys]);
    out[2].copy_shared_buffer(in[layout_.values]);
    // Scratch for the step's intermediates, held until the graph has run.
    const Scratch sc = layer_scratch(in, layout_, M, key_splits(M, offset_ + L));
    mx::array scratch(device_memory(sc.total, enc), {static_cast<int>(sc.total)}, mx::uint8);
    enc.add_temporary(scratch);
    EncoderLaunches to(enc, in, out, &scratch);
    record_layer(to, in, layout_, B, L, offset_,
                 LayerIO{cptr<void>(h), mx::gpu_ptr<void>(out[0]), mx::gpu_ptr<void>(out[1]),
                         mx::gpu_ptr<void>(out[2]), mx::gpu_ptr<char>(scratch)},
                 sc, h.dtype());
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
    return {inputs[0].shape(), inputs[layout_.keys].shape(), inputs[layout_.values].shape()};
  }

 private:
  Layout layout_;
  int offset_;
};

// Whether a replayed stack's launches overlap (StepGraph): on compute
// capability 9.x, whose machine code the fatbin carries with each kernel's
// wait (other devices run the PTX of 8.0, which has none).
// LMLAB_GPU_OVERLAP=0 turns it off, for comparisons.
bool overlap_launches(int device) {
  const char* e = std::getenv("LMLAB_GPU_OVERLAP");
  if (e && std::string_view(e) == "0") return false;
  CUdevice d = 0;
  int major = 0;
  return cuDeviceGet(&d, device) == CUDA_SUCCESS &&
         cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d) == CUDA_SUCCESS && major == 9;
}

// With LMLAB_GPU_PREFETCH=1 the GEMVs of overlapping launches ask for their
// first weights early. Off by default: on one H200 it cost the 8B shape 9%
// and Gemma 3 270M 10% of their decode rate (docs/gpu.md, Run 11).
bool prefetch_weights() {
  static const bool on = [] {
    const char* e = std::getenv("LMLAB_GPU_PREFETCH");
    return e && std::string_view(e) == "1";
  }();
  return on;
}

// The StepGraph of a decode stack: one per model shape and stream, kept for
// the process (a step of another shape or model records its own).
StepGraph& stack_graph(const std::vector<mx::array>& in, const std::vector<Layout>& layers, int M, mx::Stream s) {
  using Key = std::tuple<int, int, uintptr_t, size_t, int, int>;
  static std::mutex mutex;
  static auto* graphs = new std::map<Key, std::unique_ptr<StepGraph>>;  // outlives every step (never destroyed)
  const Key key{s.device.index, s.index, reinterpret_cast<uintptr_t>(cptr<void>(in[layers[0].proj[kQ].w])),
                layers.size(), M, static_cast<int>(in[0].dtype().val())};
  std::lock_guard lock(mutex);
  auto& g = (*graphs)[key];
  if (!g) {
    // A few models at once at most; a process that walks through many (a
    // sweep) drops the others' graphs.
    if (graphs->size() > 16)
      for (auto it = graphs->begin(); it != graphs->end();)
        it = it->first == key ? std::next(it) : graphs->erase(it);
    g = std::make_unique<StepGraph>(overlap_launches(s.device.index));
  }
  return *g;
}

// The stack's MLX inputs are the residual stream, the rotations and the
// caches; the weights (hundreds of arrays) are held by the primitive instead,
// evaluated before it is made, and kept alive as the encoder's temporaries
// until the step has run: MLX copies a primitive's inputs into every output's
// description, and the stack has two outputs a layer.
class LmlabCudaDecoderStack : public mx::Primitive {
 public:
  LmlabCudaDecoderStack(mx::Stream stream, std::vector<Layout> layers, std::vector<array> all, int offset)
      : mx::Primitive(stream), layers_(std::move(layers)), all_(std::move(all)), offset_(offset) {}

  void eval_cpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn::cuda::decoder_stack] GPU only");
  }

  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cu::get_command_encoder(stream());
    mx::cu::device(stream().device).make_current();
    const mx::array& h = in[0];
    const int B = h.shape(0), L = h.shape(1), M = B * L, D = h.shape(2);
    const size_t row_bytes = static_cast<size_t>(M) * D * mx::size_of(h.dtype());
    out[0].set_data(device_memory(out[0].nbytes(), enc));
    for (size_t l = 0; l < layers_.size(); ++l) {
      out[1 + 2 * l].copy_shared_buffer(all_[layers_[l].keys]);
      out[2 + 2 * l].copy_shared_buffer(all_[layers_[l].values]);
    }
    for (const mx::array& a : all_) enc.add_temporary(a);
    // The scratch (the largest layer's, with room for every key range), two
    // buffers the layers pass the residual stream through, the step's values
    // and the attention's counters (zeroed once, left zero by each step), kept
    // by the graph.
    size_t total = 0;
    int heads = 0;
    for (const Layout& lay : layers_) {
      total = std::max(total, layer_scratch(all_, lay, M, kMaxSplits).total);
      heads = std::max(heads, lay.shape.heads);
    }
    const size_t pass = (row_bytes + 255) / 256 * 256;
    const size_t counter_bytes = static_cast<size_t>(M) * heads * sizeof(unsigned);
    StepGraph& graph = stack_graph(all_, layers_, M, stream());
    std::lock_guard lock(graph.mutex);
    CUstream cs = enc.stream();
    char* base = static_cast<char*>(graph.scratch(total + 2 * pass + 256 + counter_bytes, cs));
    char* stream_bufs[2] = {base + total, base + total + pass};
    int* step = reinterpret_cast<int*>(base + total + 2 * pass);
    auto* counters = reinterpret_cast<unsigned*>(base + total + 2 * pass + 256);
    // What MLX has queued so far (the embedding) goes first; the stack then
    // follows on the same stream, and what MLX queues next (the head) after.
    enc.commit();
    graph.begin();
    const int Lk = offset_ + L, splits = key_splits(M, Lk);
    launch(graph, kernel("lmlab_set_step"), dim3(1), dim3(32), 0,
           StepValues{step, offset_, splits, (Lk + splits - 1) / splits});
    for (size_t l = 0; l < layers_.size(); ++l) {
      const Layout& lay = layers_[l];
      const bool first = l == 0, last = l + 1 == layers_.size();
      const LayerIO io{first ? cptr<void>(h) : stream_bufs[l % 2],
                       last ? mx::gpu_ptr<void>(out[0]) : stream_bufs[(l + 1) % 2],
                       mx::gpu_ptr<void>(out[1 + 2 * l]), mx::gpu_ptr<void>(out[2 + 2 * l]), base, counters,
                       graph.overlapped() && prefetch_weights()};
      record_layer(graph, all_, lay, B, L, offset_, io, layer_scratch(all_, lay, M, kMaxSplits), h.dtype(), step);
    }
    graph.launch(cs);
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&, const std::vector<int>&,
                             const std::vector<mx::array>&) override {
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_stack] no derivatives: it is an inference step over a KV cache");
  }
  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override {
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_stack] no derivatives: it is an inference step over a KV cache");
  }
  const char* name() const override { return "LmlabCudaDecoderStack"; }
  bool is_equivalent(const mx::Primitive& other) const override { return &other == this; }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    std::vector<mx::Shape> shapes{inputs[0].shape()};
    for (const Layout& lay : layers_) {
      shapes.push_back(all_[lay.keys].shape());
      shapes.push_back(all_[lay.values].shape());
    }
    return shapes;
  }

 private:
  std::vector<Layout> layers_;
  std::vector<array> all_;  // every array the layouts name (the inputs among them)
  int offset_;
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
  std::vector<array> inputs{h};
  Layout layout = append_layer(inputs, w, shape, inv_freq, rope_scale, keys, values);
  auto outs = array::make_arrays({h.shape(), keys.shape(), values.shape()}, {h.dtype(), keys.dtype(), values.dtype()},
                                 std::make_shared<LmlabCudaDecoderStep>(mx::to_stream(s), layout, offset),
                                 std::move(inputs));
  return {outs[0], outs[1], outs[2]};
}

bool decoder_stack_is_native(const array& h, const std::vector<StackLayer>& layers, int offset, mx::StreamOrDevice s) {
  if (layers.empty() || h.ndim() != 3 || h.shape(1) != 1 || h.shape(0) > kMaxStackRows) return false;
  for (const StackLayer& l : layers) {
    if (!decoder_step_is_native(h, l.w, l.shape, l.keys, l.values, offset, s)) return false;
    if (l.inv_freq.dtype() != mx::float32 || l.inv_freq.ndim() != 1 || l.inv_freq.shape(0) != l.shape.rope_dims / 2)
      return false;
    if (l.w.in_norm.shape(0) != h.shape(2)) return false;
  }
  return true;
}

DecoderStackResult decoder_stack(const array& h, const std::vector<StackLayer>& layers, int offset,
                                 mx::StreamOrDevice s) {
  if (!decoder_stack_is_native(h, layers, offset, s))
    throw std::invalid_argument("[lmlab::nn::cuda::decoder_stack] unsupported inputs (see decoder_stack_is_native)");
  std::vector<array> all{h};
  std::vector<Layout> layouts;
  std::vector<mx::Shape> shapes{h.shape()};
  std::vector<mx::Dtype> dtypes{h.dtype()};
  for (const StackLayer& l : layers) {
    layouts.push_back(append_layer(all, l.w, l.shape, l.inv_freq, l.rope_scale, l.keys, l.values));
    shapes.insert(shapes.end(), {l.keys.shape(), l.values.shape()});
    dtypes.insert(dtypes.end(), {l.keys.dtype(), l.values.dtype()});
  }
  // MLX's inputs: what this step's graph computes or writes; every other array
  // (the weights) is evaluated now.
  std::vector<array> inputs{h}, pending;
  std::vector<bool> is_input(all.size(), false);
  is_input[0] = true;
  for (const Layout& lay : layouts)
    for (int i : {lay.inv_freq, lay.keys, lay.values}) {
      inputs.push_back(all[i]);
      is_input[i] = true;
    }
  for (size_t i = 0; i < all.size(); ++i)
    if (!is_input[i] && !all[i].is_available()) pending.push_back(all[i]);
  if (!pending.empty()) mx::eval(pending);
  auto outs = array::make_arrays(
      std::move(shapes), dtypes,
      std::make_shared<LmlabCudaDecoderStack>(mx::to_stream(s), std::move(layouts), std::move(all), offset),
      std::move(inputs));
  DecoderStackResult r{outs[0], {}, {}};
  for (size_t l = 0; l < layers.size(); ++l) {
    r.keys.push_back(outs[1 + 2 * l]);
    r.values.push_back(outs[2 + 2 * l]);
  }
  return r;
}

}  // namespace lmlab::nn::cuda
