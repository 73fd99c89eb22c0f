// Models fetched by short name (scripts/fetch-model.sh NAME): the table, the
// cache path, and the one-line error that tells how to fetch a missing one.
#include <cstdlib>
#include <fstream>

#include "lmlab/core.h"
#include "lmlab/loader.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

TEST(KnownModels, ShortNamesResolveToTheCacheOrSayHowToFetch) {
  auto home = temp_dir("known-models");
  const char* old = std::getenv("LMLAB_HOME");
  const std::string saved = old ? old : "";
  setenv("LMLAB_HOME", home.c_str(), 1);
  ASSERT_NE(find_known_model("gemma3-270m"), nullptr);
  EXPECT_EQ(known_models().front().name, "smollm2-135m");  // the default
  EXPECT_EQ(find_known_model("gemma"), nullptr);
  try {
    known_model_path("gemma3-270m");
    FAIL() << "no error for a model missing from the cache";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/fetch-model.sh gemma3-270m"), std::string::npos) << e.what();
  }
  EXPECT_THROW(known_model_path("nope"), std::invalid_argument);
  std::filesystem::create_directories(home / "models");
  std::ofstream(home / "models" / "gemma-3-270m-q4_k_m.gguf") << "x";
  EXPECT_EQ(resolve_model("gemma3-270m"), home / "models" / "gemma-3-270m-q4_k_m.gguf");
  EXPECT_EQ(known_model_path("gemma3-270m"), home / "models" / "gemma-3-270m-q4_k_m.gguf");
  if (old) setenv("LMLAB_HOME", saved.c_str(), 1);
  else unsetenv("LMLAB_HOME");
}

}  // namespace
}  // namespace lmlab::test
