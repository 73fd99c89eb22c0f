// Command-line parsing and error reporting (see errors.h).
#include "cli/errors.h"

#include <cstdio>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/terminal.h"
#include "lmlab/core.h"

namespace lmlab::cli {

namespace {

struct Failure {
  std::string message;
  std::string type;
  int code;
};

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

// " (did you mean X?)" when a candidate is close to `word`.
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  auto guess = closest_match(word, candidates);
  return guess ? fmt::format(" (did you mean {}?)", *guess) : "";
}

bool looks_like_number(const std::string& s) {
  if (s.size() < 2 || s[0] != '-') return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

// The options of `sub` the command line names but `sub` does not have, in
// the order given, each with the closest known name.
std::vector<std::string> unknown_options(const CLI::App& sub, const std::vector<std::string>& args) {
  std::vector<std::string> known, out;
  for (const CLI::Option* o : sub.get_options()) {
    for (const auto& n : o->get_lnames()) known.push_back("--" + n);
    for (const auto& n : o->get_snames()) known.push_back("-" + n);
  }
  bool skip = false;
  for (const std::string& a : args) {
    if (a == "--") break;
    if (skip) {
      skip = false;
      continue;
    }
    if (a.size() < 2 || a[0] != '-' || looks_like_number(a)) continue;
    const bool is_long = a[1] == '-';
    const std::string name = is_long ? a.substr(0, a.find('=')) : a.substr(0, 2);
    const CLI::Option* o = sub.get_option_no_throw(name);
    if (!o) {
      // One letter is too little to guess from.
      out.push_back(is_long ? name + suggestion(name, known) : name);
      continue;
    }
    const bool inline_value = is_long ? a.find('=') != std::string::npos : a.size() > 2;
    skip = o->get_expected_max() > 0 && !inline_value;  // flags expect 0 values
  }
  return out;
}

Failure parse_failure(const CLI::App& app, const CLI::ParseError& e, const std::vector<std::string>& args) {
  // The command the line names, for "[command]" and its own options.
  const CLI::App* sub = nullptr;
  size_t at = 0;
  for (; at < args.size() && !sub; ++at)
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
      if (s->get_name() == args[at]) sub = s;
  const std::string where = sub ? sub->get_name() : "lmlab";
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // Options before the command belong to `lmlab` itself, which has almost none.
    const size_t cmd = sub ? at - 1 : args.size();
    std::vector<std::string> before = unknown_options(app, {args.begin(), args.begin() + cmd});
    if (!before.empty())
      return {fmt::format("[lmlab] unknown option{} {} (options go after the command: lmlab COMMAND [options])",
                          before.size() > 1 ? "s" : "", fmt::join(before, ", ")),
              "usage_error", 2};
    std::vector<std::string> unknown = sub ? unknown_options(*sub, {args.begin() + at, args.end()})
                                           : std::vector<std::string>{};
    if (!unknown.empty())
      return {fmt::format("[{}] unknown option{} {}; see lmlab {} --help", where, unknown.size() > 1 ? "s" : "",
                          fmt::join(unknown, ", "), where),
              "usage_error", 2};
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) && !sub)
    return {fmt::format("[lmlab] give a command: {} (lmlab COMMAND --help for its options)",
                        fmt::join(command_names(app), ", ")),
            "usage_error", 2};
  const std::string help = fmt::format("; see lmlab {}--help", sub ? where + " " : "");
  if (dynamic_cast<const CLI::ConversionError*>(&e) && sub) {
    // CLI11: "Could not convert: --temp = abc"
    const std::string what = e.what();
    const size_t colon = what.find(": "), eq = what.find(" = ");
    if (colon != std::string::npos && eq != std::string::npos && eq > colon) {
      const std::string name = what.substr(colon + 2, eq - colon - 2), value = what.substr(eq + 3);
      const CLI::Option* o = sub->get_option_no_throw(name);
      const std::string type = o ? o->get_type_name() : "";
      const char* expected = type == "INT" ? "an integer" : type == "UINT" ? "a non-negative integer"
                             : type == "FLOAT" ? "a number" : "a valid value";
      return {fmt::format("[{}] {}: '{}' is not {}{}{}", where, name, value, expected,
                          type == "INT" || type == "UINT" ? " in range" : "", help),
              "usage_error", 2};
    }
  }
  return {fmt::format("[{}] {}{}", where, e.what(), help), "usage_error", 2};
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

int report(const Failure& f, bool json) {
  std::fflush(stdout);
  clear_status();
  const std::string message = one_line(f.message);
  if (json) {
    nlohmann::json j = {{"error", {{"message", message}, {"type", f.type}}}};
    std::fprintf(stderr, "%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::fprintf(stderr, "error: %s\n", message.c_str());
  }
  return f.code;
}

}  // namespace

int run(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool json = false;
  for (const auto& a : args) json |= a == "--json";
  if (args.empty()) {
    std::cout << app.help();
    return 0;
  }
  const std::vector<std::string> commands = command_names(app);
  if (!args[0].empty() && args[0][0] != '-' && std::find(commands.begin(), commands.end(), args[0]) == commands.end())
    return report({fmt::format("[lmlab] unknown command '{}'{}; the commands are {}", args[0],
                               suggestion(args[0], commands), fmt::join(commands, ", ")),
                   "usage_error", 2},
                  json);
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(parse_failure(app, e, args), json);
  } catch (const UsageError& e) {
    return report({e.what(), "usage_error", 2}, json);
  } catch (const Unsupported& e) {
    return report({e.what(), "unsupported", 1}, json);
  } catch (const std::invalid_argument& e) {
    return report({e.what(), "invalid_argument", 1}, json);
  } catch (const std::bad_alloc&) {
    return report({"[memory] out of memory; try a smaller model, prompt or selection", "runtime_error", 1}, json);
  } catch (const ExitError& e) {
    return report({e.what(), "runtime_error", e.code}, json);
  } catch (const std::runtime_error& e) {
    return report({e.what(), "runtime_error", 1}, json);
  } catch (const std::exception& e) {
    return report({e.what(), "internal_error", 1}, json);
  }
}

}  // namespace lmlab::cli
