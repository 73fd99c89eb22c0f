// The sweep's report: the seed notebook's table (shift, percent of the
// original value, response, status) and the metrics behind each status in
// markdown and CSV, the words and fields an edit moved with the borrow
// arithmetic behind a packed-word shift, an SVG chart, and JSON.
#include <cmath>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "analysis/sweep_internal.h"
#include "lmlab/report.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::analysis {

namespace {

using report::number;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double get_num(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

std::string quoted(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return number(v);
  return fmt::format("{:.{}f}", v, digits);
}

std::string sig(double v) {
  if (!std::isfinite(v)) return number(v);
  return fmt::format("{:.4g}", v);
}

std::string percent_of_original(const SweepReport& r, const SweepPoint& p) {
  const bool words = r.config.at("edit").at("op") == "shift-words";
  return fmt::format("{:.6g}%", words ? p.change.word_pct : 100 * p.change.value_rel);
}

std::string op_name(const SweepReport& r) { return r.config.at("edit").at("op").get<std::string>(); }

std::string schedule_text(const json& s) {
  const std::string kind = s.at("kind");
  if (kind == "list") {
    std::vector<std::string> v;
    for (const auto& x : s.at("values")) v.push_back(number(x.get<double>()));
    return fmt::format("{}", fmt::join(v, ", "));
  }
  if (kind == "log-grid")
    return fmt::format("{} points from {} to {}, evenly spaced on a log scale", s.at("points").get<int>(),
                       number(s.at("lo")), number(s.at("hi")));
  return fmt::format("bisection between {} and {} to a resolution of {}", number(s.at("lo")), number(s.at("hi")),
                     number(s.at("resolution")));
}

std::string header(const SweepReport& r) {
  const json& c = r.config;
  const json& e = c.at("edit");
  std::string s = fmt::format("# Sweep: {} on `{}`\n\n", op_name(r), e.at("target").get<std::string>());
  s += fmt::format("- model: `{}` (weights hash {}), lmlab {}\n", r.model, r.config.at("model_hash").get<std::string>(),
                   c.at("lmlab").get<std::string>());
  s += fmt::format("- edit: {} on `{}`{}{}; tensors {}\n", op_name(r), r.target,
                   e.at("relative").get<bool>() ? " (relative to each group's scale)" : "",
                   fmt::format(", seed {}", e.at("seed").get<uint64_t>()),
                   fmt::format("`{}`", fmt::join(r.tensors, "`, `")));
  if (!r.head_note.empty()) s += "- head: " + r.head_note + "\n";
  s += "- schedule: " + schedule_text(c.at("schedule")) + "\n";
  std::vector<std::string> prompts;
  for (const auto& p : c.at("prompts")) prompts.push_back(quoted(p.get<std::string>()));
  s += fmt::format("- prompts: {} ({}), greedy, {} tokens; answer check: the reply matches {}\n",
                   fmt::join(prompts, ", "), c.at("chat_template").get<bool>() ? "chat template" : "raw text",
                   c.at("max_tokens").get<int>(), c.at("expect").dump());
  s += fmt::format("- evaluation: {} tokens of {} (token hash {}), windows of {} tokens, stride {}; baseline "
                   "perplexity {}\n",
                   r.eval_tokens, c.at("eval").at("source").get<std::string>(),
                   c.at("eval").at("hash").get<std::string>(), c.at("windows").at("context").get<int>(),
                   c.at("windows").at("stride").get<int>(), fixed(r.baseline_ppl, 4));
  const json& t = c.at("thresholds");
  s += fmt::format("- status: healthy when KL ≤ {} and every answer check passes; degraded up to KL {} (or a "
                   "failed answer); collapsing up to {}; dead beyond (KL: mean nats per token of the "
                   "evaluation text against the unperturbed model)\n",
                   number(t.at("healthy_kl")), number(t.at("degraded_kl")), number(t.at("collapsing_kl")));
  std::vector<std::string> base;
  for (const auto& b : r.baseline_replies) base.push_back(quoted(b));
  s += fmt::format("- unperturbed replies: {}\n", fmt::join(base, ", "));
  for (size_t i = 0; i < r.baseline_answers_ok.size(); ++i)
    if (!r.baseline_answers_ok[i])
      s += fmt::format("- note: the unperturbed model already fails the answer check of prompt {}; its status "
                       "ignores that check\n", i + 1);
  s += "- after every point the originals were restored and their hash checked\n\n";
  return s;
}

std::string seed_table(const SweepReport& r) {
  report::Table t{.columns = {op_name(r) == "shift-words" ? "shift" : "value", "% of original", "response", "status"},
                  .align = "rrll"};
  for (const auto& p : r.points) {
    std::vector<std::string> replies;
    for (const auto& x : p.replies) replies.push_back(quoted(x));
    t.rows.push_back({number(p.value), percent_of_original(r, p), fmt::format("{}", fmt::join(replies, " / ")), p.status});
  }
  return report::markdown(t);
}

// Rounded for reading (markdown) or every digit (CSV).
report::Table metrics_table(const SweepReport& r, bool full) {
  auto sig = [&](double v) { return full ? number(v) : analysis::sig(v); };
  report::Table t{.columns = {"value", "status", "KL mean", "KL median", "KL p99", "KL max", "top-1", "ppl",
                              "mean |Δ field|", "max |Δ field|", "mean |Δ value|", "max |Δ value|",
                              "% of original", "changed elements", "answers"},
                  .align = "rlrrrrrrrrrrrrl"};
  for (const auto& p : r.points) {
    std::string answers;
    for (bool ok : p.answers_ok) answers += ok ? "✓" : "✗";
    const Change& c = p.change;
    t.rows.push_back({number(p.value), p.status, sig(p.kl), sig(p.kl_median), sig(p.kl_p99), sig(p.kl_max),
                      full ? number(p.top1) : fixed(p.top1, 4), sig(p.ppl), sig(c.field_mean), sig(c.field_max), sig(c.value_mean),
                      sig(c.value_max), full ? number(r.config.at("edit").at("op") == "shift-words" ? p.change.word_pct : 100 * p.change.value_rel)
                           : percent_of_original(r, p),
                      std::to_string(c.elements_changed), answers});
  }
  return t;
}

std::string fields_line(const std::vector<int>& f) {
  std::string s;
  for (int x : f) s += fmt::format("{}{}", s.empty() ? "" : " ", x);
  return s;
}

std::string words_section(const SweepReport& r) {
  std::string s = "## What changed: real words of the tensor\n\nRow 0 of `" +
                  (r.points.empty() || r.points[0].words.empty() ? r.target : r.points[0].words[0].tensor) +
                  "`, fields low bits first (value = scale × field + bias).\n\n";
  report::Table t{.columns = {"value", "word", "before", "after", "fields before", "fields after", "values before",
                              "values after"},
                  .align = "rrllllll"};
  bool any = false;
  for (const auto& p : r.points)
    for (const auto& w : p.value == 0 ? std::vector<WordExample>{} : p.words) {
      auto vals = [](const std::vector<float>& v) {
        std::string out;
        for (float x : v) out += fmt::format("{}{:+.9g}", out.empty() ? "" : " ", x);
        return out;
      };
      t.rows.push_back({number(p.value), std::to_string(w.word), detail::hex_word(w.before), detail::hex_word(w.after),
                        fields_line(w.fields_before), fields_line(w.fields_after), vals(w.values_before),
                        vals(w.values_after)});
      any = true;
    }
  return any ? s + report::markdown(t) + "\n" : "";
}

std::string histogram_section(const SweepReport& r) {
  std::string s;
  for (const auto& p : r.points) {
    if (!p.fields || p.value == 0) continue;
    if (s.empty())
      s = "## Field changes over every word\n\nPer field position, the change Δ = after − before and the share "
          "of words where it happened (up to four most frequent).\n\n";
    s += fmt::format("**{} = {}**\n\n", op_name(r) == "shift-words" ? "shift" : "value", number(p.value));
    report::Table t{.columns = {"field", "changes"}, .align = "rl"};
    for (size_t j = 0; j < p.fields->counts.size(); ++j) {
      std::vector<std::pair<int64_t, int>> byc;
      int64_t total = 0;
      for (auto [d, n] : p.fields->counts[j]) byc.push_back({n, d}), total += n;
      std::sort(byc.rbegin(), byc.rend());
      std::string cell;
      for (size_t k = 0; k < byc.size() && k < 4; ++k)
        cell += fmt::format("{}{:+d} ({:.4g}%)", k ? ", " : "", byc[k].second, 100.0 * byc[k].first / total);
      t.rows.push_back({std::to_string(j), cell});
    }
    s += report::markdown(t) + "\n";
  }
  return s;
}

std::string borrow_section(const SweepReport& r) {
  if (op_name(r) != "shift-words" || r.points.empty() || r.points[0].words.empty()) return "";
  const WordExample& w0 = r.points[0].words[0];
  const int bits = w0.bits;
  if (bits != 2 && bits != 4 && bits != 8) return "";
  std::string s = fmt::format(
      "## Why: borrows across {}-bit fields\n\nSubtracting a shift S from a packed word subtracts S's base-{} "
      "digits from the fields, low field first, and a field that goes below 0 wraps (+{}) and borrows 1 from the "
      "next. Every field is one weight, and all weigh the same once dequantized (scale × field + bias): a borrow "
      "into field 7 changes a weight as much as one into field 0. Worked on word {} of row 0 (`{}`), {}:\n\n",
      bits, 1 << bits, 1 << bits, w0.word, w0.tensor, detail::hex_word(w0.before));
  for (const auto& p : r.points) {
    if (p.value == 0 || p.words.empty()) continue;
    const int64_t shift = static_cast<int64_t>(p.value);
    std::vector<BorrowStep> steps = borrow_steps(w0.before, shift, bits);
    uint32_t after = 0;
    for (const auto& st : steps) after |= static_cast<uint32_t>(st.after) << (st.field * bits);
    s += fmt::format("**S = {} = 0x{:X}**: {} − S = {} (the model holds {}{})\n\n", number(p.value),
                     static_cast<uint64_t>(std::llabs(shift)), detail::hex_word(w0.before), detail::hex_word(after),
                     detail::hex_word(p.words[0].after), after == p.words[0].after ? ", the same" : ", DIFFERENT");
    report::Table t{.columns = {"field", "before", "digit of S", shift < 0 ? "carry in" : "borrow in", "after",
                                "Δ", shift < 0 ? "carry out" : "borrow out"},
                    .align = "rrrrrrr"};
    for (const auto& st : steps)
      t.rows.push_back({std::to_string(st.field), std::to_string(st.before), std::to_string(st.digit),
                        std::to_string(st.borrow_in), std::to_string(st.after), fmt::format("{:+d}", st.after - st.before),
                        std::to_string(st.borrow_out)});
    s += report::markdown(t) + "\n";
  }
  return s;
}

}  // namespace

std::string sweep_markdown(const SweepReport& r) {
  std::string s = header(r);
  s += "## Results\n\n" + seed_table(r) + "\n";
  if (r.tipping_point)
    s += fmt::format("**Tipping point** ({}): between {} and {}.\n\n", r.config.at("criterion").dump(),
                     number(r.tipping_low), number(*r.tipping_point));
  s += "## Metrics\n\n" + report::markdown(metrics_table(r, false)) + "\n";
  s += words_section(r) + borrow_section(r) + histogram_section(r);
  return s;
}

std::string sweep_csv(const SweepReport& r) {
  report::Table t = metrics_table(r, true);
  for (size_t i = 0; i < r.points.size(); ++i)
    for (const auto& reply : r.points[i].replies) t.rows[i].push_back(reply);
  for (size_t k = 0; !r.points.empty() && k < r.points[0].replies.size(); ++k)
    t.columns.push_back(fmt::format("reply {}", k + 1));
  return report::csv(t);
}

std::string sweep_svg(const SweepReport& r) {
  static const std::map<std::string, std::string> colours = {
      {"healthy", "#9fd89a"}, {"degraded", "#ffe08a"}, {"collapsing", "#ffb26b"}, {"dead", "#f28b82"}};
  std::vector<const SweepPoint*> pts;
  for (const auto& p : r.points) pts.push_back(&p);
  const std::string kind = r.config.at("schedule").at("kind");
  if (kind != "list") std::sort(pts.begin(), pts.end(), [](auto a, auto b) { return a->value < b->value; });
  const std::string given = r.config.at("edit").at("target");
  const std::string title = given == r.target ? fmt::format("{} on {}", op_name(r), r.target)
                            : fmt::format("{} on {} ({}{})", op_name(r), given, r.target, r.tied_head ? ", tied" : "");
  report::PanelChart c{.title = title, .x_label = op_name(r) == "shift-words" ? "shift" : "value"};
  report::Panel kl{.label = "KL (nats/token)", .log_y = true}, top1{.label = "top-1 agreement"},
      ppl{.label = "perplexity", .log_y = true, .floor = 1}, dv{.label = "mean |Δ value|", .log_y = true, .floor = 1e-9};
  for (const SweepPoint* p : pts) {
    c.x.push_back(p->value);
    if (kind != "log-grid") c.x_labels.push_back(number(p->value));
    kl.y.push_back(p->kl), top1.y.push_back(p->top1), ppl.y.push_back(p->ppl), dv.y.push_back(p->change.value_mean);
    c.point_colors.push_back(colours.at(p->status));
  }
  c.log_x = kind == "log-grid";
  c.panels = {kl, top1, ppl, dv};
  for (const char* s : kStatuses) c.legend.push_back({colours.at(s), s});
  return report::svg(c);
}

std::vector<fs::path> write_sweep_report(const SweepReport& r, const fs::path& dir) {
  // Everything is rendered before the first file is written: a failure leaves no half report.
  const std::vector<std::pair<std::string, std::string>> files = {
      {"sweep.md", sweep_markdown(r)}, {"sweep.csv", sweep_csv(r)},
      {"sweep.json", json(r).dump(2, ' ', false, json::error_handler_t::replace) + "\n"}, {"sweep.svg", sweep_svg(r)}};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("[sweep] cannot create {}: {}", dir.string(), ec.message()));
  std::vector<fs::path> out;
  for (const auto& [name, text] : files) {
    write_file_atomic(dir / name, text);
    out.push_back(dir / name);
  }
  return out;
}

void to_json(json& j, const SweepPoint& p) {
  const Change& c = p.change;
  j = {{"value", p.value}, {"status", p.status}, {"replies", p.replies}, {"answers_ok", p.answers_ok},
       {"kl", num(p.kl)}, {"kl_median", num(p.kl_median)}, {"kl_p99", num(p.kl_p99)}, {"kl_max", num(p.kl_max)},
       {"top1", num(p.top1)}, {"ppl", num(p.ppl)},
       {"change", {{"elements_changed", c.elements_changed}, {"field_mean", num(c.field_mean)},
                   {"field_max", num(c.field_max)}, {"value_mean", num(c.value_mean)},
                   {"value_max", num(c.value_max)}, {"value_rel", num(c.value_rel)}, {"word_pct", num(c.word_pct)}}},
       {"edited_hash", detail::hex64(p.edited_hash)}};
  json words = json::array();
  for (const auto& w : p.words)
    words.push_back({{"tensor", w.tensor}, {"bits", w.bits}, {"row", w.row}, {"word", w.word}, {"before", w.before},
                     {"after", w.after}, {"before_hex", detail::hex_word(w.before)},
                     {"after_hex", detail::hex_word(w.after)}, {"fields_before", w.fields_before},
                     {"fields_after", w.fields_after}, {"values_before", w.values_before},
                     {"values_after", w.values_after}});
  j["words"] = words;
  if (p.fields) {
    json counts = json::array();
    for (const auto& m : p.fields->counts) {
      json row = json::object();
      for (auto [d, n] : m) row[std::to_string(d)] = n;
      counts.push_back(row);
    }
    j["field_changes"] = {{"bits", p.fields->bits}, {"counts", counts}};
  }
}

void from_json(const json& j, SweepPoint& p) {
  p.value = j.at("value").get<double>();
  p.status = j.at("status").get<std::string>();
  p.replies = j.at("replies").get<std::vector<std::string>>();
  p.answers_ok = j.at("answers_ok").get<std::vector<bool>>();
  p.kl = get_num(j, "kl"), p.kl_median = get_num(j, "kl_median"), p.kl_p99 = get_num(j, "kl_p99");
  p.kl_max = get_num(j, "kl_max"), p.top1 = get_num(j, "top1"), p.ppl = get_num(j, "ppl");
  const json& c = j.at("change");
  p.change = {.elements_changed = c.at("elements_changed").get<int64_t>(), .field_mean = get_num(c, "field_mean"),
              .field_max = get_num(c, "field_max"), .value_mean = get_num(c, "value_mean"),
              .value_max = get_num(c, "value_max"), .value_rel = get_num(c, "value_rel"),
              .word_pct = get_num(c, "word_pct")};
  p.edited_hash = std::stoull(j.at("edited_hash").get<std::string>(), nullptr, 16);
  p.words.clear();
  for (const auto& w : j.at("words"))
    p.words.push_back({.tensor = w.at("tensor"), .bits = w.at("bits"), .row = w.at("row"), .word = w.at("word"), .before = w.at("before"),
                       .after = w.at("after"), .fields_before = w.at("fields_before"),
                       .fields_after = w.at("fields_after"), .values_before = w.at("values_before"),
                       .values_after = w.at("values_after")});
  p.fields.reset();
  if (j.contains("field_changes")) {
    FieldHistogram h{.bits = j["field_changes"].at("bits")};
    for (const auto& row : j["field_changes"].at("counts")) {
      std::map<int, int64_t> m;
      for (auto& [d, n] : row.items()) m[std::stoi(d)] = n.get<int64_t>();
      h.counts.push_back(m);
    }
    p.fields = h;
  }
}

void to_json(json& j, const SweepReport& r) {
  j = {{"config", r.config}, {"model", r.model}, {"model_hash", detail::hex64(r.model_hash)},
       {"target", r.target}, {"tensors", r.tensors}, {"tied_head", r.tied_head}, {"untied", r.untied},
       {"head_note", r.head_note}, {"baseline", {{"replies", r.baseline_replies}, {"answers_ok", r.baseline_answers_ok}, {"ppl", num(r.baseline_ppl)}}},
       {"eval_tokens", r.eval_tokens}, {"points", r.points}};
  if (r.tipping_point) j["tipping_point"] = {{"first_past", *r.tipping_point}, {"last_before", r.tipping_low}};
}

}  // namespace lmlab::analysis
