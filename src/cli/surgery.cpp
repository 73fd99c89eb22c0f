// lmlab surgery: one edit on the tensors a name or glob selects, then the
// unedited and the edited model side by side (top-k next tokens, or greedy
// text with --generate), then the edit undone and checked bit-exact by hash.
// --save DIR writes the edited model as a new model directory.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct SurgeryOptions {
  ModelOptions model;
  PromptOptions prompt;
  std::string op;
  an::EditSpec edit;
  int k = 5;
  int generate_tokens = 0;
  std::string save;
  std::string tokenizer;
  bool json = false;
};

// What the model says about each prompt: top-k, or greedy text.
struct Reading {
  std::vector<an::Prediction> preds;
  std::vector<std::string> texts;
};

Reading read_model(const LoadedModel& m, const SurgeryOptions& o, const std::vector<std::string>& prompts) {
  Reading r;
  an::PredictOptions p{.k = o.k, .temperatures = {1.0f}, .chat_template = !o.prompt.no_chat_template,
                       .system = o.prompt.system};
  r.preds = an::predict(m, prompts, p);
  if (o.generate_tokens > 0)
    for (const auto& pr : r.preds) {
      GenerateOptions g;
      g.max_tokens = o.generate_tokens;
      g.sampler.temp = 0.0f;
      r.texts.push_back(generate(m, pr.ids, g).text);
    }
  return r;
}

json reading_json(const Reading& r, size_t i) {
  json j = {{"top", r.preds[i].top}, {"entropy_bits", r.preds[i].entropy}};
  if (i < r.texts.size()) j["text"] = r.texts[i];
  return j;
}

std::string pct(float p) {
  return p >= 1e-4f ? fmt::format("{:6.2f}%", 100 * p) : fmt::format("{:.0e}%", 100 * p);
}

std::string cell(const an::TokenProb& t) {
  return fmt::format("{:<14} {:>7} {:<10}", fmt::format("{:?}", an::visible(t.piece)), pct(t.prob),
                     an::bar(t.prob, 10));
}

void print_side_by_side(const Reading& before, const Reading& after, size_t i) {
  fmt::print("\nprompt {:?}\n  {:<34} {}\n", before.preds[i].prompt, "unedited", "edited");
  for (size_t j = 0; j < before.preds[i].top.size(); ++j)
    fmt::print("  {}  {}\n", cell(before.preds[i].top[j]), cell(after.preds[i].top[j]));
  fmt::print("  {:<34} {}\n", fmt::format("entropy {:.2f} bits", before.preds[i].entropy),
             fmt::format("entropy {:.2f} bits", after.preds[i].entropy));
  if (i < before.texts.size())
    fmt::print("  unedited: {:?}\n  edited:   {:?}\n", before.texts[i], after.texts[i]);
}

void run_surgery(SurgeryOptions& o) {
  check_usage([&] {
    o.edit.op = an::parse_edit_op(o.op);
    an::validate(o.edit);
    if (o.k < 1) throw std::invalid_argument(fmt::format("[surgery] top-k {}: must be >= 1", o.k));
    if (o.generate_tokens < 0)
      throw std::invalid_argument(fmt::format("[surgery] max-tokens {}: must be >= 0", o.generate_tokens));
  });
  std::vector<std::string> prompts = o.prompt.all(std::string("The capital of France is"));
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  // Refused before any edit, so a bad --tokenizer costs no model run.
  if (!o.save.empty()) an::check_save(m, o.save, o.tokenizer);
  uint64_t h0, h1, h2;
  Reading before, after;
  an::EditRecord rec;
  int restored = 0;
  {
    Activity busy("editing and comparing");
    h0 = an::weights_hash(*m.model);
    before = read_model(m, o, prompts);
    an::Surgery surgery(*m.model);
    rec = surgery.apply(o.edit);
    h1 = an::weights_hash(*m.model);
    after = read_model(m, o, prompts);
    if (!o.save.empty()) an::save_model(m, o.save, o.tokenizer);
    restored = surgery.restore();
    h2 = an::weights_hash(*m.model);
  }
  if (h2 != h0) throw std::logic_error("[surgery] restore did not give back the original bytes");
  if (o.json) {
    json cases = json::array();
    for (size_t i = 0; i < before.preds.size(); ++i)
      cases.push_back({{"prompt", before.preds[i].prompt}, {"unedited", reading_json(before, i)},
                       {"edited", reading_json(after, i)}});
    json out = rec;
    out.update({{"hash_before", fmt::format("{:016x}", h0)}, {"hash_edited", fmt::format("{:016x}", h1)},
                {"hash_restored", fmt::format("{:016x}", h2)}, {"restored_bit_exact", h2 == h0},
                {"cases", cases}});
    if (!o.save.empty()) out["saved"] = o.save;
    print_json(out);
    return;
  }
  fmt::print("edit: {} {} (value {:g}{}) on {} tensor{}, {} stored elements changed\n", o.op, o.edit.target,
             o.edit.value, o.edit.relative ? ", relative" : "", rec.tensors.size(), rec.tensors.size() == 1 ? "" : "s",
             rec.elements_changed);
  for (size_t i = 0; i < rec.tensors.size() && i < 6; ++i) fmt::print("  {}\n", rec.tensors[i]);
  if (rec.tensors.size() > 6) fmt::print("  … {} more\n", rec.tensors.size() - 6);
  for (size_t i = 0; i < before.preds.size(); ++i) print_side_by_side(before, after, i);
  fmt::print("\nweights hash: unedited {:016x}, edited {:016x}, restored {:016x} ({} tensors put back, bit-exact)\n",
             h0, h1, h2, restored);
  if (!o.save.empty()) fmt::print("saved the edited model to {}\n", o.save);
}

}  // namespace

void setup_surgery(CLI::App& app) {
  auto o = std::make_shared<SurgeryOptions>();
  o->model.add(app);
  app.add_option("op", o->op, "zero, scale, noise, set, shift-words, shift-fields, flip-bits")->required();
  app.add_option("target", o->edit.target, "tensor name, module name or glob")->required();
  app.add_option("-v,--value", o->edit.value,
                 "scale factor, noise sigma, constant, or the integer shift of words/fields")
      ->capture_default_str();
  app.add_flag("--relative", o->edit.relative, "noise sigma in units of the group scale (quantization steps)");
  app.add_option("--rate", o->edit.rate, "flip-bits: fraction of the stored bits flipped, in (0, 1]");
  app.add_option("--bits", o->edit.positions, "flip-bits: flat bit positions to flip")->delimiter(',');
  app.add_option("--seed", o->edit.seed, "seed of noise and random bit flips")
      ->capture_default_str()
      ->check(non_negative());
  o->prompt.add(app, /*many=*/true, "prompt to compare on (repeatable; default: \"The capital of France is\")");
  app.add_option("-k,--top-k", o->k, "next tokens shown")->capture_default_str();
  app.add_option("-n,--max-tokens,--generate", o->generate_tokens,
                 "also generate this many greedy tokens before and after the edit")
      ->capture_default_str();
  app.add_option("--save", o->save, "write the edited model as a new model directory (must not exist)");
  app.add_option("--tokenizer", o->tokenizer,
                 "folder whose tokenizer files --save copies (default: the model's own, written from a GGUF)");
  add_json_flag(app, o->json, "one object: the edit, hashes, and each prompt unedited and edited");
  app.callback([o] { run_surgery(*o); });
}

}  // namespace lmlab::cli
