// Planning `lmlab launch`: the hostfile (mlx.launch's JSON format), and each
// rank's command and environment for MLX's ring and NCCL backends, as
// mlx/_distributed_utils/launch.py sets them (launch_ring, launch_nccl).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/core.h"
#include "lmlab/launch.h"

using json = nlohmann::json;

namespace lmlab {

namespace {

constexpr int kHostfilePort = 32323;  // mlx.launch's --starting-port
constexpr int kNcclPort = 12345;      // mlx.launch's --nccl-port

std::string where(const std::filesystem::path& path) { return fmt::format("[launch] hostfile {}", path.string()); }

LaunchHost parse_host(const json& h, size_t i, const std::filesystem::path& path) {
  if (!h.is_object() || !h.contains("ssh") || !h["ssh"].is_string())
    throw std::invalid_argument(fmt::format("{}: hosts[{}] needs an \"ssh\" string (the host to start rank {} on)",
                                            where(path), i, i));
  LaunchHost host{.ssh = h["ssh"].get<std::string>(), .ips = {}};
  if (h.contains("ips")) {
    if (!h["ips"].is_array())
      throw std::invalid_argument(fmt::format("{}: hosts[{}].ips must be a list of addresses", where(path), i));
    for (const auto& ip : h["ips"]) {
      if (!ip.is_string())
        throw std::invalid_argument(fmt::format("{}: hosts[{}].ips holds a non-string {}", where(path), i, ip.dump()));
      host.ips.push_back(ip.get<std::string>());
    }
  }
  return host;
}

// Free TCP ports on the loopback address, held open until all are chosen so
// that they differ (MLX's ring listens with SO_REUSEADDR right after).
std::vector<int> free_loopback_ports(int n) {
  std::vector<int> socks, ports;
  for (int i = 0; i < n; ++i) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (s >= 0) ::close(s);
      for (int t : socks) ::close(t);
      throw std::runtime_error("[launch] could not reserve a loopback port; give one with --port");
    }
    socks.push_back(s);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int s : socks) ::close(s);
  return ports;
}

bool valid_env_name(std::string_view k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

std::pair<std::string, std::string> split_env(const std::string& kv, const std::string& what) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || !valid_env_name(std::string_view(kv).substr(0, eq)))
    throw std::invalid_argument(fmt::format("[launch] {} '{}' is not NAME=VALUE", what, kv));
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q.append("'\\''");
    else q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

// The ssh command that runs `argv` with `env` on a remote host, in the same
// folder; the ring hostfile is written to a temp file there first (as mlx.launch does).
std::vector<std::string> remote_argv(const std::string& host, const RankPlan& p, const std::string& ring_hostfile) {
  std::string script = "cd " + shell_quote(std::filesystem::current_path().string()) + " || exit 1; ";
  if (!ring_hostfile.empty())
    script += "MLX_HOSTFILE=$(mktemp) && printf %s " + shell_quote(ring_hostfile) + " > \"$MLX_HOSTFILE\" && ";
  script += "exec env";
  if (!ring_hostfile.empty()) script += " MLX_HOSTFILE=\"$MLX_HOSTFILE\"";
  for (const auto& [k, v] : p.env)
    if (k != "MLX_HOSTFILE") script.append(" ").append(k).append("=").append(shell_quote(v));
  for (const auto& a : p.argv) script.append(" ").append(shell_quote(a));
  // -tt: a terminal on the remote side, so closing the connection (the
  // launcher ending the job) hangs the remote rank up.
  return {"ssh", "-tt", "-o", "BatchMode=yes", "-o", "LogLevel=QUIET", host, script};
}

int ranks_of(const LaunchOptions& o) {
  if (!o.hostfile) {
    if (o.ranks < 1) throw std::invalid_argument(fmt::format("[launch] -n {}: give at least 1 rank", o.ranks));
    return o.ranks;
  }
  const int hosts = static_cast<int>(o.hostfile->hosts.size());
  if (o.ranks != 0 && o.ranks != hosts)
    throw std::invalid_argument(fmt::format(
        "[launch] -n {} but the hostfile lists {} hosts (one rank per entry; repeat an entry for more ranks on a host)",
        o.ranks, hosts));
  return hosts;
}

void check_options(const LaunchOptions& o, int n) {
  if (o.command.empty())
    throw std::invalid_argument("[launch] no command: give it after --, e.g. lmlab launch -n 2 -- lmlab generate -p hi");
  if (o.backend != "ring" && o.backend != "nccl")
    throw std::invalid_argument(fmt::format("[launch] unknown backend '{}' (ring, nccl)", o.backend));
  if (n > 1024) throw std::invalid_argument(fmt::format("[launch] -n {}: at most 1024 ranks", n));
  if (!(o.init_timeout > 0)) throw std::invalid_argument("[launch] --init-timeout must be a positive number of seconds");
  if (o.port < 0 || o.port + n > 65535) throw std::invalid_argument(fmt::format("[launch] --port {} is out of range", o.port));
  if (!o.hostfile) return;
  const auto& hosts = o.hostfile->hosts;
  for (size_t i = 0; i < hosts.size(); ++i)
    if (o.backend == "ring" && hosts[i].ips.empty())
      throw std::invalid_argument(fmt::format(
          "[launch] hostfile: hosts[{}] ({}) has no \"ips\": the ring backend connects ranks by IP address", i,
          hosts[i].ssh));
  if (o.backend == "nccl" && hosts[0].ips.empty())
    throw std::invalid_argument("[launch] hostfile: hosts[0] has no \"ips\": NCCL's ranks meet at rank 0's address");
}

// CUDA_VISIBLE_DEVICES for the `local`-th rank on a host: one GPU each, taken
// from the launcher's own CUDA_VISIBLE_DEVICES list when it has one.
std::string gpu_for(int local) {
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!visible || !*visible) return std::to_string(local);
  std::vector<std::string> ids;
  std::string s = visible;
  for (size_t start = 0;;) {
    size_t comma = s.find(',', start);
    ids.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids[static_cast<size_t>(local) % ids.size()];
}

}  // namespace

bool LaunchHost::is_local() const {
  if (ssh.empty() || ssh == "localhost" || ssh == "127.0.0.1" || ssh == "::1") return true;
  char name[256] = {};
  return ::gethostname(name, sizeof name - 1) == 0 && ssh == name;
}

Hostfile read_hostfile(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument(fmt::format("{}: cannot be read", where(path)));
  json j;
  try {
    j = json::parse(f);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(fmt::format("{}: not JSON ({})", where(path), e.what()));
  }
  Hostfile h;
  const json* hosts = &j;
  if (j.is_object()) {
    if (j.contains("backend")) {
      if (!j["backend"].is_string()) throw std::invalid_argument(fmt::format("{}: \"backend\" must be a string", where(path)));
      h.backend = j["backend"].get<std::string>();
    }
    if (j.contains("envs")) {
      if (!j["envs"].is_array()) throw std::invalid_argument(fmt::format("{}: \"envs\" must be a list of \"K=V\"", where(path)));
      for (const auto& e : j["envs"]) {
        if (!e.is_string()) throw std::invalid_argument(fmt::format("{}: \"envs\" holds a non-string {}", where(path), e.dump()));
        split_env(e.get<std::string>(), "hostfile env");
        h.envs.push_back(e.get<std::string>());
      }
    }
    if (!j.contains("hosts")) throw std::invalid_argument(fmt::format("{}: no \"hosts\" list", where(path)));
    hosts = &j["hosts"];
  }
  if (!hosts->is_array() || hosts->empty())
    throw std::invalid_argument(fmt::format("{}: \"hosts\" must be a non-empty list", where(path)));
  for (size_t i = 0; i < hosts->size(); ++i) h.hosts.push_back(parse_host((*hosts)[i], i, path));
  return h;
}

LaunchPlan plan_launch(const LaunchOptions& o, const std::string& hostfile_path) {
  const int n = ranks_of(o);
  check_options(o, n);
  std::vector<LaunchHost> hosts = o.hostfile ? o.hostfile->hosts : std::vector<LaunchHost>(n, LaunchHost{"", {"127.0.0.1"}});
  const bool all_local = !o.hostfile || std::all_of(hosts.begin(), hosts.end(), [](auto& h) { return h.is_local(); });
  const int base = o.port > 0 ? o.port : kHostfilePort;
  std::vector<int> ports;
  if (all_local && o.port == 0) ports = free_loopback_ports(o.backend == "ring" ? n : 1);
  else
    for (int r = 0; r < n; ++r) ports.push_back(base + r);

  LaunchPlan plan;
  if (o.backend == "ring" && n > 1) {
    json nodes = json::array();
    for (int r = 0; r < n; ++r) nodes.push_back(json::array({fmt::format("{}:{}", hosts[r].ips[0], ports[r])}));
    plan.ring_hostfile = nodes.dump();
  }
  std::vector<std::pair<std::string, std::string>> common;
  if (o.hostfile)
    for (const auto& e : o.hostfile->envs) common.push_back(split_env(e, "hostfile env"));
  for (const auto& e : o.env) {
    auto kv = split_env(e, "--env");
    std::erase_if(common, [&](auto& c) { return c.first == kv.first; });
    common.push_back(std::move(kv));
  }
  const bool user_threads = std::getenv("LMLAB_THREADS") ||
                            std::any_of(common.begin(), common.end(), [](auto& kv) { return kv.first == "LMLAB_THREADS"; });
  for (int r = 0; r < n; ++r) {
    RankPlan p{.rank = r, .local = hosts[r].is_local(), .argv = o.command, .env = {}};
    int local_index = 0, on_host = 0;
    for (int q = 0; q < n; ++q)
      if (hosts[q].ssh == hosts[r].ssh) on_host++, local_index += q < r;
    p.env = common;
    // Later settings win: the backend's variables over --env and the hostfile's.
    auto set = [&](const std::string& k, const std::string& v) {
      auto it = std::find_if(p.env.begin(), p.env.end(), [&](auto& kv) { return kv.first == k; });
      if (it != p.env.end()) it->second = v;
      else p.env.emplace_back(k, v);
    };
    set("MLX_RANK", std::to_string(r));
    set("MLX_WORLD_SIZE", std::to_string(n));
    set("LMLAB_LAUNCH_BACKEND", o.backend);
    set("LMLAB_INIT_TIMEOUT", fmt::format("{}", o.init_timeout));
    if (o.backend == "ring" && n > 1) set("MLX_HOSTFILE", hostfile_path);
    if (o.backend == "nccl") {
      set("NCCL_HOST_IP", hosts[0].ips.empty() ? "127.0.0.1" : hosts[0].ips[0]);
      set("NCCL_PORT", std::to_string(o.port > 0 ? o.port : all_local ? ports[0] : kNcclPort));
      // NVLink multicast (NVLS) can take a shared host's GPUs out of service:
      // always off, whatever the caller's environment says.
      set("NCCL_NVLS_ENABLE", "0");
      if (p.local) set("CUDA_VISIBLE_DEVICES", gpu_for(local_index));
      else set("CUDA_VISIBLE_DEVICES", std::to_string(local_index));
    }
    if (p.local && !user_threads) set("LMLAB_THREADS", std::to_string(std::max(1, compute_threads() / on_host)));
    if (!p.local) p.argv = remote_argv(hosts[r].ssh, p, plan.ring_hostfile);
    plan.ranks.push_back(std::move(p));
  }
  return plan;
}

int launched_rank() {
  const char* r = std::getenv("MLX_RANK");
  if (!r || !*r) return -1;
  char* end = nullptr;
  long v = std::strtol(r, &end, 10);
  return *end == '\0' && v >= 0 ? static_cast<int>(v) : -1;
}

}  // namespace lmlab
