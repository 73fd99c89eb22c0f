// compute_threads(): how many CPUs this process can really use. A container or
// CI slice often sees every CPU of its host in /proc (hardware_concurrency) but
// may run on only two; spinning workers sized to the host would starve each
// other there.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "lmlab/core.h"

namespace lmlab {
namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// CPUs' worth of time the cgroup (v2 cpu.max, else v1 cfs quota) allows; 0 when unlimited.
int quota_cpus() {
  double quota = -1, period = -1;
  if (std::ifstream f("/sys/fs/cgroup/cpu.max"); f) {
    std::string q;
    f >> q >> period;
    if (q != "max" && !q.empty()) quota = std::atof(q.c_str());
  } else {
    std::ifstream fq("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), fp("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    if (fq && fp) fq >> quota, fp >> period;
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

}  // namespace

int compute_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("LMLAB_THREADS"); env && *env) {
      int v = std::atoi(env);
      if (v >= 1) return v;
    }
    int cpus = affinity_cpus();
    if (int q = quota_cpus(); q > 0) cpus = std::min(cpus, q);
    return cpus;
  }();
  return n;
}

}  // namespace lmlab
