// The lab's results and options as JSON: the one form the CLI's --json, the
// server and the web lab print (see analysis.h for the conventions).
#include <nlohmann/json.hpp>

#include "core/json_fields.h"
#include "lmlab/analysis.h"

using json = nlohmann::json;

namespace lmlab::analysis {

void to_json(json& j, const ParamInfo& p) {
  j = {{"name", p.name},   {"group", p.group}, {"layer", p.layer},         {"shape", p.shape},
       {"stored_shape", p.stored_shape}, {"dtype", p.dtype}, {"params", p.params},
       {"bytes", p.bytes}, {"bits", p.bits},   {"group_size", p.group_size}};
}

void to_json(json& j, const GroupTotal& g) {
  j = {{"name", g.name}, {"tensors", g.tensors}, {"params", g.params}, {"bytes", g.bytes}};
}

void to_json(json& j, const ModelSummary& s) {
  j = {{"model_type", s.model_type},
       {"config",
        {{"vocab_size", s.vocab_size},
         {"hidden_size", s.hidden_size},
         {"num_hidden_layers", s.num_layers},
         {"num_attention_heads", s.num_heads},
         {"num_key_value_heads", s.num_kv_heads},
         {"head_dim", s.head_dim},
         {"intermediate_size", s.intermediate_size},
         {"tie_word_embeddings", s.tied_embeddings},
         {"max_position_embeddings", s.context_length}}},
       {"params", s.params},
       {"groups", s.groups},
       {"total_params", s.total_params},
       {"experts", s.experts},
       {"experts_per_token", s.experts_per_token},
       {"active_params", s.active_params},
       {"total_bytes", s.total_bytes},
       {"bits_per_param", s.bits_per_param},
       {"float16_bytes", s.total_params * 2},
       {"float32_bytes", s.total_params * 4},
       {"size_label", s.size_label},
       {"context_length", s.context_length},
       {"kv_cache",
        {{"dtype", s.kv_dtype},
         {"bytes_per_token", s.kv_bytes_per_token},
         {"bytes_at_context_length", s.kv_cache_bytes}}}};
}

void to_json(json& j, const Stats& s) {
  j = {{"min", s.min},           {"max", s.max},     {"mean", s.mean}, {"std", s.std},
       {"abs_mean", s.abs_mean}, {"count", s.count}, {"zeros", s.zeros}};
}

void to_json(json& j, const Histogram& h) { j = {{"lo", h.lo}, {"hi", h.hi}, {"counts", h.counts}}; }

void to_json(json& j, const GroupView& g) {
  j = {{"group", g.group},   {"scale", g.scale},           {"bias", g.bias},
       {"words", g.words},   {"fields", g.fields},         {"values", g.values},
       {"field_min", g.field_min}, {"field_max", g.field_max}};
}

void to_json(json& j, const BlockView& b) {
  j = {{"block", b.block},   {"bytes", b.bytes},   {"d", b.d},           {"dmin", b.dmin},
       {"sub_block", b.sub_block}, {"scales", b.scales}, {"mins", b.mins}, {"fields", b.fields},
       {"values", b.values}};
}

void to_json(json& j, const TensorView& v) {
  j = {{"name", v.name}, {"shape", v.shape}, {"stored_shape", v.stored_shape}, {"dtype", v.dtype},
       {"bits", v.bits}, {"group_size", v.group_size}, {"row", v.row}, {"col", v.col},
       {"values", v.values}, {"stats", v.stats}};
  if (!v.histogram.counts.empty()) j["histogram"] = v.histogram;
  if (v.scale_stats) j["scale_stats"] = *v.scale_stats;
  if (v.bias_stats) j["bias_stats"] = *v.bias_stats;
  if (v.bits && v.blocks.empty()) j["groups"] = v.groups;
  if (!v.mode.empty()) j["mode"] = v.mode;
  if (!v.blocks.empty()) j["blocks"] = v.blocks;
}

void to_json(json& j, const TokenProb& t) {
  j = {{"id", t.id}, {"token", t.piece}, {"prob", t.prob}, {"logit", t.logit}};
}

void to_json(json& j, const LensRow& r) {
  j = {{"layer", r.name}, {"entropy_bits", r.entropy}, {"top", r.top}};
}

void to_json(json& j, const Prediction& p) {
  j = {{"prompt", p.prompt}, {"ids", p.ids}, {"prompt_tokens", p.ids.size()}, {"temperature", p.temperature},
       {"entropy_bits", p.entropy}, {"top", p.top}};
}

void to_json(json& j, const AttentionMap& m) {
  j = {{"layer", m.layer}, {"head", m.head}, {"kv_head", m.kv_head}, {"rows", m.rows},
       {"cols", m.cols}, {"probs", m.probs}, {"row_entropy_bits", m.row_entropy},
       {"mean_entropy_bits", m.mean_entropy}};
}

void to_json(json& j, const AttentionCapture& c) {
  j = {{"ids", c.ids}, {"q_shape", c.q_shape}, {"k_shape", c.k_shape}, {"v_shape", c.v_shape}, {"maps", c.maps}};
}

void to_json(json& j, const Neighbour& n) { j = {{"id", n.id}, {"token", n.piece}, {"cosine", n.cosine}}; }

void to_json(json& j, const TokenEmbedding& e) {
  j = {{"id", e.id}, {"token", e.piece}, {"dim", e.dim}, {"values", e.values}, {"norm", e.norm},
       {"neighbours", e.neighbours}};
}

void to_json(json& j, const ContextCheck& c) {
  j = {{"id", c.id}, {"layer", c.layer}, {"embedding_max_abs_diff", c.embed_max_diff},
       {"hidden_max_abs_diff", c.hidden_max_diff}, {"hidden_cosine", c.hidden_cosine}};
}

void to_json(json& j, const EditSpec& s) {
  j = {{"op", edit_op_name(s.op)}, {"target", s.target}, {"value", s.value}, {"relative", s.relative},
       {"rate", s.rate}, {"positions", s.positions}, {"seed", s.seed}};
}

void to_json(json& j, const EditRecord& r) {
  j = {{"edit", r.spec}, {"tensors", r.tensors}, {"elements_changed", r.elements_changed}};
}

void to_json(json& j, const ViewOptions& o) {
  j = {{"row", o.row}, {"col", o.col}, {"count", o.count}, {"bins", o.bins}};
}

void to_json(json& j, const PredictOptions& o) {
  j = {{"top_k", o.k}, {"temperatures", o.temperatures}, {"chat_template", o.chat_template}, {"system", o.system}};
}

void from_json(const json& j, ViewOptions& o) {
  constexpr std::string_view where = "weights options";
  json_fields::check_keys(j, {"row", "col", "count", "bins"}, where);
  json_fields::read(j, "row", o.row, where);
  json_fields::read(j, "col", o.col, where);
  json_fields::read(j, "count", o.count, where);
  json_fields::read(j, "bins", o.bins, where);
}

void from_json(const json& j, PredictOptions& o) {
  constexpr std::string_view where = "predict options";
  json_fields::check_keys(j, {"top_k", "temperatures", "chat_template", "system"}, where);
  json_fields::read(j, "top_k", o.k, where);
  json_fields::read(j, "temperatures", o.temperatures, where);
  json_fields::read(j, "chat_template", o.chat_template, where);
  json_fields::read(j, "system", o.system, where);
}

void from_json(const json& j, EditSpec& s) {
  constexpr std::string_view where = "edit";
  json_fields::check_keys(j, {"op", "target", "value", "relative", "rate", "positions", "seed"}, where);
  std::string op = edit_op_name(s.op);
  json_fields::read(j, "op", op, where);
  s.op = parse_edit_op(op);
  json_fields::read(j, "target", s.target, where);
  json_fields::read(j, "value", s.value, where);
  json_fields::read(j, "relative", s.relative, where);
  json_fields::read(j, "rate", s.rate, where);
  json_fields::read(j, "positions", s.positions, where);
  json_fields::read(j, "seed", s.seed, where);
}

}  // namespace lmlab::analysis
