// The CLI's one place for errors: parses the command line, runs the command,
// and turns whatever it throws into one line on stderr and an exit code.
//
//   exit 0  success (also --help, --version, and `lmlab` alone, which prints help)
//   exit 1  the input, a file, the environment or the model failed
//   exit 2  the command line is wrong: unknown command or option (with a
//           "did you mean"), a value out of range, a missing argument
//
// Without --json the line is "error: <message>". With --json it is one JSON
// object, {"error": {"message": ..., "type": ...}}, still on stderr, so stdout
// only ever holds results; type is usage_error, invalid_argument,
// unsupported, runtime_error or internal_error.
#pragma once

#include <CLI/CLI.hpp>

namespace lmlab::cli {

int run(CLI::App& app, int argc, char** argv);

}  // namespace lmlab::cli
