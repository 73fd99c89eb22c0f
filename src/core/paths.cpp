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

fs::path default_model_path() {
  auto p = cache_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(p))
    throw std::runtime_error(fmt::format(
        "[model] the default model is not in the cache ({}); run `make model` "
        "(scripts/fetch-model.sh) or pass --model",
        p.string()));
  return p;
}

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
