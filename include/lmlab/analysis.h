// The lab: look inside a model and operate on its weights. Every experiment of
// the lmlab commands (inspect, embed, attention, predict, weights, surgery) is
// one function here returning plain structs, so the CLI, the server and the web
// lab share it. MLX-free: values come back as std::vector<float>, shapes as
// std::vector<int>. Nothing here prints.
//
// Functions taking a Model work on token ids (and on tokenizer-less fixture
// models); functions taking a LoadedModel also fill token strings. Each call
// evaluates what it returns before returning.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lmlab/loader.h"

namespace lmlab {
class Model;
}

namespace lmlab::analysis {

// ---------------------------------------------------------------- inspect

// One logical parameter: a dense tensor, or a quantized module's weight with
// its scales and biases folded in (bytes count all three).
struct ParamInfo {
  std::string name{};               // "model.layers.0.self_attn.q_proj.weight"
  std::string group{};              // "embedding", "layer", "norm", "head"
  int layer = -1;                 // for group "layer"
  std::vector<int> shape;         // logical (unpacked) shape
  std::vector<int> stored_shape;  // as stored (packed uint32 for quantized)
  std::string dtype{};              // stored dtype
  int64_t params = 0;             // logical element count
  int64_t bytes = 0;              // stored bytes, scales and biases included
  int bits = 0;                   // 0: not quantized
  int group_size = 0;
};

struct GroupTotal {
  std::string name{};  // "embedding", "one layer", "all layers", "final norm", "head"
  int tensors = 0;
  int64_t params = 0;
  int64_t bytes = 0;
};

struct ModelSummary {
  std::string model_type{};
  int vocab_size = 0, hidden_size = 0, num_layers = 0, num_heads = 0;
  int num_kv_heads = 0, head_dim = 0, intermediate_size = 0;
  bool tied_embeddings = false;
  std::vector<ParamInfo> params{};  // in the model's weight order
  std::vector<GroupTotal> groups{};
  int64_t total_params = 0;  // tied tensors counted once
  // Mixture of experts (stacked (E, out, in) expert tensors): E experts, k run
  // per token, so a token runs through active_params (= total_params when dense).
  int experts = 0, experts_per_token = 0;
  int64_t active_params = 0;
  int64_t total_bytes = 0;
  double bits_per_param = 0;  // total_bytes * 8 / total_params
  std::string size_label{};     // "135M": why it is called an N-parameter model
  int context_length = 0;       // tokens the model was trained for (0: unknown)
  std::string kv_dtype{};       // the KV cache's dtype (the compute dtype)
  int64_t kv_bytes_per_token = 0;  // keys + values of every layer for one token
  int64_t kv_cache_bytes = 0;      // ... for a full context
};

ModelSummary inspect(const Model& m);

// "1.23 M", "135M"-style labels for parameter counts, and "12.3 MiB" for bytes.
std::string count_label(int64_t n);
std::string bytes_label(int64_t n);

// ---------------------------------------------------------------- weights

// Names of the stored tensors matching a glob (`*`, `?`, `[...]`) or an exact
// name; a module name ("...q_proj") stands for its ".weight". Throws
// std::invalid_argument "[weights] no tensor matches 'x'" when none does.
std::vector<std::string> match_tensors(const Model& m, const std::string& pattern);

struct Stats {
  float min = 0, max = 0, mean = 0, std = 0, abs_mean = 0;
  int64_t count = 0, zeros = 0;
};
struct Histogram {
  float lo = 0, hi = 0;        // range of the bins
  std::vector<int64_t> counts{};
};

// One quantization group of the viewed row.
struct GroupView {
  int group = 0;                 // index along the row
  float scale = 0, bias = 0;
  std::vector<uint32_t> words{};   // packed words of the group
  std::vector<int> fields{};       // the n-bit integers, in the order the kernel reads them
  std::vector<float> values{};     // scale * field + bias
  int field_min = 0, field_max = 0;
};

// One GGML block of the viewed row, for modules kept as raw ggml blocks
// (QuantSpec modes q2_k, q3_k, q6_k, iq4_nl, iq4_xs; lmlab/ggml.h has the formulas).
struct BlockView {
  int block = 0;                  // index along the row
  std::vector<uint8_t> bytes{};   // the block as stored
  float d = 0, dmin = 0;          // float16 super-block scales (dmin: q2_k)
  int sub_block = 0;              // elements per sub-block scale
  std::vector<int> scales{}, mins{};  // sub-block scales (and q2_k mins) as stored
  std::vector<int> fields{};      // each element's stored field (iq4: codebook index)
  std::vector<float> values{};    // dequantized
};

struct TensorView {
  std::string name{};
  std::vector<int> shape{};         // logical
  std::vector<int> stored_shape{};
  std::string dtype{};              // stored dtype
  int bits = 0, group_size = 0;   // quantized when bits > 0
  std::string mode{};             // quantization mode: "affine", or a ggml block mode ("q6_k")
  int row = 0, col = 0;           // where the shown values start
  std::vector<float> values{};    // logical values from (row, col)
  std::vector<GroupView> groups{};  // affine: the groups covering the shown values
  std::vector<BlockView> blocks{};  // ggml block modes: the blocks covering the shown values
  Stats stats{};                    // of the whole (dequantized) tensor
  Histogram histogram{};
  std::optional<Stats> scale_stats{}, bias_stats{};  // quantized: over every group
};

struct ViewOptions {
  int row = 0;
  int col = 0;
  int count = 16;   // logical values to show
  int bins = 24;    // 0..kMaxBins
};
inline constexpr int kMaxBins = 1000;
void validate(const ViewOptions& o);  // ranges that need no tensor (count, bins)

// Throws std::invalid_argument for a missing tensor or a row/col out of range.
TensorView view_tensor(const Model& m, const std::string& name, const ViewOptions& o = {});

// The n-bit fields packed in `words`, low bits first, as MLX's affine kernels
// read them (bits 2, 3, 4, 5, 6 or 8; 3/5/6-bit packs span word boundaries).
std::vector<int> unpack_fields(const std::vector<uint32_t>& words, int bits, int count);

// ---------------------------------------------------------------- predict

struct TokenProb {
  int id = 0;
  std::string piece{};  // decoded text (LoadedModel overloads)
  float prob = 0;
  float logit = 0;
};

// Top-k of softmax(logits / temperature); temperature 0 means greedy (prob 1 on the max).
std::vector<TokenProb> top_k(const std::vector<float>& logits, int k, float temperature = 1.0f);
// Shannon entropy of softmax(logits / temperature), in bits.
float entropy_bits(const std::vector<float>& logits, float temperature = 1.0f);

// Float32 logits at the last position of `ids`.
std::vector<float> next_token_logits(const Model& m, const std::vector<int>& ids);

struct LensRow {
  std::string name{};  // "embed", "layers.0", ... "layers.N-1"
  std::vector<TokenProb> top{};
  float entropy = 0;  // bits
};
// The logit lens: the last position's residual stream after the embedding and
// after every layer, read through the final norm and head (Model::head).
std::vector<LensRow> logit_lens(const Model& m, const std::vector<int>& ids, int k);

struct Prediction {
  std::string prompt{};
  std::vector<int> ids{};
  float temperature = 1.0f;
  float entropy = 0;  // bits
  std::vector<TokenProb> top{};
};
struct PredictOptions {
  int k = 10;
  std::vector<float> temperatures = {1.0f};
  bool chat_template = true;
  std::string system{};
};
void validate(const PredictOptions& o);  // k >= 1, temperatures finite and >= 0
// One Prediction per (prompt, temperature), prompts outer.
std::vector<Prediction> predict(const LoadedModel& m, const std::vector<std::string>& prompts,
                                const PredictOptions& o);
void fill_pieces(const Tokenizer& tok, std::vector<TokenProb>& probs);

// ---------------------------------------------------------------- attention

struct AttentionMap {
  int layer = 0;
  int head = 0;
  int kv_head = 0;           // the key/value head this query head reads (GQA)
  int rows = 0, cols = 0;    // queries x keys
  std::vector<float> probs{};  // row-major rows x cols, each row sums to 1
  std::vector<float> row_entropy{};  // bits
  float mean_entropy = 0;
};

struct AttentionCapture {
  std::vector<int> ids{};
  std::vector<int> q_shape{}, k_shape{}, v_shape{};  // (B, H, L, Dh), (B, Hk, L, Dh)
  std::vector<AttentionMap> maps{};              // layers outer, heads inner
};

// Attention probabilities from a real forward pass, for `layers` and `heads`
// (empty: all). Throws std::invalid_argument for out-of-range indices, for
// prompts check_tokens refuses, and when attention_capture_bytes exceeds half
// the memory available (a long prompt: the maps grow with its square).
AttentionCapture capture_attention(const Model& m, const std::vector<int>& ids,
                                   const std::vector<int>& layers, const std::vector<int>& heads);

// Bytes capture_attention needs, about, for a prompt of `tokens` tokens.
size_t attention_capture_bytes(const Model& m, size_t tokens, size_t layers, size_t heads);

// An SVG heatmap of one map with token labels on both axes.
std::string attention_svg(const AttentionMap& map, const std::vector<std::string>& labels,
                          const std::string& title);

// ---------------------------------------------------------------- embeddings

// Row `id` of the embedding table, dequantized, in float32.
std::vector<float> embedding_row(const Model& m, int id);
float l2_norm(const std::vector<float>& v);

struct Neighbour {
  int id = 0;
  std::string piece{};
  float cosine = 0;
};
// The k tokens whose embedding rows are closest in cosine to row `id` (itself excluded).
std::vector<Neighbour> nearest_tokens(const Model& m, int id, int k);

// The same token id at position `pos_a` of `a` and `pos_b` of `b`: its input
// embedding is identical (max |diff| 0) while the residual stream after layer
// `layer` (-1: the middle layer) differs with the context.
struct ContextCheck {
  int id = 0;
  int layer = 0;
  float embed_max_diff = 0;
  float hidden_max_diff = 0;
  float hidden_cosine = 0;
};
// One token's row of the embedding table, summarised: its first `values`
// values, norm and `neighbours` nearest tokens (pieces filled).
struct TokenEmbedding {
  int id = 0;
  std::string piece{};
  int dim = 0;
  std::vector<float> values{};  // the first few
  float norm = 0;
  std::vector<Neighbour> neighbours{};
};
TokenEmbedding token_embedding(const LoadedModel& m, int id, int values, int neighbours);

ContextCheck context_check(const Model& m, const std::vector<int>& a, int pos_a,
                           const std::vector<int>& b, int pos_b, int layer);

// ---------------------------------------------------------------- surgery

enum class EditOp {
  Zero,         // dense: 0; quantized: words, scales and biases 0 (values exactly 0)
  Scale,        // values × value (quantized: scales and biases × value, exact)
  Noise,        // + N(0, value) (relative: value × group scale, i.e. in quantization steps)
  Set,          // every value = value (quantized: words 0, scales 0, biases = value)
  ShiftWords,   // packed words: uint32(int64(word) - value), the seed notebook's edit
  ShiftFields,  // every n-bit field + value, clamped to [0, 2^bits - 1]
  FlipBits,     // flip stored bits at `rate` or at `positions` (flat bit indices)
  Requantize,   // affine re-quantization to `value` bits, group `group_size`: a quantized
                // module changes its format; a dense tensor keeps its dtype and takes the
                // dequantized values (the same numbers a quantized copy would hold)
};
EditOp parse_edit_op(const std::string& name);  // "zero", "scale", ... "flip-bits"
std::string edit_op_name(EditOp op);

struct EditSpec {
  std::string target{};  // tensor name or glob
  EditOp op = EditOp::Zero;
  double value = 0;
  bool relative = false;            // Noise: relative to the group scale
  double rate = 0;                  // FlipBits: probability per bit
  std::vector<int64_t> positions{};   // FlipBits: flat bit indices into the stored tensor
  uint64_t seed = 0;                // Noise and FlipBits
  int group_size = 64;              // Requantize
};

struct EditRecord {
  EditSpec spec{};
  std::vector<std::string> tensors{};  // stored tensors replaced
  int64_t elements_changed = 0;      // stored elements whose bytes differ
};

// Throws std::invalid_argument for a spec no tensor could take: a value that
// is NaN or infinite, a shift that is not an integer or past the storage's
// range, flip-bits without a rate or positions.
void validate(const EditSpec& s);

// FNV-1a over the bytes of the named stored tensors (all of them when empty).
uint64_t weights_hash(const Model& m, const std::vector<std::string>& names = {});

// A reversible edit log over a model's Weights. Edits replace array handles in
// the model (never writing into shared buffers); restore() puts the original
// handles (and quantization formats) back, so the model is bit-exactly what it
// was (check with weights_hash). Borrows the model, which must outlive it; not thread-safe,
// and no forward pass may run on the model during apply/restore.
class Surgery {
 public:
  explicit Surgery(Model& m) : model_(m) {}
  ~Surgery() = default;
  Surgery(const Surgery&) = delete;
  Surgery& operator=(const Surgery&) = delete;

  // Throws std::invalid_argument for no matching tensor or an edit the tensor
  // cannot take (e.g. shift-words on a float tensor); nothing changes then.
  const EditRecord& apply(const EditSpec& spec);
  // Puts every edited tensor back; returns how many were restored.
  int restore();
  const std::vector<EditRecord>& log() const { return log_; }
  // Names of the stored tensors edited so far.
  std::vector<std::string> edited() const;

 private:
  struct Original;
  Model& model_;
  std::vector<EditRecord> log_{};
  std::vector<std::shared_ptr<Original>> originals_{};
};

// Writes the (edited) model as an MLX model directory (config.json with
// quantization, model.safetensors) with its tokenizer: the files of
// `tokenizer_dir` when given, else those of `m`'s source directory, else (a
// GGUF) tokenizer.json/tokenizer_config.json written from the GGUF header.
// Atomic (temp folder, then rename); never touches the source.
void save_model(const LoadedModel& m, const std::string& dir, const std::string& tokenizer_dir = "");
// The checks save_model runs first, for a caller that wants them before
// costly work: `dir` must not exist and its parent must be writable, a
// `tokenizer_dir` must hold a tokenizer no larger than the model's vocabulary,
// and a GGUF's vocabulary must be writable as tokenizer.json.
void check_save(const LoadedModel& m, const std::string& dir, const std::string& tokenizer_dir = "");

// ---------------------------------------------------------------- text

// Plain-text pieces for terminal reports (report.cpp).
// A bar of `width` cells filled to `fraction` with Unicode eighth blocks.
std::string bar(double fraction, int width);
// One of " ░▒▓█" for p in [0, 1].
std::string shade(float p);
// A token's text with whitespace made visible (· ↵ → ␍) and control bytes escaped.
std::string visible(const std::string& piece);

// ---------------------------------------------------------------- JSON

// JSON forms (found by nlohmann's ADL), so the CLI's --json, the server and
// the web lab print the same objects. Token text is under "token"; entropies
// are "*_bits". Options also read back (from_json), refusing unknown keys and
// wrong types with std::invalid_argument; ranges are checked by validate().
void to_json(nlohmann::json& j, const ParamInfo& p);
void to_json(nlohmann::json& j, const GroupTotal& g);
void to_json(nlohmann::json& j, const ModelSummary& s);
void to_json(nlohmann::json& j, const Stats& s);
void to_json(nlohmann::json& j, const Histogram& h);
void to_json(nlohmann::json& j, const GroupView& g);
void to_json(nlohmann::json& j, const BlockView& b);
void to_json(nlohmann::json& j, const TensorView& v);
void to_json(nlohmann::json& j, const TokenProb& t);
void to_json(nlohmann::json& j, const LensRow& r);
void to_json(nlohmann::json& j, const Prediction& p);
void to_json(nlohmann::json& j, const AttentionMap& m);
void to_json(nlohmann::json& j, const AttentionCapture& c);
void to_json(nlohmann::json& j, const Neighbour& n);
void to_json(nlohmann::json& j, const TokenEmbedding& e);
void to_json(nlohmann::json& j, const ContextCheck& c);
void to_json(nlohmann::json& j, const EditSpec& s);
void to_json(nlohmann::json& j, const EditRecord& r);
void to_json(nlohmann::json& j, const ViewOptions& o);
void to_json(nlohmann::json& j, const PredictOptions& o);
void from_json(const nlohmann::json& j, ViewOptions& o);
void from_json(const nlohmann::json& j, PredictOptions& o);
void from_json(const nlohmann::json& j, EditSpec& s);

}  // namespace lmlab::analysis
