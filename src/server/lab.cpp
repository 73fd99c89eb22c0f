// The lab API under /lab: the experiments of the lab commands (tokenize,
// embed, inspect, weights, attention, predict, surgery) as JSON routes for
// the web lab. Everything that runs the model goes through the scheduler, so
// lab calls interleave with API generations on the engine thread.
#include <fmt/format.h>

#include "lmlab/analysis.h"
#include "lmlab/context.h"
#include "server/errors.h"
#include "server/http.h"
#include "server/lab_json.h"
#include "server/params.h"

namespace lmlab::server {

namespace an = lmlab::analysis;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// The surgery in progress; only touched on the engine thread.
struct LabState {
  std::unique_ptr<an::Surgery> surgery;
  uint64_t original_hash = 0;
};

namespace {

constexpr int kMaxLabTokens = 512;     // prompts of the lab's forward passes
constexpr int kMaxAttentionTokens = 256;  // maps grow with the square of the length

std::vector<int> prompt_ids(const LoadedModel& m, const ojson& body, int max_tokens) {
  const std::string prompt = params::string(body, "prompt").value_or("");
  if (prompt.empty()) params::bad("prompt", "missing or empty");
  const bool chat = params::boolean(body, "chat").value_or(false);
  std::vector<int> ids = build_prompt(m, prompt, params::string(body, "system").value_or(""), chat);
  if (static_cast<int>(ids.size()) > max_tokens)
    params::bad("prompt", fmt::format("{} tokens; the lab takes at most {} here", ids.size(), max_tokens));
  return ids;
}

json tokenize(const LoadedModel& m, const ojson& body) {
  auto texts = params::strings(body, "texts", 8);
  if (!texts || texts->empty()) params::bad("texts", "give one to eight texts");
  const bool special = params::boolean(body, "add_special_tokens").value_or(true);
  const bool chat = params::boolean(body, "chat").value_or(false);
  const Tokenizer& tok = m.tokenizer;
  json results = json::array();
  for (const std::string& text : *texts) {
    if (text.size() > 100000) params::bad("texts", "a text is longer than 100000 bytes");
    std::vector<int> ids = chat ? build_prompt(m, text, "", true) : tok.encode(text, special);
    results.push_back(lab_json::tokens(tok, text, ids));
  }
  json out = {{"results", results}, {"vocab_size", tok.vocab_size()}, {"model_type", tok.model_type()},
              {"eos_ids", tok.eos_ids()}, {"bos_id", tok.bos_id() ? json(*tok.bos_id()) : json(nullptr)}};
  json specials = json::array();
  for (const auto& a : tok.added_tokens())
    if (a.special) specials.push_back({{"id", a.id}, {"content", a.content}});
  out["special_tokens"] = specials;
  return out;
}

json embeddings(const LoadedModel& m, const ojson& body) {
  std::vector<int> ids;
  if (auto id = params::integer(body, "id", 0, m.tokenizer.vocab_size() - 1)) ids.push_back(static_cast<int>(*id));
  else ids = m.tokenizer.encode(params::string(body, "text").value_or(""), /*add_special_tokens=*/false);
  if (ids.empty()) params::bad("text", "give a text with at least one token, or an id");
  if (ids.size() > 16) ids.resize(16);
  const int values = static_cast<int>(params::integer(body, "values", 1, 8192).value_or(64));
  const int k = static_cast<int>(params::integer(body, "k", 1, 100).value_or(10));
  json tokens = json::array();
  for (int id : ids) {
    std::vector<float> v = an::embedding_row(*m.model, id);
    std::vector<an::Neighbour> nb = an::nearest_tokens(*m.model, id, k);
    tokens.push_back(lab_json::embedding(m.tokenizer, id, v, values, nb));
  }
  json out = {{"tokens", tokens}};
  if (auto ctx = params::strings(body, "contexts", 2); ctx && ctx->size() == 2) {
    const int layer = static_cast<int>(params::integer(body, "layer", -1, 1 << 20).value_or(-1));
    std::vector<int> a = m.tokenizer.encode((*ctx)[0], false), b = m.tokenizer.encode((*ctx)[1], false);
    auto pa = std::find(a.begin(), a.end(), ids[0]), pb = std::find(b.begin(), b.end(), ids[0]);
    if (pa == a.end() || pb == b.end()) {
      out["context_error"] = "the token does not occur in both texts (mind the leading space)";
    } else {
      an::ContextCheck c = an::context_check(*m.model, a, static_cast<int>(pa - a.begin()), b,
                                             static_cast<int>(pb - b.begin()), layer);
      out["context_check"] = lab_json::context_check(m.tokenizer, c);
    }
  }
  return out;
}

json predict(const LoadedModel& m, const ojson& body) {
  std::vector<int> ids = prompt_ids(m, body, kMaxLabTokens);
  const int k = static_cast<int>(params::integer(body, "k", 1, 100).value_or(10));
  const float temp = static_cast<float>(params::number(body, "temperature", 0, 100).value_or(1.0));
  std::vector<float> logits = an::next_token_logits(*m.model, ids);
  an::Prediction p{.prompt = params::string(body, "prompt").value_or(""), .ids = ids, .temperature = temp,
                   .entropy = an::entropy_bits(logits, temp), .top = an::top_k(logits, k, temp)};
  an::fill_pieces(m.tokenizer, p.top);
  json out = {{"prediction", lab_json::prediction(p)}};
  if (params::boolean(body, "lens").value_or(false)) {
    const int lens_k = static_cast<int>(params::integer(body, "lens_k", 1, 20).value_or(3));
    // A wide top list per layer so the final prediction's probability can be read at every layer.
    std::vector<an::LensRow> rows = an::logit_lens(*m.model, ids, std::max(lens_k, 50));
    const int final_id = p.top.empty() ? -1 : an::top_k(logits, 1, 1.0f)[0].id;
    json lens = json::array();
    for (auto& r : rows) {
      float final_prob = 0;
      for (const auto& t : r.top)
        if (t.id == final_id) final_prob = t.prob;
      r.top.resize(std::min<size_t>(r.top.size(), lens_k));
      an::fill_pieces(m.tokenizer, r.top);
      json row = lab_json::lens_row(r);
      row["final_prob"] = final_prob;
      lens.push_back(row);
    }
    out["logit_lens"] = lens;
  }
  return out;
}

json attention(const LoadedModel& m, const ojson& body) {
  std::vector<int> ids = prompt_ids(m, body, kMaxAttentionTokens);
  std::vector<int> layers = params::integers(body, "layers", 0, 1 << 20, 4).value_or(std::vector<int>{0});
  std::vector<int> heads = params::integers(body, "heads", 0, 1 << 20, 256).value_or(std::vector<int>{});
  an::AttentionCapture cap = an::capture_attention(*m.model, ids, layers, heads);
  json tokens = json::array();
  for (int id : ids) tokens.push_back(m.tokenizer.decode(std::vector<int>{id}));
  return {{"ids", ids}, {"tokens", tokens}, {"q_shape", cap.q_shape}, {"k_shape", cap.k_shape},
          {"maps", lab_json::attention_maps(cap.maps)}};
}

json tensor(const LoadedModel& m, const ojson& body) {
  auto name = params::string(body, "name");
  if (!name) params::bad("name", "missing");
  an::ViewOptions o;
  o.row = static_cast<int>(params::integer(body, "row", 0, INT32_MAX).value_or(0));
  o.col = static_cast<int>(params::integer(body, "col", 0, INT32_MAX).value_or(0));
  o.count = static_cast<int>(params::integer(body, "count", 1, 4096).value_or(16));
  o.bins = static_cast<int>(params::integer(body, "bins", 1, 1000).value_or(24));
  return lab_json::tensor_view(an::view_tensor(*m.model, *name, o));
}

// ---------------------------------------------------------------- surgery

an::EditSpec edit_spec(const ojson& body) {
  an::EditSpec e;
  const std::string op = params::string(body, "op").value_or("");
  try {
    e.op = an::parse_edit_op(op);
  } catch (const std::invalid_argument& x) {
    params::bad("op", x.what());
  }
  auto target = params::string(body, "target");
  if (!target || target->empty()) params::bad("target", "missing (a tensor name or glob)");
  e.target = *target;
  e.value = params::number(body, "value", -1e30, 1e30).value_or(0);
  e.relative = params::boolean(body, "relative").value_or(false);
  e.rate = params::number(body, "rate", 0, 1).value_or(0);
  e.seed = static_cast<uint64_t>(params::integer(body, "seed", 0, INT64_MAX).value_or(0));
  if (auto bits = params::integers(body, "positions", 0, INT32_MAX, 100000))
    e.positions.assign(bits->begin(), bits->end());
  return e;
}

json reading(const LoadedModel& m, const std::vector<std::string>& prompts, int k, int generate_tokens, bool chat) {
  an::PredictOptions p{.k = k, .temperatures = {1.0f}, .chat_template = chat};
  std::vector<an::Prediction> preds = an::predict(m, prompts, p);
  json out = json::array();
  for (const auto& pr : preds) {
    json j = lab_json::prediction(pr);
    if (generate_tokens > 0) {
      GenerateOptions g;
      g.max_tokens = generate_tokens;
      j["text"] = generate(m, pr.ids, g).text;
    }
    out.push_back(j);
  }
  return out;
}

json surgery_apply(Scheduler& s, LabState& lab, LoadedModel& m, const ojson& body) {
  an::EditSpec e = edit_spec(body);
  auto prompts = params::strings(body, "prompts", 8).value_or(std::vector<std::string>{"The capital of France is"});
  const int k = static_cast<int>(params::integer(body, "k", 1, 50).value_or(5));
  const int gen = static_cast<int>(params::integer(body, "generate", 0, 128).value_or(0));
  const bool chat = params::boolean(body, "chat").value_or(false);
  for (const auto& p : prompts)
    if (m.tokenizer.encode(p).size() > static_cast<size_t>(kMaxLabTokens)) params::bad("prompts", "a prompt is too long");
  if (!lab.surgery) {
    lab.surgery = std::make_unique<an::Surgery>(*m.model);
    lab.original_hash = an::weights_hash(*m.model);
  }
  const uint64_t h0 = an::weights_hash(*m.model);
  json before = reading(m, prompts, k, gen, chat);
  const an::EditRecord rec = lab.surgery->apply(e);
  s.clear_prompt_cache();  // cached keys and values came from the old weights
  const uint64_t h1 = an::weights_hash(*m.model);
  json after = reading(m, prompts, k, gen, chat);
  json cases = json::array();
  for (size_t i = 0; i < prompts.size(); ++i)
    cases.push_back({{"prompt", prompts[i]}, {"unedited", before[i]}, {"edited", after[i]}});
  return {{"edit", lab_json::edit(rec.spec)}, {"tensors", rec.tensors}, {"elements_changed", rec.elements_changed},
          {"hash_before", fmt::format("{:016x}", h0)}, {"hash_edited", fmt::format("{:016x}", h1)}, {"cases", cases}};
}

json surgery_restore(Scheduler& s, LabState& lab, LoadedModel& m) {
  int restored = 0;
  if (lab.surgery) {
    restored = lab.surgery->restore();
    s.clear_prompt_cache();
  }
  const uint64_t h = an::weights_hash(*m.model);
  const bool exact = !lab.surgery || h == lab.original_hash;
  lab.surgery.reset();
  return {{"restored", restored}, {"hash", fmt::format("{:016x}", h)}, {"restored_bit_exact", exact}};
}

json surgery_state(const LabState& lab, const LoadedModel& m) {
  json edits = json::array();
  if (lab.surgery)
    for (const auto& r : lab.surgery->log()) edits.push_back(lab_json::edit(r.spec));
  return {{"edits", edits}, {"hash", fmt::format("{:016x}", an::weights_hash(*m.model))}};
}

json status(const ServerContext& c) {
  const SchedulerStats s = c.scheduler.stats();
  return {{"memory", {{"active_bytes", Context::active_memory()}, {"peak_bytes", Context::peak_memory()}}},
          {"scheduler", lab_json::scheduler(s)},
          {"uptime_seconds", std::chrono::duration<double>(std::chrono::system_clock::now() - c.started).count()}};
}

}  // namespace

bool lab_edit_applied(const ServerContext& c) { return c.lab && c.lab->surgery && !c.lab->surgery->log().empty(); }

void add_lab_routes(httplib::Server& svr, ServerContext& c) {
  c.lab = std::make_shared<LabState>();
  // A POST route whose function runs on the engine thread with the model.
  auto engine_post = [&](const char* path, json (*fn)(const LoadedModel&, const ojson&)) {
    svr.Post(path, guarded(authorized(c, [&c, fn](const httplib::Request& req, httplib::Response& res) {
      ojson body = parse_body(req);
      send_json(res, 200, c.scheduler.call([&](LoadedModel& m) { return fn(m, body); }));
    })));
  };
  engine_post("/lab/tokenize", tokenize);
  engine_post("/lab/embeddings", embeddings);
  engine_post("/lab/predict", predict);
  engine_post("/lab/attention", attention);
  engine_post("/lab/tensor", tensor);
  auto get = [&](const char* path, std::function<json()> fn) {
    svr.Get(path, guarded(authorized(c, [fn](const httplib::Request&, httplib::Response& res) { send_json(res, 200, fn()); })));
  };
  get("/lab/info", [&c] {
    return c.scheduler.call([&](LoadedModel& m) { return lab_json::info(m, c.model_id, c.options.device, an::inspect(*m.model)); });
  });
  get("/lab/params", [&c] { return c.scheduler.call([](LoadedModel& m) { return lab_json::summary(an::inspect(*m.model), true); }); });
  get("/lab/status", [&c] { return status(c); });
  get("/lab/surgery", [&c] { return c.scheduler.call([&](LoadedModel& m) { return surgery_state(*c.lab, m); }); });
  svr.Post("/lab/surgery/apply", guarded(authorized(c, [&c](const httplib::Request& req, httplib::Response& res) {
    ojson body = parse_body(req);
    send_json(res, 200, c.scheduler.call([&](LoadedModel& m) { return surgery_apply(c.scheduler, *c.lab, m, body); }));
  })));
  svr.Post("/lab/surgery/restore", guarded(authorized(c, [&c](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, c.scheduler.call([&](LoadedModel& m) { return surgery_restore(c.scheduler, *c.lab, m); }));
  })));
}

}  // namespace lmlab::server
