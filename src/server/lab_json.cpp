#include "server/lab_json.h"

#include <fmt/format.h>

namespace lmlab::server::lab_json {

namespace an = lmlab::analysis;

namespace {

std::string hex_bytes(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{}{:02X}", out.empty() ? "" : " ", c);
  return out;
}

// The raw bytes behind a byte-level BPE vocabulary string (GPT-2's byte
// table), or the decoded text's bytes for other tokenizers.
std::string token_bytes(const Tokenizer& tok, int id) {
  const std::string& piece = tok.id_to_token(id);
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    unsigned char c = piece[i];
    uint32_t cp;
    if (c < 0x80) cp = c, i += 1;
    else if ((c >> 5) == 6 && i + 1 < piece.size()) cp = ((c & 0x1F) << 6) | (piece[i + 1] & 0x3F), i += 2;
    else return tok.decode(std::vector<int>{id});
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) {
      out += static_cast<char>(cp);
    } else if (cp >= 256 && cp < 256 + 68) {
      // The 68 bytes GPT-2 moved to U+0100.., in byte order.
      int n = static_cast<int>(cp - 256), b = 0;
      for (; b < 256; ++b)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) && n-- == 0) break;
      out += static_cast<char>(b);
    } else {
      return tok.decode(std::vector<int>{id});
    }
  }
  return tok.model_type() == "bpe" ? out : tok.decode(std::vector<int>{id});
}

json stats(const an::Stats& s) {
  return {{"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"std", s.std}, {"abs_mean", s.abs_mean},
          {"count", s.count}, {"zeros", s.zeros}};
}

}  // namespace

json tokens(const Tokenizer& tok, const std::string& text, const std::vector<int>& ids) {
  json list = json::array();
  for (int id : ids)
    list.push_back({{"id", id}, {"piece", tok.id_to_token(id)}, {"text", tok.decode(std::vector<int>{id})},
                    {"bytes", hex_bytes(token_bytes(tok, id))}, {"special", tok.is_special(id)}});
  return {{"text", text}, {"count", ids.size()}, {"ids", ids}, {"round_trip", tok.decode(ids) == text}, {"tokens", list}};
}

json embedding(const Tokenizer& tok, int id, const std::vector<float>& v, int values,
               const std::vector<an::Neighbour>& nb) {
  json n = json::array();
  for (const auto& x : nb) n.push_back({{"id", x.id}, {"token", tok.decode(std::vector<int>{x.id})}, {"cosine", x.cosine}});
  const size_t k = std::min<size_t>(values, v.size());
  return {{"id", id}, {"token", tok.decode(std::vector<int>{id})}, {"dim", v.size()},
          {"values", std::vector<float>(v.begin(), v.begin() + k)}, {"norm", an::l2_norm(v)}, {"neighbours", n}};
}

json context_check(const Tokenizer& tok, const an::ContextCheck& c) {
  return {{"id", c.id}, {"token", tok.decode(std::vector<int>{c.id})}, {"layer", c.layer},
          {"embedding_max_abs_diff", c.embed_max_diff}, {"hidden_max_abs_diff", c.hidden_max_diff},
          {"hidden_cosine", c.hidden_cosine}};
}

json token_probs(const std::vector<an::TokenProb>& top) {
  json a = json::array();
  for (const auto& t : top) a.push_back({{"id", t.id}, {"token", t.piece}, {"prob", t.prob}, {"logit", t.logit}});
  return a;
}

json prediction(const an::Prediction& p) {
  return {{"prompt", p.prompt}, {"prompt_tokens", p.ids.size()}, {"temperature", p.temperature},
          {"entropy_bits", p.entropy}, {"top", token_probs(p.top)}};
}

json lens_row(const an::LensRow& r) {
  return {{"layer", r.name}, {"entropy_bits", r.entropy}, {"top", token_probs(r.top)}};
}

json attention_maps(const std::vector<an::AttentionMap>& maps) {
  json out = json::array();
  for (const auto& m : maps)
    out.push_back({{"layer", m.layer}, {"head", m.head}, {"kv_head", m.kv_head}, {"rows", m.rows}, {"cols", m.cols},
                   {"probs", m.probs}, {"row_entropy_bits", m.row_entropy}, {"mean_entropy_bits", m.mean_entropy}});
  return out;
}

json tensor_view(const an::TensorView& v) {
  json groups = json::array();
  for (const auto& g : v.groups)
    groups.push_back({{"group", g.group}, {"scale", g.scale}, {"bias", g.bias}, {"words", g.words}, {"fields", g.fields},
                      {"values", g.values}, {"field_min", g.field_min}, {"field_max", g.field_max}});
  json out = {{"name", v.name}, {"shape", v.shape}, {"stored_shape", v.stored_shape}, {"dtype", v.dtype},
              {"bits", v.bits}, {"group_size", v.group_size}, {"row", v.row}, {"col", v.col}, {"values", v.values},
              {"groups", groups}, {"stats", stats(v.stats)},
              {"histogram", {{"lo", v.histogram.lo}, {"hi", v.histogram.hi}, {"counts", v.histogram.counts}}}};
  if (v.scale_stats) out["scale_stats"] = stats(*v.scale_stats);
  if (v.bias_stats) out["bias_stats"] = stats(*v.bias_stats);
  return out;
}

json summary(const an::ModelSummary& s, bool with_params) {
  json groups = json::array();
  for (const auto& g : s.groups)
    groups.push_back({{"name", g.name}, {"tensors", g.tensors}, {"params", g.params}, {"bytes", g.bytes}});
  json out = {{"model_type", s.model_type}, {"vocab_size", s.vocab_size}, {"hidden_size", s.hidden_size},
              {"num_layers", s.num_layers}, {"num_heads", s.num_heads}, {"num_kv_heads", s.num_kv_heads},
              {"head_dim", s.head_dim}, {"intermediate_size", s.intermediate_size},
              {"tied_embeddings", s.tied_embeddings}, {"groups", groups}, {"total_params", s.total_params},
              {"total_bytes", s.total_bytes}, {"bits_per_param", s.bits_per_param}, {"size_label", s.size_label}};
  if (with_params) {
    json params = json::array();
    for (const auto& p : s.params)
      params.push_back({{"name", p.name}, {"group", p.group}, {"layer", p.layer}, {"shape", p.shape},
                        {"stored_shape", p.stored_shape}, {"dtype", p.dtype}, {"params", p.params}, {"bytes", p.bytes},
                        {"bits", p.bits}, {"group_size", p.group_size}});
    out["params"] = params;
  }
  return out;
}

json edit(const an::EditSpec& e) {
  return {{"op", an::edit_op_name(e.op)}, {"target", e.target}, {"value", e.value}, {"relative", e.relative},
          {"rate", e.rate}, {"seed", e.seed}};
}

json scheduler(const SchedulerStats& s) {
  const PromptCacheStats& p = s.prompt_cache;
  return {{"active", s.active}, {"queued", s.queued}, {"completed", s.completed}, {"cancelled", s.cancelled},
          {"failed", s.failed}, {"refused", s.refused}, {"generated_tokens", s.generated_tokens},
          {"rounds", s.rounds}, {"batched_rounds", s.batched_rounds},
          {"prompt_cache", {{"entries", p.entries}, {"bytes", p.bytes}, {"max_bytes", p.max_bytes},
                            {"lookups", p.lookups}, {"hits", p.hits}, {"tokens_reused", p.tokens_reused}}}};
}

json info(const LoadedModel& m, const std::string& id, const std::string& device, const an::ModelSummary& s) {
  return {{"model", {{"id", id}, {"path", m.path}, {"format", m.format}, {"model_type", s.model_type},
                     {"context_length", context_length(m)}, {"load_seconds", m.load_seconds},
                     {"chat_template", m.chat_template.has_value()}}},
          {"summary", summary(s, false)},
          {"device", device}};
}

}  // namespace lmlab::server::lab_json
