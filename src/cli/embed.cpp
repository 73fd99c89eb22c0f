// lmlab embed: the embedding vectors of tokens (first values, norm), their
// nearest neighbours in the vocabulary by cosine, and the proof that a token's
// vector is the same in every context (difference 0) while the hidden state
// after layer L is not.
#include <algorithm>
#include <iostream>

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

std::string quoted(const Tokenizer& tok, int id) {
  return fmt::format("{:?}", an::visible(tok.decode(std::vector<int>{id})));
}

int position_of(const std::vector<int>& ids, int id, const std::string& context) {
  auto it = std::find(ids.begin(), ids.end(), id);
  if (it == ids.end())
    throw std::invalid_argument(fmt::format(
        "[embed] token {} does not occur in the context {:?} (mind the leading space: ' cat' vs 'cat')", id, context));
  return static_cast<int>(it - ids.begin());
}

void run_embed(const EmbedOptions& o) {
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  const Tokenizer& tok = m.tokenizer;
  std::vector<int> ids = o.ids;
  for (const auto& t : o.texts)
    for (int id : tok.encode(t, /*add_special_tokens=*/false)) ids.push_back(id);
  if (ids.empty()) throw std::invalid_argument("[embed] give tokens: texts (e.g. ' cat' king) or --id N");

  json tokens = json::array();
  for (int id : ids) {
    std::vector<float> v = an::embedding_row(*m.model, id);
    std::vector<an::Neighbour> nb = an::nearest_tokens(*m.model, id, o.neighbours);
    const size_t n = std::min<size_t>(o.values, v.size());
    if (o.json) {
      json jn = json::array();
      for (const auto& x : nb) jn.push_back({{"id", x.id}, {"token", tok.decode(std::vector<int>{x.id})}, {"cosine", x.cosine}});
      tokens.push_back({{"id", id}, {"token", tok.decode(std::vector<int>{id})}, {"dim", v.size()},
                        {"values", std::vector<float>(v.begin(), v.begin() + n)}, {"norm", an::l2_norm(v)},
                        {"neighbours", jn}});
      continue;
    }
    fmt::print("token {} {}   dim {}   norm {:.4f}\n  first values:", id, quoted(tok, id), v.size(), an::l2_norm(v));
    for (size_t i = 0; i < n; ++i) fmt::print(" {:+.4f}", v[i]);
    fmt::print(" …\n  nearest by cosine:");
    for (const auto& x : nb) fmt::print("  {} {:.3f}", quoted(tok, x.id), x.cosine);
    fmt::print("\n\n");
  }

  json check;
  if (!o.contexts.empty()) {
    if (o.contexts.size() != 2) throw std::invalid_argument("[embed] --context takes exactly two texts");
    std::vector<int> a = tok.encode(o.contexts[0], false), b = tok.encode(o.contexts[1], false);
    const int id = ids[0];
    an::ContextCheck c = an::context_check(*m.model, a, position_of(a, id, o.contexts[0]), b,
                                           position_of(b, id, o.contexts[1]), o.layer);
    const int layer = c.layer;
    check = {{"id", id}, {"token", tok.decode(std::vector<int>{id})}, {"contexts", o.contexts}, {"layer", layer},
             {"embedding_max_abs_diff", c.embed_max_diff}, {"hidden_max_abs_diff", c.hidden_max_diff},
             {"hidden_cosine", c.hidden_cosine}};
    if (!o.json) {
      fmt::print("token {} in two contexts\n  A: {:?}\n  B: {:?}\n", quoted(tok, id), o.contexts[0], o.contexts[1]);
      fmt::print("  embedding (input of layer 0):  max |A - B| = {:g}   (the table row: context-free)\n",
                 c.embed_max_diff);
      fmt::print("  hidden state after layer {:<2}:   max |A - B| = {:g}   cosine {:.4f}   (mixed with its context)\n",
                 layer, c.hidden_max_diff, c.hidden_cosine);
    }
  }
  if (o.json) {
    json out = {{"tokens", tokens}};
    if (!check.is_null()) out["context_check"] = check;
    std::cout << out.dump(2) << "\n";
  }
}

}  // namespace

void setup_embed(CLI::App& app) {
  auto o = std::make_shared<EmbedOptions>();
  add_model_options(app, o->model);
  app.add_option("texts", o->texts, "texts whose tokens are shown (e.g. ' cat' king)");
  app.add_option("--id", o->ids, "token id (repeatable)");
  app.add_option("-n,--values", o->values, "leading values shown")->capture_default_str();
  app.add_option("-k,--neighbours", o->neighbours, "nearest tokens by cosine")->capture_default_str();
  app.add_option("--context", o->contexts, "two texts holding the first token: compare its vectors there");
  app.add_option("--layer", o->layer, "layer of the hidden-state comparison (default: the middle one)");
  app.add_flag("--json", o->json, "print JSON");
  app.callback([o] { run_embed(*o); });
}

}  // namespace lmlab::cli
