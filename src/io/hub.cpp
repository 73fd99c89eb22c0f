// hub::snapshot: the Hugging Face Hub API (model info with blob ids), file
// downloads with libcurl into huggingface_hub's cache layout (see hub.h), and
// the cache-only path for offline use or an unreachable Hub.
#include "lmlab/hub.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#ifndef LMLAB_NO_HUB
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>
#endif

#include "lmlab/core.h"

namespace lmlab::hub {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 96 || s.front() == '.' || s.front() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

struct ModelId {
  std::string org, name, file;  // file: "" for the model, else a .gguf path inside the repo
  std::string repo() const { return org + "/" + name; }
};

std::optional<ModelId> parse_id(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, '/');) parts.push_back(p);
  if (parts.size() < 2 || s.back() == '/') return std::nullopt;
  for (const auto& p : parts)
    if (!valid_name(p)) return std::nullopt;
  ModelId id{parts[0], parts[1], ""};
  for (size_t i = 2; i < parts.size(); ++i) id.file += (i > 2 ? "/" : "") + parts[i];
  if (!id.file.empty() && !(id.file.size() > 5 && id.file.substr(id.file.size() - 5) == ".gguf")) return std::nullopt;
  return id;
}

bool is_commit(const std::string& rev) {
  return rev.size() == 40 && std::all_of(rev.begin(), rev.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string token_for(const Options& o) {
  if (!o.token.empty()) return o.token;
  if (std::string t = env("HF_TOKEN"); !t.empty()) return t;
  fs::path home = !env("HF_HOME").empty() ? fs::path(env("HF_HOME"))
                  : !env("HOME").empty()  ? fs::path(env("HOME")) / ".cache" / "huggingface"
                                          : fs::path();
  std::ifstream f(home / "token");
  std::string t;
  std::getline(f, t);
  while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
  return t;
}

// The commit a cached revision points at, if the cache knows it.
std::optional<std::string> cached_commit(const fs::path& repo_dir, const std::string& revision) {
  if (is_commit(revision)) return revision;
  std::ifstream f(repo_dir / "refs" / revision);
  std::string commit;
  if (f && std::getline(f, commit) && is_commit(commit)) return commit;
  return std::nullopt;
}

std::optional<fs::path> from_cache(const fs::path& repo_dir, const ModelId& id, const std::string& revision) {
  auto commit = cached_commit(repo_dir, revision);
  if (!commit) return std::nullopt;
  const fs::path snap = repo_dir / "snapshots" / *commit;
  const fs::path target = id.file.empty() ? snap / "config.json" : snap / id.file;
  if (!fs::exists(target)) return std::nullopt;
  return id.file.empty() ? snap : target;
}

#ifndef LMLAB_NO_HUB
// Percent-encodes one URL path segment.
std::string encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string encode_path(const std::string& path) {
  std::string out;
  std::stringstream ss(path);
  for (std::string seg; std::getline(ss, seg, '/');) out += (out.empty() ? "" : "/") + encode(seg);
  return out;
}

// The Hub could not be reached at all (no HTTP answer): the cache may stand in.
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    std::string out;
    for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

// One GET with libcurl: redirects followed (the Hub sends large files to a CDN;
// curl drops the Authorization header when the host changes), the body handed
// to `sink` in pieces. Returns the HTTP status; throws Unreachable when no
// answer came.
using Sink = std::function<bool(const char* data, size_t n, long status)>;

long http_get(const std::string& url, const std::string& token, const Sink& sink,
              const std::vector<std::string>& extra_headers = {}) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) throw Unreachable("libcurl could not start");
  struct State {
    const Sink* fn;
    long status = 0;
    CURL* curl;
  } state{&sink, 0, curl};
  curl_slist* headers = curl_slist_append(nullptr, "User-Agent: lmlab");
  if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  for (const auto& h : extra_headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);  // abort a transfer stalled for a minute
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* s = static_cast<State*>(user);
    if (s->status == 0) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    return (*s->fn)(data, size * n, s->status) ? size * n : 0;
  });
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc == CURLE_WRITE_ERROR) throw std::runtime_error("writing the download failed");
  if (rc != CURLE_OK && status == 0) throw Unreachable(curl_easy_strerror(rc));
  if (rc != CURLE_OK) throw std::runtime_error(fmt::format("transfer failed: {}", curl_easy_strerror(rc)));
  return status;
}

std::string status_text(long status, const std::string& what) {
  if (status == 401 || status == 403)
    return fmt::format("{}: access denied (HTTP {}): a gated or private model needs a token (HF_TOKEN), or it does not exist",
                       what, status);
  if (status == 404) return fmt::format("{}: not found (HTTP 404)", what);
  return fmt::format("{}: HTTP {}", what, status);
}

json get_json(const std::string& url, const std::string& token, const std::string& what) {
  std::string body;
  const long status = http_get(url, token, [&](const char* p, size_t n, long) {
    body.append(p, n);
    return body.size() < (64u << 20);
  });
  if (status != 200) throw std::runtime_error(status_text(status, what));
  try {
    return json::parse(body);
  } catch (const json::exception&) {
    throw std::runtime_error(fmt::format("{}: the Hub's answer is not JSON", what));
  }
}

// Files of a model repo lmlab reads (top level only).
bool wanted(const std::string& f) {
  static const std::set<std::string> names = {
      "config.json",           "generation_config.json", "tokenizer.json",     "tokenizer_config.json",
      "special_tokens_map.json", "added_tokens.json",    "tokenizer.model",    "vocab.json",
      "merges.txt",            "chat_template.json",     "chat_template.jinja", "model.safetensors.index.json"};
  if (f.find('/') != std::string::npos) return false;
  return names.count(f) || (f.size() > 12 && f.substr(f.size() - 12) == ".safetensors");
}

std::string random_suffix() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

// An open file descriptor, closed (and its lock released) at scope exit.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Downloads url into blobs/ and links snapshot_file to it. The download goes
// to `<blob id>.incomplete`, locked while written (a second process fetching
// the same file waits, then finds it done); one left by an interrupted run is
// resumed with a Range request. A large (LFS) file is checked against the
// Hub's sha256, and a mismatch deletes the partial file.
void fetch(const std::string& url, const std::string& token, const fs::path& repo_dir, const fs::path& snapshot_file,
           const std::string& blob_id, const std::string& sha256, double size, const Options& o,
           const std::string& what, const std::string& name) {
  const std::string label = fmt::format("{}: {}", what, name);
  const fs::path blobs = repo_dir / "blobs";
  fs::create_directories(blobs);
  fs::path blob = blobs / blob_id;
  if (blob_id.empty() || !fs::exists(blob)) {
    const fs::path tmp = blobs / ((blob_id.empty() ? random_suffix() : blob_id) + ".incomplete");
    Fd file{::open(tmp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};
    if (file.fd < 0 || ::flock(file.fd, LOCK_EX) != 0)
      throw std::runtime_error(fmt::format("{}: cannot write {}", label, tmp.string()));
    if (blob_id.empty() || !fs::exists(blob)) {  // not finished meanwhile by another process
      auto hash = std::make_unique<Sha256>();
      off_t have = ::lseek(file.fd, 0, SEEK_END);
      if (have > 0) {
        std::vector<char> buf(1 << 20);
        ::lseek(file.fd, 0, SEEK_SET);
        for (ssize_t n; (n = ::read(file.fd, buf.data(), buf.size())) > 0;) hash->update(buf.data(), n);
      }
      std::vector<std::string> range;
      if (have > 0) range.push_back(fmt::format("Range: bytes={}-", have));
      bool started = false;
      long status = 0;
      // Progress goes to the caller's callback (the CLI draws it on a
      // terminal), at most five times a second.
      double written = static_cast<double>(have);
      auto last_shown = std::chrono::steady_clock::now() - std::chrono::seconds(1);
      const std::string step = fmt::format("download {}: {}", what.rfind("[hub] ", 0) == 0 ? what.substr(6) : what, name);
      auto report = [&](bool done) {
        if (!o.progress) return;
        const auto now = std::chrono::steady_clock::now();
        if (!done && now - last_shown < std::chrono::milliseconds(200)) return;
        last_shown = now;
        o.progress({.what = step, .done = written, .total = size, .unit = "bytes", .finished = done});
      };
      report(false);
      try {
        status = http_get(url, token, [&](const char* p, size_t n, long code) {
          if (code != 200 && code != 206) return true;  // an error page: not part of the file
          if (!started) {
            started = true;
            if (code == 200 && have > 0) {  // the range was ignored: start over
              if (::ftruncate(file.fd, 0) != 0) return false;
              hash = std::make_unique<Sha256>();
              have = 0;
              written = 0;
            }
            ::lseek(file.fd, 0, SEEK_END);
          }
          hash->update(p, n);
          for (size_t done = 0; done < n;) {
            const ssize_t w = ::write(file.fd, p + done, n - done);
            if (w <= 0) return false;
            done += static_cast<size_t>(w);
          }
          written += static_cast<double>(n);
          report(false);
          return true;
        }, range);
        report(true);
      } catch (const std::exception& e) {
        const bool kept = started || have > 0;
        if (!kept) fs::remove(tmp);
        throw std::runtime_error(fmt::format("{}: {}{}", label, e.what(),
                                             kept ? " (the partial download is kept and resumes next time)" : ""));
      }
      // 416: the range starts at the end, the file was complete already.
      if (status != 200 && status != 206 && !(status == 416 && have > 0)) {
        if (have == 0) fs::remove(tmp);
        throw std::runtime_error(status_text(status, label));
      }
      const std::string got = hash->hex();
      if (!sha256.empty() && got != sha256) {
        fs::remove(tmp);
        throw std::runtime_error(fmt::format("{}: checksum mismatch (sha256 {}, the Hub says {})", label, got, sha256));
      }
      if (blob_id.empty()) blob = blobs / got;
      fs::rename(tmp, blob);
    }
  }
  fs::create_directories(snapshot_file.parent_path());
  std::error_code ec;
  fs::remove(snapshot_file, ec);
  fs::create_symlink(fs::relative(blob, snapshot_file.parent_path()), snapshot_file, ec);
  if (ec) fs::copy_file(blob, snapshot_file, fs::copy_options::overwrite_existing);  // no symlinks here
}

#endif  // LMLAB_NO_HUB

}  // namespace

bool is_model_id(const std::string& s) { return parse_id(s).has_value(); }

fs::path cache_root(const Options& o) {
  if (!o.cache.empty()) return o.cache;
  if (std::string c = env("HF_HUB_CACHE"); !c.empty()) return c;
  if (std::string h = env("HF_HOME"); !h.empty()) return fs::path(h) / "hub";
  if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) return fs::path(x) / "huggingface" / "hub";
  return fs::path(env("HOME")) / ".cache" / "huggingface" / "hub";
}

fs::path snapshot(const std::string& id_text, const Options& o) {
  auto id = parse_id(id_text);
  if (!id) throw std::invalid_argument(fmt::format("[hub] '{}' is not a model id (org/name or org/name/file.gguf)", id_text));
  const std::string what = fmt::format("[hub] {}", id_text);
  if (o.revision.empty() || o.revision.find("..") != std::string::npos)
    throw std::invalid_argument(fmt::format("{}: bad revision '{}'", what, o.revision));
  const fs::path repo_dir = cache_root(o) / fmt::format("models--{}--{}", id->org, id->name);
  const bool offline = o.offline || env("HF_HUB_OFFLINE") == "1";
  if (offline) {
    if (auto p = from_cache(repo_dir, *id, o.revision)) return *p;
    throw std::runtime_error(fmt::format("{}: not in the cache {} (offline)", what, cache_root(o).string()));
  }

#ifdef LMLAB_NO_HUB
  if (auto p = from_cache(repo_dir, *id, o.revision)) return *p;
  throw Unsupported(fmt::format("{}: not in the cache {}, and this build has no Hub downloads (LMLAB_HUB=OFF)", what,
                                cache_root(o).string()));
#else
  std::string endpoint = !o.endpoint.empty() ? o.endpoint : !env("HF_ENDPOINT").empty() ? env("HF_ENDPOINT") : "https://huggingface.co";
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string token = token_for(o);
  json info;
  try {
    info = get_json(fmt::format("{}/api/models/{}/{}/revision/{}?blobs=true", endpoint, encode(id->org), encode(id->name),
                                encode(o.revision)),
                    token, what);
  } catch (const Unreachable& e) {
    if (auto p = from_cache(repo_dir, *id, o.revision)) return *p;
    throw std::runtime_error(fmt::format("{}: the Hub ({}) cannot be reached and the cache has no copy: {}", what, endpoint, e.what()));
  }
  if (!info.contains("sha") || !info["sha"].is_string() || !is_commit(info["sha"].get<std::string>()) ||
      !info.contains("siblings") || !info["siblings"].is_array())
    throw std::runtime_error(fmt::format("{}: unexpected answer from the Hub (no commit or file list)", what));
  const std::string commit = info["sha"].get<std::string>();
  const fs::path snap = repo_dir / "snapshots" / commit;

  struct File {
    std::string name, blob_id, sha256;
    double size = 0;
  };
  std::vector<File> files;
  std::vector<std::string> ggufs;
  for (const auto& s : info["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) continue;
    File f{s["rfilename"].get<std::string>(), "", "", 0};
    if (f.name.empty() || f.name.front() == '/' || f.name.find("..") != std::string::npos) continue;
    if (s.contains("blobId") && s["blobId"].is_string()) f.blob_id = s["blobId"].get<std::string>();
    if (s.contains("size") && s["size"].is_number()) f.size = s["size"].get<double>();
    if (s.contains("lfs") && s["lfs"].is_object() && s["lfs"].contains("sha256") && s["lfs"]["sha256"].is_string()) {
      f.sha256 = f.blob_id = s["lfs"]["sha256"].get<std::string>();
      if (s["lfs"].contains("size") && s["lfs"]["size"].is_number()) f.size = s["lfs"]["size"].get<double>();
    }
    if (!valid_name(fs::path(f.blob_id).filename().string())) f.blob_id.clear();
    if (f.name.size() > 5 && f.name.substr(f.name.size() - 5) == ".gguf") ggufs.push_back(f.name);
    if (id->file.empty() ? wanted(f.name) : f.name == id->file) files.push_back(f);
  }
  if (!id->file.empty() && files.empty())
    throw std::runtime_error(fmt::format("{}: the repository has no file {}", what, id->file));
  if (id->file.empty() && std::none_of(files.begin(), files.end(), [](const File& f) { return f.name == "config.json"; })) {
    std::string hint = ggufs.empty() ? "" : fmt::format(" (GGUF files: name one, e.g. {}/{})", id->repo(), ggufs.front());
    throw std::runtime_error(fmt::format("{}: no config.json in the repository{}", what, hint));
  }

  for (const File& f : files) {
    const fs::path link = snap / f.name;
    if (fs::exists(link)) continue;
    fetch(fmt::format("{}/{}/{}/resolve/{}/{}", endpoint, encode(id->org), encode(id->name), commit, encode_path(f.name)),
          token, repo_dir, link, f.blob_id, f.sha256, f.size, o, what, f.name);
  }
  if (!is_commit(o.revision)) {
    fs::create_directories((repo_dir / "refs" / o.revision).parent_path());
    write_file_atomic(repo_dir / "refs" / o.revision, commit);
  }
  return id->file.empty() ? snap : snap / id->file;
#endif
}

}  // namespace lmlab::hub
