// nn::DecoderBlock: the one transformer block every family is built from
// (mlx-lm's TransformerBlock in llama.py, gemma3_text.py, qwen3.py ... as one
// configurable class). A family describes its blocks with a BlockSpec (norm
// placement, q/k norms, activation, MLP kind, attention window, RoPE) and
// BlockNames (its checkpoint's module names); the block reads its weights from
// the Weights tree by those names on every call.
//
// The block chooses how to run itself: one fused node (nn::cpu::decoder_step,
// nn::cuda::decoder_step) when the spec, device and dtype allow and nothing
// needs the intermediate steps (no hooks, no adapters, not training), else the
// composed MLX ops. On a GPU, a decode step whose every block takes the fused
// step runs all of them as one (DecoderBlock::fused_stack).
//
// Shapes: B batch, L new tokens, D hidden, H/Hk query/key-value heads, Dh head dim.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <mlx/distributed/distributed.h>

#include "lmlab/nn.h"
#include "lmlab/weights.h"
#include "nn/cuda/decoder_step.h"
#include "nn/fused_step.h"

namespace lmlab::nn {

using mlx::core::array;

enum class Activation { silu, gelu_tanh };  // SwiGLU or GeGLU (gelu, tanh approximation)
enum class MlpKind {
  dense,  // gated MLP: down(act(gate x) · up x)
  moe,    // mixture of experts: a router picks top_k gated MLPs per token (nn/moe.h)
};

// How router logits become the selected experts' weights (mlx-lm's order, so
// the same experts win and the weights round the same way).
enum class Routing {
  topk_softmax,  // Mixtral: top-k of the logits, softmax over those k
  softmax_topk,  // Qwen3-MoE: softmax over all experts, then top-k (renormalised if norm_topk_prob)
};

struct MoeSpec {
  int experts = 0;  // E
  int top_k = 0;    // experts per token
  int intermediate = 0;  // I, each expert's hidden size
  Routing routing = Routing::topk_softmax;
  bool norm_topk_prob = false;  // softmax_topk: divide the k probabilities by their sum
};

struct BlockSpec {
  int hidden = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-6f;
  float norm_offset = 0.0f;     // RMSNorm scales by (offset + weight): 1 in Gemma
  // Additive biases the checkpoint must have (and may not have otherwise):
  // on q, k, v (Qwen2, Llama's attention_bias), on o (attention_bias), on the MLP (mlp_bias).
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  bool qk_norm = false;         // per-head RMSNorm on q and k (Qwen3, Gemma 3)
  bool sandwich_norms = false;  // norms on the attention and MLP outputs too (Gemma 2/3)
  Activation activation = Activation::silu;
  MlpKind mlp = MlpKind::dense;
  MoeSpec moe;                  // with MlpKind::moe
  int sliding_window = 0;       // > 0: a query sees only the last `sliding_window` positions
  float attn_scale = 0.0f;      // 0: 1/sqrt(head_dim)
  // Shared by the blocks that use the same rotation, so a forward pass builds
  // each rotary table once.
  std::shared_ptr<const RoPE> rope;
  // Tensor parallelism (models/shard.cpp): this rank holds `heads`/`kv_heads`
  // of the model's heads and a slice of the MLP's columns; the o and down
  // projections' partial products are all-summed over the group (their biases
  // added once, after the sum), so the block's output is the whole model's.
  std::optional<mlx::core::distributed::Group> group;

  float scale() const;
};

// Module names of one block in the checkpoint's (Hugging Face) naming.
// attn_out_norm and mlp_out_norm are used with sandwich_norms, q_norm/k_norm with
// qk_norm. Hook names follow the weights: "layers.N.self_attn", ...
// In an MoE block gate, up and down name the experts' stacked projections
// (E, out, in), as mlx-lm's SwitchGLU stores them, and router the (E, D) gate.
struct BlockNames {
  std::string in_norm, attn_out_norm, mlp_norm, mlp_out_norm;
  std::string q, k, v, o, q_norm, k_norm;
  std::string gate, up, down, router;
  std::string hook_attn, hook_mlp, hook_residual;

  // Llama's names under model.layers.N: input_layernorm, self_attn.{q,k,v,o}_proj,
  // self_attn.{q,k}_norm, post_attention_layernorm (the MLP's norm), mlp.*_proj.
  static BlockNames llama(int layer);
  // The seven projections, in the order q, k, v, o, gate, up, down.
  std::vector<const std::string*> projections() const;
};

// What the blocks of one forward pass share.
struct ForwardState {
  KVCache* cache = nullptr;
  int offset = 0;          // position of the first new token
  Hooks* hooks = nullptr;  // capture/edit of activations (forces the composed path)
  bool training = false;   // adapter dropout on (forces the composed path)
  bool fused = true;       // false: always the composed path
  // Rotary tables of the fused steps, one per distinct RoPE, built on first use:
  // cos/sin of the new positions (CPU), angular frequencies (GPU).
  std::vector<std::pair<const RoPE*, std::pair<array, array>>> rope_tables;
  std::vector<std::pair<const RoPE*, array>> rope_frequencies;
};

// What the blocks of one batched decode step share (Model::decode_rows): B
// sequences of one new token each, each with its own cache and position.
struct RowsState {
  std::vector<KVCache*> caches;  // one per sequence
  bool training = false;         // forces the composed path, as in ForwardState
  bool fused = true;
  // The composed path runs each sequence through operator() with its own state.
  std::vector<ForwardState> rows;
  // Rotary tables of the fused step, (B, rope_dims/2) each, one per distinct RoPE.
  std::vector<std::pair<const RoPE*, std::pair<array, array>>> rope_tables;

  RowsState(std::vector<KVCache*> caches, bool training, bool fused);
  std::vector<int> offsets() const;
};

class DecoderBlock {
 public:
  DecoderBlock(int layer, BlockSpec spec, BlockNames names);

  // h: (B, L, D), the residual stream → the block's output (B, L, D).
  array operator()(const Weights& w, const array& h, ForwardState& st) const;
  // h: (B, 1, D), one new token of each of B sequences → (B, 1, D). One fused
  // CPU step for all of them when it applies (cpu::decoder_step_rows), else each
  // sequence through operator() with its own state.
  array decode_rows(const Weights& w, const array& h, RowsState& st) const;
  // Checks that every tensor the block reads is present with the spec's shape
  // (throws std::invalid_argument naming the tensor, its shape and the expected one).
  void check(const Weights& w) const;

  // A decode step (one new token a row) through all `blocks` as one GPU
  // primitive (nn::cuda::decoder_stack), when every block would take the fused
  // GPU step and gpu_stack_enabled(); else nullopt (each block runs on its own).
  static std::optional<array> fused_stack(const std::vector<DecoderBlock>& blocks, const Weights& w, const array& h,
                                          ForwardState& st);

  int layer() const { return layer_; }
  const BlockSpec& spec() const { return spec_; }
  const BlockNames& names() const { return names_; }

 private:
  array norm(const Weights& w, const std::string& name, const array& x) const;
  array attention(const Weights& w, const array& x, ForwardState& st) const;
  array mlp(const Weights& w, const array& x, ForwardState& st) const;
  // x through a row-split projection (o, down): the sum over the group's ranks.
  array project_to_all(const Weights& w, const std::string& name, const array& x, bool training) const;
  // Whether hooks see this layer's internals (never under tensor parallelism,
  // where a rank holds only some heads: it refuses hooks that ask for them).
  bool hooked(const ForwardState& st) const;
  // The fused step when it applies; nullopt leaves h to the composed block.
  std::optional<array> fused(const Weights& w, const array& h, ForwardState& st) const;
  // Whether h and the state let a fused step run at all (on the GPU or the CPU).
  bool fused_allowed(const array& h, const ForwardState& st, bool gpu) const;
  // The GPU step's inputs (the cache reserved for h's rows), when it takes them.
  std::optional<cuda::StackLayer> gpu_step(const Weights& w, const array& h, ForwardState& st) const;
  // The arrays and shape of a fused step, when every projection is one it takes.
  // raw_blocks: let projections kept as raw GGML blocks in (the CPU step takes them).
  // Kept for the tree it last read (memo_).
  std::optional<std::pair<DecoderLayerArrays, DecoderStepShape>> fused_arrays(const Weights& w, bool raw_blocks) const;
  std::optional<std::pair<DecoderLayerArrays, DecoderStepShape>> read_fused_arrays(const Weights& w,
                                                                                   bool raw_blocks) const;

  int layer_;
  BlockSpec spec_;
  BlockNames names_;
  // fused_arrays' answer for the tree it last read (by Weights::stamp) and its
  // GPU form: a decode step reads them every token.
  struct FusedMemo;
  std::shared_ptr<FusedMemo> memo_;
};

// Whether GPU decode steps run as one stack when they can (on unless the
// environment sets LMLAB_GPU_STACK=0); tests and benchmarks compare both.
bool gpu_stack_enabled();
void set_gpu_stack_enabled(bool on);

// RMSNorm of x over its last axis with `name.weight` scaled by (offset + weight).
array rms_norm(const Weights& w, const std::string& name, const array& x, float eps, float offset = 0.0f);

}  // namespace lmlab::nn
