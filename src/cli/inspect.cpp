// lmlab inspect: the architecture as a tree, the parameter table, totals by
// group, the memory footprint and why the model is called an N-parameter model.
#include <iostream>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/utf8.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct InspectOptions {
  ModelOptions model;
  bool all = false;
  bool json = false;
};

std::string shape_str(const std::vector<int>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? " × " : "") + std::to_string(s[i]);
  return out;
}

std::string quant_str(const an::ParamInfo& p) {
  return p.bits ? fmt::format("{}-bit g{}", p.bits, p.group_size) : "";
}

std::string leaf_str(const an::ParamInfo& p) {
  std::string shape = p.shape.size() == 2 && p.group != "embedding" ? fmt::format("{} → {}", p.shape[1], p.shape[0])
                      : p.shape.size() == 3 ? fmt::format("{} × {} → {}", p.shape[0], p.shape[2], p.shape[1])  // experts
                                            : shape_str(p.shape);
  return fmt::format("{:<14} {:>9}  {}", shape, an::count_label(p.params),
                     p.bits ? quant_str(p) : p.dtype);
}

// Prints `rows` (relative names like "self_attn.q_proj.weight") as a tree.
void print_tree(const std::vector<const an::ParamInfo*>& rows, size_t strip, const std::string& indent) {
  // Group by the first path segment, keeping order.
  std::vector<std::pair<std::string, std::vector<const an::ParamInfo*>>> groups;
  for (const auto* p : rows) {
    std::string rest = p->name.substr(strip);
    std::string head = rest.substr(0, rest.find('.'));
    if (groups.empty() || groups.back().first != head) groups.push_back({head, {}});
    groups.back().second.push_back(p);
  }
  for (size_t i = 0; i < groups.size(); ++i) {
    const auto& [head, members] = groups[i];
    bool last = i + 1 == groups.size();
    std::string branch = indent + (last ? "└─ " : "├─ ");
    std::string rest = members[0]->name.substr(strip + head.size());
    if (members.size() == 1 && rest.find('.', 1) == std::string::npos) {
      std::string label = branch + head + (rest == ".weight" ? "" : rest);
      fmt::print("{}{} {}\n", label, std::string(std::max(1, 34 - static_cast<int>(utf8::length(label))), ' '), leaf_str(*members[0]));
    } else {
      fmt::print("{}{}\n", branch, head);
      print_tree(members, strip + head.size() + 1, indent + (last ? "   " : "│  "));
    }
  }
}

// Whether every layer has layer 0's parameter count (not so when some layers
// of a mixture-of-experts model keep a dense MLP).
bool same_layers(const an::ModelSummary& s) {
  return s.groups[2].params == static_cast<int64_t>(s.num_layers) * s.groups[1].params;
}

void print_architecture(const an::ModelSummary& s) {
  fmt::print("Architecture ({}: {} layers, hidden {}, {} heads / {} kv heads × {}, MLP {}, vocab {})\n",
             s.model_type, s.num_layers, s.hidden_size, s.num_heads, s.num_kv_heads, s.head_dim,
             s.intermediate_size, s.vocab_size);
  if (s.experts > 0)
    fmt::print("  mixture of experts: {} experts, {} per token; expert tensors are experts × out × in\n", s.experts,
               s.experts_per_token);
  std::vector<const an::ParamInfo*> top, layer0;
  for (const auto& p : s.params) {
    if (p.group == "layer") {
      if (p.layer == 0) layer0.push_back(&p);
    } else {
      top.push_back(&p);
    }
  }
  for (const auto* p : top)
    if (p->group == "embedding") fmt::print("  {:<33}{}\n", p->name, leaf_str(*p));
  if (!layer0.empty()) {
    std::string prefix = layer0[0]->name.substr(0, layer0[0]->name.find(".0.") + 3);
    fmt::print("  {}N.  (N = 0..{}, {})\n", prefix.substr(0, prefix.size() - 2), s.num_layers - 1,
               same_layers(s) ? "every layer the same" : "layer 0 shown; the layers differ, --all lists each");
    print_tree(layer0, prefix.size(), "  ");
  }
  for (const auto* p : top)
    if (p->group != "embedding") fmt::print("  {:<33}{}\n", p->name, leaf_str(*p));
  if (s.tied_embeddings) fmt::print("  {:<33}tied: reuses model.embed_tokens (no extra parameters)\n", "lm_head");
}

void print_table(const an::ModelSummary& s, bool all) {
  fmt::print("\nParameters{}\n", all ? "" : " (layer 0 shown; --all for every layer)");
  fmt::print("  {:<48} {:<14} {:<8} {:>10} {:>11}  {}\n", "name", "shape", "dtype", "params", "bytes", "quant");
  int hidden = 0;
  for (const auto& p : s.params) {
    if (!all && p.group == "layer" && p.layer != 0) {
      ++hidden;
      continue;
    }
    fmt::print("  {:<48} {:<14} {:<8} {:>10} {:>11}  {}\n", p.name, shape_str(p.shape), p.dtype,
               an::count_label(p.params), an::bytes_label(p.bytes), quant_str(p));
  }
  if (hidden) fmt::print("  … {} more tensors in layers 1..{}\n", hidden, s.num_layers - 1);
}

void print_totals(const an::ModelSummary& s) {
  fmt::print("\nTotals by group\n");
  fmt::print("  {:<12} {:>7} {:>10} {:>7} {:>11}\n", "group", "tensors", "params", "share", "bytes");
  for (const auto& g : s.groups)
    fmt::print("  {:<12} {:>7} {:>10} {:>6.1f}% {:>11}\n", g.name, g.tensors, an::count_label(g.params),
               s.total_params ? 100.0 * g.params / s.total_params : 0.0, an::bytes_label(g.bytes));
  fmt::print("  {:<12} {:>7} {:>10} {:>6.1f}% {:>11}\n", "total", s.params.size(),
             an::count_label(s.total_params), 100.0, an::bytes_label(s.total_bytes));

  fmt::print("\nMemory footprint\n");
  fmt::print("  as stored   {:>11}  ({:.2f} bits per parameter, scales and biases included)\n",
             an::bytes_label(s.total_bytes), s.bits_per_param);
  fmt::print("  as float16  {:>11}\n  as float32  {:>11}\n", an::bytes_label(s.total_params * 2),
             an::bytes_label(s.total_params * 4));

  const an::GroupTotal* g[5] = {&s.groups[0], &s.groups[1], &s.groups[2], &s.groups[3], &s.groups[4]};
  const std::string layers = same_layers(s) ? fmt::format("{} layers × {}", s.num_layers, an::count_label(g[1]->params))
                                            : fmt::format("{} layers {}", s.num_layers, an::count_label(g[2]->params));
  fmt::print("\nWhy \"{}\": {} parameters = embedding {} + {} + final norm {} + head {}{}\n", s.size_label,
             an::count_label(s.total_params), an::count_label(g[0]->params), layers, an::count_label(g[3]->params),
             an::count_label(g[4]->params), s.tied_embeddings ? " (tied to the embedding, counted once)" : "");
  if (s.experts > 0)
    fmt::print("  a token runs through {} of them ({} of {} experts in each expert layer)\n",
               an::count_label(s.active_params), s.experts_per_token, s.experts);
}

void print_context(const an::ModelSummary& s) {
  fmt::print("\nContext\n");
  if (s.context_length <= 0) {
    fmt::print("  length unknown (the config gives no max_position_embeddings)\n");
    return;
  }
  fmt::print("  length      {} tokens\n", s.context_length);
  fmt::print("  KV cache    {} per token ({} layers × 2 × {} kv heads × {} × {}), {} at full context\n",
             an::bytes_label(s.kv_bytes_per_token), s.num_layers, s.num_kv_heads, s.head_dim, s.kv_dtype,
             an::bytes_label(s.kv_cache_bytes));
}

void run_inspect(const InspectOptions& o) {
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  an::ModelSummary s = an::inspect(*m.model);
  if (o.json) {
    nlohmann::json out = s;
    out["path"] = m.path;
    out["format"] = m.format;
    print_json(out);
    return;
  }
  fmt::print("{} ({})\n\n", m.path, m.format);
  print_architecture(s);
  print_table(s, o.all);
  print_totals(s);
  print_context(s);
}

}  // namespace

void setup_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  o->model.add(app);
  app.add_flag("--all", o->all, "list the tensors of every layer, not only layer 0");
  add_json_flag(app, o->json, "one object: config, parameter table, totals, context and KV cache");
  app.callback([o] { run_inspect(*o); });
}

}  // namespace lmlab::cli
