// Renders every case of tests/golden/chat_golden.py (transformers +
// jinja2 over 8 real chat templates) and requires byte-identical output,
// or, where jinja2 raised, an exception with jinja2's message.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "lmlab/chat.h"
#include "test_util.h"

namespace {

using nlohmann::ordered_json;

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

// Where two renderings first differ, with some context on each side.
std::string diff_snippet(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  size_t from = i > 60 ? i - 60 : 0;
  std::ostringstream os;
  os << "first difference at byte " << i << " (expected " << want.size() << " bytes, got " << got.size() << ")\n"
     << "  expected: ..." << printable(want.substr(from, 140)) << "\n"
     << "  got     : ..." << printable(got.substr(from, 140));
  return os.str();
}

// What jinja2 raised ("TypeError: ...") and whether lmlab's error says the same:
// its message after the "[chat_template] line L, column C: " prefix must be
// jinja2's message (raise_exception's text, or Python's wording of the error).
std::string expected_error(const ordered_json& e) {
  return e["type"].get<std::string>() + ": " + e["message"].get<std::string>();
}

bool same_error(const ordered_json& e, const std::string& what) {
  const std::string prefix = "[chat_template] line ";
  const size_t colon = what.find(": ", prefix.size());
  return what.rfind(prefix, 0) == 0 && colon != std::string::npos &&
         what.substr(colon + 2) == e["message"].get<std::string>();
}

ordered_json load_cases() {
  auto path = lmlab::test::fixtures_dir() / "chat" / "cases.json";
  std::ifstream f(path);
  return f ? ordered_json::parse(f) : ordered_json();
}

TEST(ChatGoldenTest, MatchesTransformersByteForByte) {
  auto path = lmlab::test::fixtures_dir() / "chat" / "cases.json";
  LMLAB_REQUIRE_FILE(path);
  ordered_json cases = load_cases();
  ASSERT_TRUE(cases.is_array());
  ASSERT_GE(cases.size(), 8u * 20u);
  std::map<std::string, std::shared_ptr<lmlab::ChatTemplate>> compiled;
  std::map<std::string, std::pair<int, int>> per_template;  // passed, total
  int errors = 0;  // expected errors raised with jinja2's message
  for (const auto& c : cases) {
    const std::string name = c["template_name"];
    const std::string label = name + "/" + c.value("scenario", std::string()) + " (add_generation_prompt=" +
                              (c["options"]["add_generation_prompt"].get<bool>() ? "true" : "false") + ")";
    auto& tally = per_template[name];
    ++tally.second;
    auto& tpl = compiled[c["template"].get<std::string>()];
    if (!tpl) {
      try {
        tpl = std::make_shared<lmlab::ChatTemplate>(c["template"].get<std::string>());
      } catch (const std::exception& e) {
        ADD_FAILURE() << label << ": template does not parse: " << e.what();
        continue;
      }
    }
    const auto& o = c["options"];
    lmlab::ChatOptions opts;
    opts.add_generation_prompt = o["add_generation_prompt"];
    opts.bos_token = o["bos_token"];
    opts.eos_token = o["eos_token"];
    opts.extra = nlohmann::json::parse(o["extra"].dump());
    if (c.contains("error")) {
      try {
        std::string got = tpl->apply_ordered(c["messages"], opts, o["tools"]);
        ADD_FAILURE() << label << ": expected an error (" << expected_error(c["error"]) << "), rendered:\n"
                      << got;
      } catch (const std::invalid_argument& e) {
        if (same_error(c["error"], e.what())) ++tally.first, ++errors;
        else ADD_FAILURE() << label << ": expected " << expected_error(c["error"]) << "\n  got " << e.what();
      }
      continue;
    }
    const std::string want = c["expected"];
    try {
      std::string got = tpl->apply_ordered(c["messages"], opts, o["tools"]);
      if (got == want) ++tally.first;
      else ADD_FAILURE() << label << ": " << diff_snippet(want, got);
    } catch (const std::exception& e) {
      ADD_FAILURE() << label << ": threw " << e.what();
    }
  }
  for (const auto& [name, t] : per_template) {
    std::cout << "[ chat     ] " << name << ": " << t.first << "/" << t.second << " cases pass\n";
    EXPECT_GE(t.second, 20) << name;
  }
  EXPECT_EQ(per_template.size(), 8u);
  EXPECT_GE(errors, 40);
  std::cout << "[ chat     ] " << errors << " expected errors raised with jinja2's message\n";
}

}  // namespace

namespace {

// Small templates over one data set, probing Python/jinja2 semantics
// (float printing, repr, tojson options, slicing, loops, macros...).
TEST(ChatGoldenTest, EngineSnippetsMatchJinja2) {
  auto path = lmlab::test::fixtures_dir() / "chat" / "snippets.json";
  LMLAB_REQUIRE_FILE(path);
  std::ifstream f(path);
  ordered_json cases = ordered_json::parse(f);
  ASSERT_GE(cases.size(), 40u);
  lmlab::ChatOptions opts;
  opts.add_generation_prompt = false;
  int passed = 0, errors = 0;
  for (const auto& c : cases) {
    const std::string src = c["template"];
    try {
      std::string got = lmlab::ChatTemplate(src).apply_ordered(c["data"], opts);
      if (c.contains("error")) {
        ADD_FAILURE() << src << "\n  expected error " << expected_error(c["error"]) << ", rendered: " << got;
      } else if (got != c["expected"].get<std::string>()) {
        ADD_FAILURE() << src << "\n  " << diff_snippet(c["expected"], got);
      } else {
        ++passed;
      }
    } catch (const std::invalid_argument& e) {
      if (!c.contains("error")) ADD_FAILURE() << src << "\n  threw " << e.what();
      else if (same_error(c["error"], e.what())) ++passed, ++errors;
      else ADD_FAILURE() << src << "\n  expected " << expected_error(c["error"]) << "\n  got " << e.what();
    }
  }
  EXPECT_GE(errors, 6);
  std::cout << "[ chat     ] snippets: " << passed << "/" << cases.size() << " pass (" << errors
            << " expected errors)\n";
}

}  // namespace
