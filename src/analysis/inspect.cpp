// inspect: the parameter table of a model, grouped the way people talk about
// it (embedding, layers, head), with the totals behind its "N-B" name.
#include <cmath>
#include <regex>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "analysis/internal.h"
#include "lmlab/analysis.h"
#include "lmlab/model.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Folded into their module's ".weight" row.
bool is_quant_companion(const Weights& w, const std::string& name) {
  for (const char* suffix : {".scales", ".biases"})
    if (ends_with(name, suffix) && w.quant(name.substr(0, name.size() - std::string(suffix).size())))
      return true;
  return false;
}

void classify(ParamInfo& p) {
  static const std::regex layer_re(R"(^(model\.)?layers\.(\d+)\.)");
  std::smatch mm;
  if (std::regex_search(p.name, mm, layer_re)) {
    p.group = "layer";
    p.layer = std::stoi(mm[2]);
  } else if (p.name.find("embed_tokens") != std::string::npos) {
    p.group = "embedding";
  } else if (p.name.rfind("lm_head", 0) == 0) {
    p.group = "head";
  } else if (p.name.find("norm") != std::string::npos) {
    p.group = "norm";
  } else {
    p.group = "other";
  }
}

void add_to(GroupTotal& g, const ParamInfo& p) {
  ++g.tensors;
  g.params += p.params;
  g.bytes += p.bytes;
}

}  // namespace

ParamInfo param_info(const Weights& w, const std::string& name) {
  const mx::array& a = w.at(name);
  ParamInfo p;
  p.name = name;
  p.stored_shape = std::vector<int>(a.shape().begin(), a.shape().end());
  p.shape = p.stored_shape;
  p.dtype = dtype_name(a.dtype());
  p.bytes = static_cast<int64_t>(a.nbytes());
  if (ends_with(name, ".weight")) {
    std::string prefix = name.substr(0, name.size() - 7);
    if (const QuantSpec* q = w.quant(prefix)) {
      p.bits = q->bits;
      p.group_size = q->group_size;
      p.shape.back() = static_cast<int>(q->unpacked_columns(p.shape.back()));
      for (const char* c : {".scales", ".biases"})
        if (auto* b = w.find(prefix + c)) p.bytes += static_cast<int64_t>(b->nbytes());
    }
  }
  p.params = 1;
  for (int d : p.shape) p.params *= d;
  classify(p);
  return p;
}

ModelSummary inspect(const Model& m) {
  const ModelConfig& c = m.config();
  ModelSummary s{.model_type = c.model_type,
                 .vocab_size = c.vocab_size,
                 .hidden_size = c.hidden_size,
                 .num_layers = c.num_hidden_layers,
                 .num_heads = c.num_attention_heads,
                 .num_kv_heads = c.num_key_value_heads,
                 .head_dim = c.head_dim,
                 .intermediate_size = c.intermediate_size,
                 .tied_embeddings = c.tie_word_embeddings};
  GroupTotal emb{"embedding"}, one{"one layer"}, all{"all layers"}, norm{"final norm"}, head{"head"},
      other{"other"};
  for (const auto& [name, a] : m.weights().items()) {
    if (is_quant_companion(m.weights(), name)) continue;
    ParamInfo p = param_info(m.weights(), name);
    if (p.group == "embedding") add_to(emb, p);
    else if (p.group == "layer") {
      add_to(all, p);
      if (p.layer == 0) add_to(one, p);
    } else if (p.group == "norm") add_to(norm, p);
    else if (p.group == "head") add_to(head, p);
    else add_to(other, p);
    s.total_params += p.params;
    s.total_bytes += p.bytes;
    s.params.push_back(std::move(p));
  }
  s.active_params = s.total_params;
  int64_t expert_params = 0;
  for (const auto& p : s.params)
    if (p.group == "layer" && p.shape.size() == 3) {
      s.experts = p.shape[0];
      expert_params += p.params;
    }
  if (s.experts > 0) {
    s.experts_per_token = c.raw.value("num_experts_per_tok", 0);
    if (s.experts_per_token > 0 && s.experts_per_token <= s.experts)
      s.active_params -= expert_params / s.experts * (s.experts - s.experts_per_token);
  }
  s.groups = {emb, one, all, norm, head};
  if (other.tensors > 0) s.groups.push_back(other);
  s.bits_per_param = s.total_params ? 8.0 * s.total_bytes / s.total_params : 0;
  // Keys and values of every layer, in the compute dtype the cache is kept in.
  s.context_length = c.max_position_embeddings;
  s.kv_dtype = dtype_name(m.dtype());
  s.kv_bytes_per_token = int64_t{2} * c.num_hidden_layers * c.num_key_value_heads * c.head_dim *
                         static_cast<int64_t>(mx::size_of(m.dtype()));
  s.kv_cache_bytes = s.kv_bytes_per_token * s.context_length;
  double n = static_cast<double>(s.total_params);
  s.size_label = n >= 1e9 ? fmt::format("{:.3g}B", n / 1e9) : fmt::format("{:.0f}M", n / 1e6);
  return s;
}

std::string count_label(int64_t n) {
  double x = static_cast<double>(n);
  if (x >= 1e9) return fmt::format("{:.2f} B", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f} M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f} K", x / 1e3);
  return fmt::format("{}", n);
}

std::string bytes_label(int64_t n) {
  double x = static_cast<double>(n);
  if (x >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", x / (1024.0 * 1024 * 1024));
  if (x >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", x / (1024.0 * 1024));
  if (x >= 1024.0) return fmt::format("{:.1f} KiB", x / 1024.0);
  return fmt::format("{} B", n);
}

}  // namespace lmlab::analysis
