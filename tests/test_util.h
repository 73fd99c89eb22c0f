// Paths shared by the tests: the source tree, the fixtures built by
// scripts/make-fixtures.sh, ../shared, and the default model.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace lmlab::test {

inline std::filesystem::path source_dir() { return LMLAB_SOURCE_DIR; }
inline std::filesystem::path shared_dir() { return source_dir().parent_path() / "shared"; }
inline std::filesystem::path fixtures_dir() {
  const char* env = std::getenv("LMLAB_FIXTURES");
  return env ? std::filesystem::path(env) : source_dir() / ".deps" / "fixtures";
}
inline std::string lmlab_binary() { return LMLAB_BINARY; }
// The default model in the lmlab cache (fetched by `make model`).
inline std::filesystem::path default_model_path_for_tests() {
  const char* h = std::getenv("LMLAB_HOME");
  const char* x = std::getenv("XDG_CACHE_HOME");
  std::filesystem::path root = h && *h ? std::filesystem::path(h)
                               : x && *x ? std::filesystem::path(x) / "lmlab"
                                         : std::filesystem::path(std::getenv("HOME")) / ".cache" / "lmlab";
  return root / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

// A fresh empty folder under the system temp dir (tests keep what they write small).
std::filesystem::path temp_dir(const std::string& name);

// Fails the calling test when a fixture is missing: `make test` always builds
// them, so a missing one is a broken set-up, never a reason to skip.
#define LMLAB_REQUIRE_FILE(path)                                        \
  do {                                                                  \
    if (!std::filesystem::exists(path))                                 \
      GTEST_FAIL() << "missing " << (path) << " (run make fixtures)";   \
  } while (0)

}  // namespace lmlab::test
