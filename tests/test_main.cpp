#include <cstdio>
#include <mutex>
#include <random>
#include <vector>

#include "test_util.h"

namespace lmlab::test {

namespace {
std::mutex created_mutex;
std::vector<std::filesystem::path> created;  // removed when the run passes
}  // namespace

std::filesystem::path temp_dir(const std::string& name) {
  std::random_device rd;
  auto p = std::filesystem::temp_directory_path() /
           ("lmlab-test-" + name + "-" + std::to_string(rd()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  std::lock_guard lock(created_mutex);
  created.push_back(p);
  return p;
}

// Removes the run's directories (model copies among them: a few GB over many
// runs), or keeps them for a look when a test failed.
void remove_temp_dirs(bool passed) {
  std::lock_guard lock(created_mutex);
  if (!passed && !created.empty()) {
    std::fprintf(stderr, "kept %zu test directories for inspection, e.g. %s\n", created.size(),
                 created.back().string().c_str());
    return;
  }
  for (const auto& p : created) {
    std::error_code ec;
    std::filesystem::remove_all(p, ec);
  }
  created.clear();
}

}  // namespace lmlab::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  lmlab::test::remove_temp_dirs(rc == 0);
  return rc;
}
