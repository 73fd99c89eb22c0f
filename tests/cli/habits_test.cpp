// The command line as users of mlx_lm and llama.cpp type it: their flag names
// work, a short flag means one thing in every command, typos get a "did you
// mean", --json errors are JSON, exit codes separate a wrong command line (2)
// from a failure (1), and an empty or silent prompt never hangs.
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lmlab::test {
namespace {

struct CliRun {
  int code;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// `stdin_redirect` is a shell redirection for standard input ("< file", "< /dev/null").
CliRun lmlab(const std::string& args, const std::string& stdin_redirect = "< /dev/null") {
  auto dir = temp_dir("habits");
  std::string cmd = lmlab_binary() + " " + args + " " + stdin_redirect + " > " + (dir / "out").string() + " 2> " +
                    (dir / "err").string();
  int status = std::system(cmd.c_str());
  return {WEXITSTATUS(status), slurp(dir / "out"), slurp(dir / "err")};
}

std::vector<std::string> commands() {
  std::vector<std::string> out;
  std::regex row(R"(^  ([a-z]+) {2,})");
  std::istringstream help(lmlab("--help").out);
  bool in_list = false;
  for (std::string line; std::getline(help, line);) {
    if (line.rfind("Subcommands:", 0) == 0) in_list = true;
    std::smatch m;
    if (in_list && std::regex_search(line, m, row)) out.push_back(m[1]);
  }
  return out;
}

TEST(Habits, EachShortFlagMeansOneThingInEveryCommand) {
  std::vector<std::string> cmds = commands();
  ASSERT_GE(cmds.size(), 8u);
  std::map<std::string, std::set<std::string>> meaning;  // "-p" → {"--prompt"}
  std::regex flag(R"(^  (-[A-Za-z]),(--[A-Za-z-]+))");
  // lmlab bench takes llama-bench's flags, as its users type them: there -p
  // and -n are the prompt and generation lengths (lists), the same two
  // quantities the other commands' -p (the prompt) and -n (tokens) name.
  // lmlab launch takes mlx.launch's: -n is the number of ranks.
  std::map<std::string, std::set<std::string>> bench, launch;
  for (const auto& c : cmds) {
    CliRun r = lmlab(c + " --help");
    ASSERT_EQ(r.code, 0) << c;
    std::istringstream help(r.out);
    for (std::string line; std::getline(help, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, flag) || m[1] == "-h") continue;
      (c == "bench" ? bench : c == "launch" ? launch : meaning)[m[1]].insert(m[2]);
    }
  }
  EXPECT_EQ(bench["-p"], std::set<std::string>{"--prompt-lengths"});
  EXPECT_EQ(bench["-n"], std::set<std::string>{"--gen-lengths"});
  EXPECT_EQ(launch["-n"], std::set<std::string>{"--ranks"});
  for (const auto& [s, longs] : meaning)
    EXPECT_EQ(longs.size(), 1u) << s << " means " << testing::PrintToString(longs);
  EXPECT_EQ(meaning["-n"], std::set<std::string>{"--max-tokens"});  // llama.cpp's -n
  EXPECT_EQ(meaning["-p"], std::set<std::string>{"--prompt"});
}

TEST(Habits, MlxLmAndLlamaCppNamesWork) {
  const std::string gen = lmlab("generate --help").out;
  for (const char* name : {"--system-prompt", "--ignore-chat-template", "--max-kv-size", "-n,--max-tokens",
                           "--repetition-context-size", "--prefill-step-size"})
    EXPECT_NE(gen.find(name), std::string::npos) << name;
  CliRun r = lmlab("generate --json -n 3 --ignore-chat-template --system-prompt Brief --max-kv-size 64 -p Hello");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].size(), 3u);
  EXPECT_LT(j["prompt_tokens"].size(), 8u);  // "Brief\n\nHello" as raw text; the template adds ~30 tokens
}

TEST(Habits, TyposGetADidYouMeanAndExitTwo) {
  CliRun cmd = lmlab("generat -p hi");
  EXPECT_EQ(cmd.code, 2);
  EXPECT_NE(cmd.err.find("unknown command 'generat' (did you mean generate?)"), std::string::npos) << cmd.err;
  CliRun flag = lmlab("generate --tmep 0.5 --max-tokns 3 -p hi");
  EXPECT_EQ(flag.code, 2);
  EXPECT_NE(flag.err.find("unknown options --tmep (did you mean --temp?), --max-tokns (did you mean --max-tokens?)"),
            std::string::npos)
      << flag.err;  // in the order typed
  CliRun chat = lmlab("frobnicate");
  EXPECT_EQ(chat.code, 2);
  EXPECT_NE(chat.err.find("unknown command 'frobnicate'"), std::string::npos) << chat.err;
  CliRun value = lmlab("generate -p hi --max-tokens -3");
  EXPECT_EQ(value.code, 2);
  EXPECT_NE(value.err.find("max_tokens -3: must be >= 0, or -1"), std::string::npos) << value.err;
  EXPECT_LT(value.err.size(), 120u);  // no 309-digit bound
  for (const CliRun& r : {cmd, flag, chat, value}) EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(Habits, JsonErrorsAreOneJsonObjectOnStderr) {
  CliRun usage = lmlab("generate --json --temp nan -p hi");
  EXPECT_EQ(usage.code, 2);
  EXPECT_TRUE(usage.out.empty());
  auto e = nlohmann::json::parse(usage.err);
  EXPECT_EQ(e["error"]["type"], "usage_error");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("temp nan"), std::string::npos);
  CliRun missing = lmlab("inspect --json --model /nonexistent.gguf");
  EXPECT_EQ(missing.code, 1);
  auto m = nlohmann::json::parse(missing.err);
  EXPECT_EQ(m["error"]["type"], "runtime_error");
  EXPECT_NE(m["error"]["message"].get<std::string>().find("not found"), std::string::npos);
}

TEST(Habits, EmptyAndSilentPromptsNeverHang) {
  CliRun empty = lmlab("generate -p \"\"", "< /dev/zero");  // an endless stdin is not read for -p ""
  EXPECT_EQ(empty.code, 2);
  EXPECT_NE(empty.err.find("--prompt is empty"), std::string::npos) << empty.err;
  CliRun none = lmlab("generate");  // stdin at EOF
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("empty"), std::string::npos) << none.err;
  // An open pipe nobody writes to: refused after a few seconds, not waited on forever.
  auto fifo = temp_dir("habits-fifo") / "stdin";
  ASSERT_EQ(std::system(("mkfifo " + fifo.string()).c_str()), 0);
  auto start = std::chrono::steady_clock::now();
  const std::string err = (fifo.parent_path() / "err").string();
  // A writer holds the pipe open (and writes nothing) for longer than lmlab waits.
  int status = std::system(("(sleep 9 > " + fifo.string() + " &) ; " + lmlab_binary() + " generate < " +
                            fifo.string() + " > /dev/null 2> " + err).c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(slurp(err).find("nothing arrived on standard input"), std::string::npos) << slurp(err);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(Habits, InspectReportsTheContextAndItsKvCache) {
  CliRun r = lmlab("inspect");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("length      8192 tokens"), std::string::npos) << r.out;
  // 30 layers × 2 × 3 kv heads × 64 × 4 bytes = 45 KiB per token, 360 MiB for 8192.
  EXPECT_NE(r.out.find("45.0 KiB per token"), std::string::npos);
  EXPECT_NE(r.out.find("360.00 MiB at full context"), std::string::npos);
}

}  // namespace
}  // namespace lmlab::test
