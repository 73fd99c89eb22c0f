// Sweeps: one surgery edit applied at a schedule of strengths, the model
// measured at each point against its unperturbed self (greedy answers, KL and
// top-1 agreement over an evaluation text, perplexity, how much the stored
// fields and the values moved), each point classified healthy / degraded /
// collapsing / dead; and the sensitivity atlas, every tensor of every layer
// perturbed in turn at one strength. MLX-free, like analysis.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lmlab/analysis.h"
#include "lmlab/progress.h"
#include "lmlab/quant.h"

namespace lmlab::analysis {

// ---------------------------------------------------------------- the head

// `lm_head` names the output head on every model: on a tied model the name
// (and lm_head.* names) resolve to model.embed_tokens, whose edits then change
// the input embedding as well. Other names pass through.
struct ResolvedTarget {
  std::string target{};  // what Surgery receives
  bool tied_head = false;  // lm_head resolved to the tied embedding
};
ResolvedTarget resolve_target(const Model& m, const std::string& target);

// The same model with the output head as its own tensors: lm_head.* hold the
// embedding's arrays (shared, not copied: surgery swaps handles, so an edit of
// one never reaches the other) and tie_word_embeddings is false. Logits are
// bit-identical to the tied model's. Throws std::invalid_argument for an
// untied model.
LoadedModel untie(const LoadedModel& m);

// ---------------------------------------------------------------- sweep

// The seed notebook's shifts: 0, 1, 1e6, 1e6+1, 1e6+3, 1e6+4, 1e6+5, 1e6+10, 1e7, 1e8.
std::vector<double> seed_shifts();

struct Schedule {
  enum class Kind { List, LogGrid, Bisect };
  Kind kind = Kind::List;
  std::vector<double> values = seed_shifts();  // List
  double lo = 0, hi = 0;  // LogGrid (0 < lo < hi) and Bisect (lo < hi)
  int points = 0;         // LogGrid: geometric points from lo to hi, both included (≥ 2)
  double resolution = 1;  // Bisect: stop when hi − lo ≤ resolution
};
void validate(const Schedule& s, bool integer_values);

// When is a point past the tipping point (bisection). metric: "status" (at
// least `status`), "kl" (≥ threshold), "top1" (≤ threshold), "ppl_ratio"
// (≥ threshold), "answers" (an answer check fails that the unperturbed model passes).
struct Criterion {
  std::string metric = "status";
  double threshold = 0;
  std::string status = "degraded";
};
Criterion parse_criterion(const std::string& text);

// The bisection behind Schedule::Kind::Bisect: `past(v)` must be false at lo
// and true at hi (else std::invalid_argument naming `what`); halves the
// bracket until hi − lo ≤ resolution (integers: midpoints rounded down, down
// to adjacent integers). Returns {last value not past, first value past}.
std::pair<double, double> bisect(double lo, double hi, double resolution, bool integers,
                                 const std::function<bool(double)>& past, const std::string& what);  // "kl>=0.5", "top1<=0.9", "status>=collapsing", "answers"

// Points are healthy when KL ≤ healthy_kl and no answer check fails that the
// unperturbed model passes; degraded up to degraded_kl (or such a failed
// answer below it), collapsing up to collapsing_kl, dead beyond. KL: mean nats
// per token of the evaluation text against the unperturbed model.
struct Thresholds {
  double healthy_kl = 0.05;
  double degraded_kl = 0.5;
  double collapsing_kl = 3.0;
};
void validate(const Thresholds& t);
extern const char* const kStatuses[4];  // "healthy", "degraded", "collapsing", "dead"

struct SweepOptions {
  EditSpec edit{.target = "lm_head", .op = EditOp::ShiftWords};  // value comes from the schedule
  bool untie = false;
  Schedule schedule{};
  std::vector<std::string> prompts = {"What is 2+2?"};
  std::vector<std::string> expect = {"4"};  // a regex per prompt (one: for all); the reply must contain a match
  int max_tokens = 10;                      // greedy
  bool chat_template = true;
  std::string system{};
  std::vector<int> eval_tokens{};   // empty: the built-in evaluation text (default_eval_text)
  std::string eval_source{};        // where eval_tokens came from, for the report
  quant::WindowOptions windows{.context = 256, .stride = 256};
  Thresholds thresholds{};
  Criterion criterion{};
  int example_words = 4;            // words shown before and after (quantized weights)
  std::string state_file{};         // "" or a JSON file kept after every point, for resuming
};

// A short English passage (about 300 tokens) used when no --text is given.
const std::string& default_eval_text();

// What the edit did to the stored numbers, over every edited tensor.
struct Change {
  int64_t elements_changed = 0;          // stored elements whose bytes differ
  double field_mean = 0, field_max = 0;  // |Δ field| of quantized weights (steps); 0 for dense
  double value_mean = 0, value_max = 0;  // |Δ dequantized value|
  double value_rel = 0;                  // mean |Δ value| / mean |value|
  double word_pct = 0;                   // shift-words: shift / mean word × 100 (the seed's column)
};

// One packed word before and after an edit.
struct WordExample {
  std::string tensor{};
  int bits = 0;
  int row = 0, word = 0;
  uint32_t before = 0, after = 0;
  std::vector<int> fields_before{}, fields_after{};
  std::vector<float> values_before{}, values_after{};
};

// How subtracting a shift from one word moves its n-bit fields: digit d_j of
// the shift in base 2^bits, the borrow coming in from field j − 1, and the
// field's new value (f − d − borrow, wrapped), low field first.
struct BorrowStep {
  int field = 0, before = 0, digit = 0, borrow_in = 0, after = 0, borrow_out = 0;
};
std::vector<BorrowStep> borrow_steps(uint32_t word, int64_t shift, int bits);

// Per field position j, how often each change Δ = after − before occurred
// (over every word of the edited quantized weights).
struct FieldHistogram {
  int bits = 0;
  std::vector<std::map<int, int64_t>> counts{};  // [field position][Δ] = words
};

struct SweepPoint {
  double value = 0;
  std::vector<std::string> replies{};
  std::vector<bool> answers_ok{};
  double kl = 0, kl_median = 0, kl_p99 = 0, kl_max = 0;  // nats per token
  double top1 = 1;                                       // agreement with the baseline
  double ppl = 0;
  Change change{};
  std::string status{};
  std::vector<WordExample> words{};
  std::optional<FieldHistogram> fields{};
  uint64_t edited_hash = 0;  // of the edited tensors while edited
};

struct SweepReport {
  nlohmann::json config{};  // options, model, hash, version: what makes a run the same run
  std::string model{};
  uint64_t model_hash = 0;
  std::string target{};                 // as resolved
  std::vector<std::string> tensors{};   // edited
  bool tied_head = false, untied = false;
  std::string head_note{};              // what "lm_head" meant in this run
  std::vector<std::string> baseline_replies{};
  std::vector<bool> baseline_answers_ok{};
  double baseline_ppl = 0;
  int64_t eval_tokens = 0;
  std::vector<SweepPoint> points{};     // in evaluation order
  std::optional<double> tipping_point{};  // Bisect: the first value meeting the criterion
  double tipping_low = 0;                 // ... and the last value that does not
  int resumed = 0;                        // points read back from the state file
};

// Runs the sweep on `m` (restored bit-exactly after every point; a failed
// hash check throws std::logic_error). progress: unit "points". With a
// state_file, points already in it (same configuration) are not recomputed;
// a state file of a different configuration is refused.
SweepReport run_sweep(const LoadedModel& m, const SweepOptions& o, const ProgressCallback& progress = {});

// The report's files: sweep.md (the seed's table, what changed, the borrow
// explanation), sweep.csv, sweep.json, sweep.svg, each written atomically.
// Returns the paths written.
std::vector<std::filesystem::path> write_sweep_report(const SweepReport& r, const std::filesystem::path& dir);
std::string sweep_markdown(const SweepReport& r);
std::string sweep_csv(const SweepReport& r);
std::string sweep_svg(const SweepReport& r);

void to_json(nlohmann::json& j, const SweepPoint& p);
void from_json(const nlohmann::json& j, SweepPoint& p);
void to_json(nlohmann::json& j, const SweepReport& r);

// ---------------------------------------------------------------- atlas

struct AtlasOptions {
  std::string mode = "noise";  // "noise": Gaussian noise of `level` (quantized: in quantization
                               // steps; dense: × the tensor's RMS); "requantize": to `bits`, `group_size`
  double level = 1.0;
  int bits = 3;
  int group_size = 64;
  uint64_t seed = 0;
  // q, k, v, o, gate, up, down per layer; embed and head once. On a tied model
  // embed perturbs the input side only and head the output side only (an
  // untied copy), and "tied" both at once.
  std::vector<std::string> kinds = {"q", "k", "v", "o", "gate", "up", "down", "embed", "head"};
  std::vector<int> layers{};  // empty: all
  std::vector<int> eval_tokens{};
  std::string eval_source{};
  quant::WindowOptions windows{.context = 256, .stride = 256};
};

struct AtlasEntry {
  std::string kind{};
  int layer = -1;  // -1: embed, head, tied
  std::string tensor{};
  int64_t params = 0;
  double kl = 0, kl_se = 0, top1 = 0, ppl = 0;
  double seconds = 0;
};

struct Atlas {
  nlohmann::json config{};
  std::string model{};
  uint64_t model_hash = 0;
  bool tied = false;
  double baseline_ppl = 0;
  int64_t eval_tokens = 0;
  std::vector<AtlasEntry> entries{};
  double seconds = 0, baseline_seconds = 0, edit_seconds = 0, eval_seconds = 0;
};

Atlas run_atlas(const LoadedModel& m, const AtlasOptions& o, const ProgressCallback& progress = {});
// atlas.md (ranked table, timing), atlas.json, atlas.svg (layer × tensor heatmap).
std::vector<std::filesystem::path> write_atlas_report(const Atlas& a, const std::filesystem::path& dir);
std::string atlas_markdown(const Atlas& a);
std::string atlas_svg(const Atlas& a);
void to_json(nlohmann::json& j, const Atlas& a);
// Reads atlas.json back; throws naming the file for anything else.
Atlas read_atlas(const std::filesystem::path& file);
// What the atlas recipe of `lmlab convert` needs: KL per module prefix. On a
// tied model the embedding's entry is "tied" (both sides, as quantizing the
// shared tensor changes both).
quant::Sensitivity sensitivity(const Atlas& a);

}  // namespace lmlab::analysis
