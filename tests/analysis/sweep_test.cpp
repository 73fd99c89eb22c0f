// sweep: the seed notebook's word arithmetic by hand (0x5098B7A7 − 1,000,000 =
// 0x50897567, field by field); a zero perturbation reproduces the baseline
// exactly; bisection finds a planted threshold; an interrupted sweep resumes
// to the same report; untying leaves the logits bit-identical and keeps edits
// of the head off the input side; bad input is refused before any report.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "analysis/lab_test_util.h"
#include "analysis/sweep_internal.h"
#include "lmlab/sweep.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;
namespace fs = std::filesystem;

TEST(Sweep, BorrowsOfTheSeedShiftByHand) {
  // 0x5098B7A7 has 4-bit fields (low first) 7 10 7 11 8 9 0 5; 1,000,000 = 0x000F4240 has digits 0 4 2 4 15 0 0 0.
  auto steps = an::borrow_steps(0x5098B7A7u, 1000000, 4);
  ASSERT_EQ(steps.size(), 8u);
  const int before[] = {7, 10, 7, 11, 8, 9, 0, 5}, digit[] = {0, 4, 2, 4, 15, 0, 0, 0};
  const int after[] = {7, 6, 5, 7, 9, 8, 0, 5}, borrow_out[] = {0, 0, 0, 0, 1, 0, 0, 0};
  uint32_t word = 0;
  for (int j = 0; j < 8; ++j) {
    EXPECT_EQ(steps[j].before, before[j]) << j;
    EXPECT_EQ(steps[j].digit, digit[j]) << j;
    EXPECT_EQ(steps[j].after, after[j]) << j;
    EXPECT_EQ(steps[j].borrow_out, borrow_out[j]) << j;
    word |= static_cast<uint32_t>(steps[j].after) << (4 * j);
  }
  EXPECT_EQ(word, 0x50897567u);
  // Field 4 subtracts 15 and wraps to +1, borrowing from field 5, which loses 1.
  EXPECT_EQ(steps[5].borrow_in, 1);
  // A negative shift adds, carrying.
  auto up = an::borrow_steps(0x0000000Fu, -1, 4);
  EXPECT_EQ(up[0].after, 0);
  EXPECT_EQ(up[1].after, 1);
  EXPECT_THROW(an::borrow_steps(0, 1, 3), std::invalid_argument);
}

TEST(Sweep, ShiftWordsOnARealWordGivesTheHandComputedFields) {
  auto m = load_tiny("llama_q4");
  const std::string w = "model.layers.0.self_attn.q_proj.weight";
  // Plant the seed's word as word 0 of row 0.
  mx::array words = m->weights().at(w);
  std::vector<uint32_t> flat(words.size());
  mx::array c = mx::contiguous(words);
  mx::eval(c);
  std::copy(c.data<uint32_t>(), c.data<uint32_t>() + c.size(), flat.begin());
  flat[0] = 0x5098B7A7u;
  m->weights().set(w, mx::array(flat.begin(), words.shape(), mx::uint32));
  const Weights before = m->weights();
  an::Surgery s(*m);
  auto rec = s.apply({.target = w, .op = an::EditOp::ShiftWords, .value = 1e6});
  auto ex = an::detail::example_words(before, m->weights(), rec.tensors, 1);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].before, 0x5098B7A7u);
  EXPECT_EQ(ex[0].after, 0x50897567u);
  EXPECT_EQ(ex[0].fields_before, (std::vector<int>{7, 10, 7, 11, 8, 9, 0, 5}));
  EXPECT_EQ(ex[0].fields_after, (std::vector<int>{7, 6, 5, 7, 9, 8, 0, 5}));
  // The histogram over every word: in field 1 the digit 4 is subtracted (−4), or +12 when the field wraps.
  an::detail::Measured measured = an::detail::measure(before, m->weights(), rec.tensors);
  const auto& h = measured.fields;
  ASSERT_TRUE(h);
  for (const auto& [delta, n] : h->counts[1]) EXPECT_TRUE(delta == -4 || delta == -5 || delta == 12 || delta == 11) << delta;
  for (const auto& [delta, n] : h->counts[7]) EXPECT_TRUE(delta == 0 || delta == -1 || delta == 15) << delta;
  const an::Change& ch = measured.change;
  EXPECT_GT(ch.field_mean, 0);
  EXPECT_EQ(ch.field_max, 15);
}

TEST(Sweep, BisectionFindsAPlantedThreshold) {
  std::vector<double> asked;
  auto past = [&](double v) {
    asked.push_back(v);
    return v >= 1000007;
  };
  auto [lo, hi] = an::bisect(0, 1e8, 1, /*integers=*/true, past, "planted");
  EXPECT_EQ(lo, 1000006);
  EXPECT_EQ(hi, 1000007);
  EXPECT_LE(asked.size(), 30u);  // log2(1e8) + 2
  auto [flo, fhi] = an::bisect(0.0, 1.0, 1e-6, /*integers=*/false, [](double v) { return v >= 0.3; }, "planted");
  EXPECT_LE(flo, 0.3);
  EXPECT_GE(fhi, 0.3);
  EXPECT_LE(fhi - flo, 1e-6);
  EXPECT_THROW(an::bisect(5, 10, 1, true, [](double) { return true; }, "always"), std::invalid_argument);
  EXPECT_THROW(an::bisect(5, 10, 1, true, [](double) { return false; }, "never"), std::invalid_argument);
}

// A short sweep: 64 evaluation tokens of the built-in text, 10-token replies.
an::SweepOptions quick(const std::vector<double>& values) {
  an::SweepOptions o;
  o.schedule.values = values;
  o.eval_tokens = default_model().tokenizer.encode(an::default_eval_text());
  o.eval_tokens.resize(65);
  o.windows = {.context = 64, .stride = 64};
  return o;
}

TEST(Sweep, ZeroPerturbationReproducesTheBaselineExactly) {
  LoadedModel& m = default_model();
  const uint64_t h0 = an::weights_hash(*m.model);
  an::SweepReport r = an::run_sweep(m, quick({0}));
  ASSERT_EQ(r.points.size(), 1u);
  const an::SweepPoint& p = r.points[0];
  EXPECT_EQ(p.kl, 0.0);
  EXPECT_EQ(p.kl_max, 0.0);
  EXPECT_EQ(p.top1, 1.0);
  EXPECT_EQ(p.ppl, r.baseline_ppl);
  EXPECT_EQ(p.replies, r.baseline_replies);
  EXPECT_EQ(p.status, "healthy");
  EXPECT_EQ(p.change.elements_changed, 0);
  EXPECT_TRUE(r.tied_head);  // lm_head of the default model is its embedding
  EXPECT_EQ(r.target, "model.embed_tokens");
  EXPECT_EQ(an::weights_hash(*m.model), h0);
  // The report: four files, or none when the folder cannot be made.
  auto dir = temp_dir("sweep-report");
  EXPECT_EQ(an::write_sweep_report(r, dir / "out").size(), 4u);
  for (const char* f : {"sweep.md", "sweep.csv", "sweep.json", "sweep.svg"}) EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
  std::ofstream(dir / "file") << "x";
  EXPECT_THROW(an::write_sweep_report(r, dir / "file" / "out"), std::runtime_error);
}

TEST(Sweep, ShiftsOfTheHeadDegradeAndAreUndone) {
  LoadedModel& m = default_model();
  const uint64_t h0 = an::weights_hash(*m.model);
  an::SweepOptions o = quick({0, 1e6, 1e8});
  o.untie = true;
  an::SweepReport r = an::run_sweep(m, o);
  ASSERT_EQ(r.points.size(), 3u);
  EXPECT_TRUE(r.untied);
  EXPECT_EQ(r.target, "lm_head");
  EXPECT_EQ(r.points[0].kl, 0.0);
  EXPECT_GT(r.points[2].kl, r.points[1].kl);  // 1e8 moves every field far more than 1e6
  EXPECT_NE(r.points[2].status, "healthy");
  // The seed's "percent of the original value": the shift over the mean packed word.
  const double mean_word = an::detail::mean_word(m.model->weights(), {"model.embed_tokens.weight"});
  EXPECT_NEAR(r.points[1].change.word_pct, 100.0 * 1e6 / mean_word, 1e-9);
  ASSERT_FALSE(r.points[1].words.empty());
  EXPECT_EQ(r.points[1].words[0].after, static_cast<uint32_t>(static_cast<int64_t>(r.points[1].words[0].before) - 1000000));
  EXPECT_EQ(an::weights_hash(*m.model), h0);
  std::string md = an::sweep_markdown(r);
  EXPECT_NE(md.find("| 1000000 |"), std::string::npos);  // full precision, never 1e+06
  EXPECT_NE(md.find("borrow"), std::string::npos);
}

TEST(Sweep, UntyingKeepsLogitsAndKeepsHeadEditsOffTheInput) {
  LoadedModel& m = default_model();
  LoadedModel u = an::untie(m);
  const std::vector<int> ids = {504, 3575, 282, 4649, 314};
  EXPECT_EQ(an::next_token_logits(*m.model, ids), an::next_token_logits(*u.model, ids));
  const uint64_t embed = an::weights_hash(*u.model, {"model.embed_tokens.weight"});
  an::Surgery s(*u.model);
  s.apply({.target = "lm_head", .op = an::EditOp::ShiftWords, .value = 1e8});
  EXPECT_EQ(an::weights_hash(*u.model, {"model.embed_tokens.weight"}), embed);
  EXPECT_NE(an::next_token_logits(*m.model, ids), an::next_token_logits(*u.model, ids));
  EXPECT_THROW(an::untie(u), std::invalid_argument);
}

TEST(Sweep, InterruptedSweepResumesToTheSameReport) {
  LoadedModel& m = default_model();
  auto dir = temp_dir("sweep-resume");
  an::SweepOptions o = quick({0, 1e6, 1e6 + 10, 1e8});
  o.edit.target = "model.layers.0.self_attn.q_proj";  // a small tensor keeps the test cheap
  o.state_file = (dir / "a.json").string();
  an::SweepReport whole = an::run_sweep(m, o);
  // Stop after two finished points, as a kill would.
  o.state_file = (dir / "b.json").string();
  int seen = 0;
  EXPECT_THROW(an::run_sweep(m, o, [&](const Progress& p) {
                 if (p.done >= 2 && !p.finished && ++seen == 1) throw std::runtime_error("interrupted");
               }),
               std::runtime_error);
  an::SweepReport resumed = an::run_sweep(m, o);
  EXPECT_EQ(resumed.resumed, 2);
  EXPECT_EQ(nlohmann::json(resumed).dump(), nlohmann::json(whole).dump());
  EXPECT_EQ(an::sweep_markdown(resumed), an::sweep_markdown(whole));
  // Another configuration in the same state file is refused.
  an::SweepOptions other = o;
  other.schedule.values = {0, 5};
  EXPECT_THROW(an::run_sweep(m, other), std::invalid_argument);
}

TEST(Sweep, KilledCliSweepResumesToTheSameReport) {
  auto dir = temp_dir("sweep-kill");
  std::ofstream(dir / "text.txt") << "The ferry crossed the river twice a day, and the baker sold bread to everyone who "
                                     "waited at the landing. In spring the water rose and the town went quiet.";
  const std::string args = " sweep shift-words model.layers.0.self_attn.q_proj -v 0,1000000,100000000 --context 64 --stride 64 --text " +
                           (dir / "text.txt").string() + " ";
  auto run = [&](const fs::path& out) {
    return std::system((lmlab_binary() + args + "-o " + out.string() + " > /dev/null 2>&1").c_str());
  };
  ASSERT_EQ(run(dir / "whole"), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, so the kill reaches lmlab under the shell
    execl("/bin/sh", "sh", "-c", (lmlab_binary() + args + "-o " + (dir / "killed").string() + " > /dev/null 2>&1").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill it once a point is in its state file (or when it ends first: then the resume has nothing left to do).
  const fs::path state = dir / "killed" / "sweep-state.json";
  for (int i = 0; i < 600; ++i) {
    usleep(50000);
    std::ifstream f(state);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (s.find("\"value\"") != std::string::npos) break;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) break;
  }
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  EXPECT_FALSE(fs::exists(dir / "killed" / "sweep.json"));  // no report from a killed run
  ASSERT_EQ(run(dir / "killed"), 0);
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  for (const char* f : {"sweep.json", "sweep.md", "sweep.csv", "sweep.svg"})
    EXPECT_EQ(slurp(dir / "killed" / f), slurp(dir / "whole" / f)) << f;
}

TEST(Sweep, BadInputIsRefusedBeforeAnyReport) {
  LoadedModel& m = default_model();
  auto dir = temp_dir("sweep-bad");
  auto refuse = [&](an::SweepOptions o, const std::string& needle) {
    o.state_file = (dir / "state.json").string();
    try {
      an::run_sweep(m, o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "state.json")) << needle;
  };
  an::SweepOptions o = quick({0, 1});
  o.edit.target = "model.layers.99.nothing";
  refuse(o, "no tensor matches");
  refuse(quick({}), "no values");
  refuse(quick({0.5}), "not an integer");
  o = quick({0});
  o.schedule = {.kind = an::Schedule::Kind::LogGrid, .lo = 0, .hi = 10, .points = 5};
  refuse(o, "0 < lo < hi");
  o.schedule = {.kind = an::Schedule::Kind::Bisect, .lo = 10, .hi = 10};
  refuse(o, "lo < hi");
  o = quick({0});
  o.expect = {"4", "5"};
  refuse(o, "answer patterns");
  o = quick({0});
  o.thresholds.degraded_kl = 0.01;
  refuse(o, "thresholds");
  EXPECT_THROW(an::parse_criterion("kl<=3"), std::invalid_argument);
  EXPECT_THROW(an::parse_criterion("status>=fine"), std::invalid_argument);
  EXPECT_EQ(an::parse_criterion("top1<=0.9").threshold, 0.9);
  // An output folder that cannot exist: refused before the first point.
  std::ofstream(dir / "file") << "x";
  o = quick({0});
  o.state_file = (dir / "file" / "state.json").string();
  EXPECT_THROW(an::run_sweep(m, o), std::runtime_error);
}

// The status of a point and the bisection's criteria, on hand-made points.
TEST(Sweep, StatusNeedsLowKlAndEveryAnswerTheBaselineGets) {
  const an::Thresholds t{};
  an::SweepPoint p;
  p.kl = 0.01, p.answers_ok = {true, false};
  EXPECT_EQ(an::detail::classify(p, t, {true, false}), "healthy");  // the baseline failed the second too
  EXPECT_EQ(an::detail::classify(p, t, {true, true}), "degraded");  // an answer lost: not healthy at any KL
  p.kl = 0.2;
  EXPECT_EQ(an::detail::classify(p, t, {true, false}), "degraded");
  p.kl = 1.0;
  EXPECT_EQ(an::detail::classify(p, t, {true, false}), "collapsing");
  p.kl = 5.0;
  EXPECT_EQ(an::detail::classify(p, t, {true, false}), "dead");
  an::SweepReport r;
  r.baseline_ppl = 10, r.baseline_answers_ok = {true};
  an::SweepPoint q;
  q.kl = 0.3, q.top1 = 0.95, q.ppl = 15, q.answers_ok = {true}, q.status = "degraded";
  EXPECT_TRUE(an::detail::crossed(an::parse_criterion("kl>=0.3"), q, r));
  EXPECT_FALSE(an::detail::crossed(an::parse_criterion("kl>=0.5"), q, r));
  EXPECT_TRUE(an::detail::crossed(an::parse_criterion("top1<=0.96"), q, r));
  EXPECT_FALSE(an::detail::crossed(an::parse_criterion("top1<=0.9"), q, r));
  EXPECT_TRUE(an::detail::crossed(an::parse_criterion("ppl_ratio>=1.5"), q, r));
  EXPECT_FALSE(an::detail::crossed(an::parse_criterion("ppl_ratio>=2"), q, r));
  EXPECT_TRUE(an::detail::crossed(an::parse_criterion("status>=degraded"), q, r));
  EXPECT_FALSE(an::detail::crossed(an::parse_criterion("status>=collapsing"), q, r));
  EXPECT_FALSE(an::detail::crossed(an::parse_criterion("answers"), q, r));
  q.answers_ok = {false};
  EXPECT_TRUE(an::detail::crossed(an::parse_criterion("answers"), q, r));
}

}  // namespace
}  // namespace lmlab::test
