// lmlab embed: the embedding vectors of tokens (first values, norm), their
// nearest neighbours in the vocabulary by cosine, and the proof that a token's
// vector is the same in every context (difference 0) while the hidden state
// after layer L is not.
#include <algorithm>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct EmbedOptions {
  ModelOptions model;
  std::vector<std::string> texts;
  std::vector<int> ids;
  int values = 8;
  int neighbours = 8;
  std::vector<std::string> contexts;
  int layer = -1;
  bool json = false;
};

std::string show_piece(const std::string& piece) { return fmt::format("{:?}", an::visible(piece)); }

int position_of(const std::vector<int>& ids, int id, const std::string& context) {
  auto it = std::find(ids.begin(), ids.end(), id);
  if (it == ids.end())
    throw std::invalid_argument(fmt::format(
        "[embed] token {} does not occur in the context {:?} (mind the leading space: ' cat' vs 'cat')", id, context));
  return static_cast<int>(it - ids.begin());
}

void run_embed(const EmbedOptions& o) {
  check_usage([&] {
    if (o.values < 0) throw std::invalid_argument(fmt::format("[embed] values {}: must be >= 0", o.values));
    if (o.neighbours < 0)
      throw std::invalid_argument(fmt::format("[embed] neighbours {}: must be >= 0", o.neighbours));
    if (!o.contexts.empty() && o.contexts.size() != 2)
      throw std::invalid_argument("[embed] --context takes exactly two texts");
    if (o.layer < -1) throw std::invalid_argument(fmt::format("[embed] layer {}: must be >= 0", o.layer));
  });
  for (const auto& t : o.texts) check_utf8(t, "a text");
  for (const auto& t : o.contexts) check_utf8(t, "--context");
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  const Tokenizer& tok = m.tokenizer;
  std::vector<int> ids = o.ids;
  for (const auto& t : o.texts)
    for (int id : tok.encode(t, /*add_special_tokens=*/false)) ids.push_back(id);
  if (ids.empty()) throw UsageError("[embed] give tokens: texts (e.g. ' cat' king) or --id N");

  std::vector<an::TokenEmbedding> rows;
  std::optional<an::ContextCheck> check;
  {
    Activity busy("reading embeddings");
    for (int id : ids) rows.push_back(an::token_embedding(m, id, o.values, o.neighbours));
    if (!o.contexts.empty()) {
      std::vector<int> a = tok.encode(o.contexts[0], false), b = tok.encode(o.contexts[1], false);
      check = an::context_check(*m.model, a, position_of(a, ids[0], o.contexts[0]), b,
                                position_of(b, ids[0], o.contexts[1]), o.layer);
    }
  }
  if (o.json) {
    json out = {{"tokens", rows}};
    if (check) {
      out["context_check"] = *check;
      out["context_check"]["token"] = rows[0].piece;
      out["context_check"]["contexts"] = o.contexts;
    }
    print_json(out);
    return;
  }
  for (const auto& e : rows) {
    fmt::print("token {} {}   dim {}   norm {:.4f}\n  first values:", e.id, show_piece(e.piece), e.dim, e.norm);
    for (float v : e.values) fmt::print(" {:+.4f}", v);
    fmt::print(" …\n  nearest by cosine:");
    for (const auto& x : e.neighbours) fmt::print("  {} {:.3f}", show_piece(x.piece), x.cosine);
    fmt::print("\n\n");
  }
  if (check) {
    fmt::print("token {} in two contexts\n  A: {:?}\n  B: {:?}\n", show_piece(rows[0].piece), o.contexts[0], o.contexts[1]);
    fmt::print("  embedding (input of layer 0):  max |A - B| = {:g}   (the table row: context-free)\n",
               check->embed_max_diff);
    fmt::print("  hidden state after layer {:<2}:   max |A - B| = {:g}   cosine {:.4f}   (mixed with its context)\n",
               check->layer, check->hidden_max_diff, check->hidden_cosine);
  }
}

}  // namespace

void setup_embed(CLI::App& app) {
  auto o = std::make_shared<EmbedOptions>();
  o->model.add(app);
  app.add_option("texts", o->texts, "texts whose tokens are shown (e.g. ' cat' king)");
  app.add_option("--id", o->ids, "token id (repeatable)");
  app.add_option("--values", o->values, "leading values shown")->capture_default_str();
  app.add_option("-k,--top-k,--neighbours", o->neighbours, "nearest tokens shown (by cosine)")->capture_default_str();
  app.add_option("--context", o->contexts, "two texts holding the first token: compare its vectors there");
  app.add_option("-l,--layer", o->layer, "layer of the hidden-state comparison (default: the middle one)");
  add_json_flag(app, o->json, "each token's values, norm and neighbours, and the context check");
  app.callback([o] { run_embed(*o); });
}

}  // namespace lmlab::cli
