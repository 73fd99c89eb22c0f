// The measurements every sweep point and atlas entry repeats: the model's
// next-token distributions over an evaluation text against the unperturbed
// model's (computed once, the baseline).
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "analysis/sweep_internal.h"
#include "lmlab/model.h"
#include "quant/scoring.h"

namespace mx = mlx::core;

namespace lmlab::analysis {

const std::string& default_eval_text() {
  static const std::string text =
      "The river town woke early. Before six o'clock the baker had lit the oven, and by seven the first "
      "loaves were cooling on the racks by the window. Most mornings she sold about two hundred rolls, "
      "forty loaves of rye and a dozen cakes, although on market days the numbers nearly doubled.\n\n"
      "Across the square, the old clock on the town hall ran four minutes slow. Nobody had fixed it for "
      "years, because everyone had learned to add the missing minutes in their heads. Children were "
      "taught the trick at school, together with the names of the planets, the capital cities of Europe "
      "and the rule that water boils at one hundred degrees Celsius at sea level.\n\n"
      "In spring the river rose and the ferry stopped running for a week or two. Then the town was quiet: "
      "the trucks could not cross, the post arrived late, and people walked along the bank to see how high "
      "the water had climbed. \"It was higher in 1987,\" the ferryman would say, pointing at a mark painted "
      "on the wall of his hut. \"Up to here. We moved the chairs upstairs and waited.\"\n\n"
      "The library opened at ten. It held eleven thousand books, a map of the valley drawn in 1902, and a "
      "computer that printed slowly. Students came in the afternoon to study mathematics and history; "
      "one of them was writing a report on how the bridge had been built, stone by stone, over three summers.";
  return text;
}

namespace detail {

std::vector<int> eval_tokens(const LoadedModel& m, const std::vector<int>& given) {
  std::vector<int> ids = given.empty() ? m.tokenizer.encode(default_eval_text(), /*add_special_tokens=*/true) : given;
  const int vocab = m.model->config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab)
      throw std::invalid_argument(fmt::format(
          "[sweep] the evaluation text has token id {}, outside the model's vocabulary of {}", id, vocab));
  if (ids.size() < 2) throw std::invalid_argument("[sweep] the evaluation text needs at least 2 tokens");
  return ids;
}

Baseline make_baseline(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o,
                       bool keep_residuals) {
  Baseline b;
  b.windows = quant::plan_windows(static_cast<int64_t>(tokens.size()), o);
  const int blocks = m.config().num_hidden_layers;
  std::vector<double> nll;
  for (auto batch : quant::detail::batches(b.windows, o)) {
    nn::Hooks hooks;
    hooks.residual = true;
    quant::detail::Scored s = quant::detail::score(m, tokens, batch, keep_residuals ? &hooks : nullptr);
    std::vector<mx::array> outs{s.logprobs, s.targets};
    if (keep_residuals) {
      b.residuals.emplace_back();
      for (int l = 0; l < blocks; ++l) {
        b.residuals.back().push_back(hooks.captured.at(fmt::format("layers.{}.residual", l)));
        outs.push_back(b.residuals.back().back());
      }
    }
    mx::eval(outs);
    quant::detail::append(nll, quant::detail::nll(s.logprobs, s.targets));
    b.logprobs.push_back(s.logprobs);
    b.targets.push_back(s.targets);
  }
  b.ppl = std::exp(quant::summarize(nll).mean);
  return b;
}

Divergence diverge(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o,
                   const Baseline& b, int first_layer) {
  std::vector<double> kl, same, nll;
  size_t i = 0;
  for (auto batch : quant::detail::batches(b.windows, o)) {
    // Block first_layer − 1's output replaced by the baseline's: the blocks
    // before it are then no part of the graph and never run.
    nn::Hooks start;
    const bool skip = first_layer > 0 && i < b.residuals.size();
    if (skip) {
      const std::string name = fmt::format("layers.{}.residual", first_layer - 1);
      const mx::array& cached = b.residuals[i][first_layer - 1];
      start.layers = {first_layer - 1};
      start.edit = [name, cached](const std::string& n, const mx::array& value) { return n == name ? cached : value; };
    }
    quant::detail::Scored s = quant::detail::score(m, tokens, batch, skip ? &start : nullptr);
    quant::detail::Compared c = quant::detail::compare(b.logprobs[i++], s.logprobs, s.targets);
    mx::eval({c.kl, c.same_top1, c.nll});
    quant::detail::append(kl, c.kl);
    quant::detail::append(same, c.same_top1);
    quant::detail::append(nll, c.nll);
  }
  Divergence d;
  d.kl = quant::summarize(std::move(kl));
  d.top1 = quant::summarize(std::move(same)).mean;
  d.ppl = std::exp(quant::summarize(std::move(nll)).mean);
  return d;
}

int first_layer_changed(const Model& m, const std::vector<std::string>& tensors) {
  const int blocks = m.config().num_hidden_layers;
  int first = blocks;
  for (const std::string& t : tensors) {
    int layer = 0;
    if (t.rfind("lm_head.", 0) == 0 || t.rfind("model.norm.", 0) == 0) layer = blocks;
    else if (std::sscanf(t.c_str(), "model.layers.%d.", &layer) != 1 || layer < 0 || layer > blocks) layer = 0;
    first = std::min(first, layer);
  }
  return first;
}

bool keep_residuals(const Model& m, const std::vector<int>& tokens, const quant::WindowOptions& o, int first_layer) {
  if (first_layer <= 0) return false;
  size_t positions = 0;
  const std::vector<quant::Window> windows = quant::plan_windows(static_cast<int64_t>(tokens.size()), o);
  for (auto batch : quant::detail::batches(windows, o)) {
    int64_t width = 0;
    for (const quant::Window& w : batch) width = std::max(width, w.end - w.begin);
    positions += batch.size() * static_cast<size_t>(width);
  }
  const size_t bytes = positions * m.config().num_hidden_layers * m.config().hidden_size * sizeof(float);
  return bytes <= kResidualBudget;
}

}  // namespace detail

}  // namespace lmlab::analysis
