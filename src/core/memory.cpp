// How much memory the system can give now (see core.h).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "lmlab/core.h"

namespace lmlab {

namespace {

// A cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit minus what the
// group already uses; 0 when there is none.
size_t cgroup_room() {
  auto read = [](const char* path) -> size_t {
    std::ifstream f(path);
    std::string v;
    if (!(f >> v) || v == "max") return 0;
    try {
      return std::stoull(v);
    } catch (...) {
      return 0;
    }
  };
  for (auto [limit_path, usage_path] : {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                                        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const size_t limit = read(limit_path);
    // v1 reports "no limit" as a huge number.
    if (limit == 0 || limit > (size_t(1) << 60)) continue;
    const size_t used = read(usage_path);
    return limit > used ? limit - used : 1;
  }
  return 0;
}

}  // namespace

size_t available_memory() {
  size_t avail = 0;
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("MemAvailable:", 0) == 0) {
      avail = std::strtoull(line.c_str() + 13, nullptr, 10) * 1024;  // "MemAvailable:  N kB"
      break;
    }
  if (avail == 0) {
    const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) avail = static_cast<size_t>(pages) * static_cast<size_t>(page);
  }
  const size_t room = cgroup_room();
  return room && (avail == 0 || room < avail) ? room : avail;
}

std::string gigabytes(double bytes) {
  return bytes >= 1e9 ? fmt::format("{:.1f} GB", bytes / 1e9) : fmt::format("{:.0f} MB", bytes / 1e6);
}

}  // namespace lmlab
