// Hub downloads against a local stand-in for huggingface.co (cpp-httplib on
// 127.0.0.1): the model-info API with blob ids and LFS sha256s, /resolve/ with
// large files redirected to a "CDN" path, tokens, 404s. A tiny checkpoint
// (config, safetensors) with the default model's tokenizer files is the repo.
// Checked: the huggingface_hub cache layout, that only the files a model needs
// are fetched, loading through `--model org/name`, the cache standing in when
// the Hub is unreachable or offline, resuming an interrupted download, and
// one-line errors that leave no file behind.
#ifndef LMLAB_NO_HUB

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "lmlab/hub.h"
#include "lmlab/io.h"
#include "lmlab/loader.h"
#include "lmlab/model.h"
#include "models/model_test_util.h"

namespace lmlab::test {
namespace {

namespace fs = std::filesystem;
namespace mx = mlx::core;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string sha256(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";

// A Hub with one repository per entry of `repos`; *.safetensors and *.gguf
// files are served as LFS files (sha256, redirect to /cdn/).
class FakeHub {
 public:
  std::map<std::string, std::map<std::string, std::string>> repos;  // "org/name" → file → bytes
  std::string token;            // required when set
  bool corrupt_lfs = false;     // serve wrong bytes for LFS files
  std::atomic<int> api_calls{0}, file_calls{0};
  std::string last_auth, last_range;

  FakeHub() {
    server_.Get(R"(/api/models/([^/]+)/([^/]+)/revision/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++api_calls;
      last_auth = req.get_header_value("Authorization");
      if (!authorized(req, res)) return;
      auto it = repos.find(std::string(req.matches[1]) + "/" + std::string(req.matches[2]));
      const std::string rev = req.matches[3];
      if (it == repos.end() || (rev != "main" && rev != kCommit)) {
        res.status = 404;
        res.set_content(R"({"error":"Repository not found"})", "application/json");
        return;
      }
      nlohmann::json siblings = nlohmann::json::array();
      for (const auto& [name, bytes] : it->second) {
        nlohmann::json s{{"rfilename", name}, {"size", bytes.size()}, {"blobId", fmt::format("{:040x}", std::hash<std::string>{}(bytes))}};
        if (lfs(name)) s["lfs"] = {{"sha256", sha256(bytes)}, {"size", bytes.size()}, {"pointerSize", 134}};
        siblings.push_back(s);
      }
      res.set_content(nlohmann::json{{"id", it->first}, {"sha", kCommit}, {"siblings", siblings}}.dump(), "application/json");
    });
    server_.Get(R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++file_calls;
      if (!authorized(req, res)) return;
      auto it = repos.find(std::string(req.matches[1]) + "/" + std::string(req.matches[2]));
      if (it == repos.end() || req.matches[3] != kCommit || !it->second.count(req.matches[4])) {
        res.status = 404;
        return;
      }
      const std::string name = req.matches[4];
      if (lfs(name)) {
        res.set_redirect("/cdn/" + it->first + "/" + name);
        return;
      }
      res.set_content(it->second.at(name), "application/octet-stream");
    });
    server_.Get(R"(/cdn/([^/]+)/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      last_range = req.get_header_value("Range");
      std::string bytes = repos.at(std::string(req.matches[1]) + "/" + std::string(req.matches[2])).at(req.matches[3]);
      if (corrupt_lfs) bytes[bytes.size() / 2] ^= 1;
      res.set_content(bytes, "application/octet-stream");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }
  std::string endpoint() const { return fmt::format("http://127.0.0.1:{}", port_); }

 private:
  static bool lfs(const std::string& name) {
    return name.ends_with(".safetensors") || name.ends_with(".gguf");
  }
  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (token.empty() || req.get_header_value("Authorization") == "Bearer " + token) return true;
    res.status = 401;
    return false;
  }
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

std::map<std::string, std::string> tiny_repo() {
  const fs::path tiny = fixtures_dir() / "model" / "tiny" / "llama_q4";
  const fs::path tok = fixtures_dir() / "model" / "smollm2-mlx-q4";
  return {{"config.json", slurp(tiny / "config.json")},
          {"model.safetensors", slurp(tiny / "model.safetensors")},
          {"tokenizer.json", slurp(tok / "tokenizer.json")},
          {"tokenizer_config.json", slurp(tok / "tokenizer_config.json")},
          {"chat_template.jinja", slurp(tok / "chat_template.jinja")},
          {"README.md", "# tiny\n"},
          {"pytorch_model.bin", std::string(1000, 'x')},
          {"tiny-Q4_0.gguf", std::string(2000, 'g')}};
}

hub::Options options(const FakeHub& h, const fs::path& cache) {
  hub::Options o;
  o.endpoint = h.endpoint();
  o.cache = cache;
  return o;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Hub, ModelIds) {
  for (const char* s : {"org/name", "mlx-community/Llama-3.2-1B-Instruct-4bit", "Qwen/Qwen3-0.6B", "org/name/file.gguf",
                        "org/name/sub/q4.gguf"})
    EXPECT_TRUE(hub::is_model_id(s)) << s;
  for (const char* s : {"", "name", "/abs/path", "org/", "org//name", "../x/y", "org/name/file.txt", "org/na me",
                        "./org/name", "org/.hidden"})
    EXPECT_FALSE(hub::is_model_id(s)) << s;
}

TEST(Hub, DownloadsWhatAModelNeedsIntoTheHfCacheLayout) {
  FakeHub h;
  h.repos["org/tiny"] = tiny_repo();
  const fs::path cache = temp_dir("hub");
  const fs::path snap = hub::snapshot("org/tiny", options(h, cache));
  const fs::path repo = cache / "models--org--tiny";
  EXPECT_EQ(snap, repo / "snapshots" / kCommit);
  EXPECT_EQ(slurp(repo / "refs" / "main"), kCommit);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}) {
    EXPECT_TRUE(fs::is_symlink(snap / f)) << f;
    EXPECT_EQ(slurp(snap / f), h.repos["org/tiny"][f]) << f;
  }
  // LFS blobs are named by their sha256, as huggingface_hub names them.
  EXPECT_TRUE(fs::exists(repo / "blobs" / sha256(h.repos["org/tiny"]["model.safetensors"])));
  for (const char* f : {"README.md", "pytorch_model.bin", "tiny-Q4_0.gguf"}) EXPECT_FALSE(fs::exists(snap / f)) << f;
  EXPECT_EQ(h.file_calls, 5);
  // Again: nothing downloaded.
  hub::snapshot("org/tiny", options(h, cache));
  EXPECT_EQ(h.file_calls, 5);
  // A single GGUF file by path.
  const fs::path gguf = hub::snapshot("org/tiny/tiny-Q4_0.gguf", options(h, cache));
  EXPECT_EQ(gguf, snap / "tiny-Q4_0.gguf");
  EXPECT_EQ(slurp(gguf), h.repos["org/tiny"]["tiny-Q4_0.gguf"]);
}

TEST(Hub, LoadModelTakesAHubIdAndMatchesTheLocalDirectory) {
  (void)cpu_context();
  FakeHub h;
  h.repos["org/tiny"] = tiny_repo();
  const fs::path cache = temp_dir("hub-load");
  ScopedEnv endpoint("HF_ENDPOINT", h.endpoint()), hub_cache("HF_HUB_CACHE", cache.string());
  auto m = load_model(cpu_context(), {.model = "org/tiny"});
  EXPECT_EQ(fs::path(m.path), cache / "models--org--tiny" / "snapshots" / kCommit);
  io::ModelDir d = io::read_model_dir(fixtures_dir() / "model" / "tiny" / "llama_q4");
  auto local = make_model(d.config, std::move(d.weights), mx::float32);
  mx::array ids({1, 5, 9, 2}, {1, 4}, mx::int32);
  EXPECT_EQ(mx::max(mx::abs(mx::subtract(m.model->forward(ids), local->forward(ids)))).item<float>(), 0.0f);
  EXPECT_FALSE(m.tokenizer.encode("hello").empty());
  // The command line: the tokenizer of a Hub model, from the cache now.
  const std::string out = (temp_dir("hub-cli") / "out").string();
  const int rc = std::system((lmlab_binary() + " tokenize --json --model org/tiny hello > " + out + " 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 0) << slurp(out);
  EXPECT_NE(slurp(out).find('['), std::string::npos) << slurp(out);
}

TEST(Hub, TheCacheStandsInOfflineOrWhenTheHubIsDown) {
  const fs::path cache = temp_dir("hub-offline");
  fs::path snap;
  {
    FakeHub h;
    h.repos["org/tiny"] = tiny_repo();
    snap = hub::snapshot("org/tiny", options(h, cache));
    hub::Options o = options(h, cache);
    o.offline = true;
    const int calls = h.api_calls;
    EXPECT_EQ(hub::snapshot("org/tiny", o), snap);
    EXPECT_EQ(h.api_calls, calls);  // offline: no request at all
  }
  // The server is gone: nothing listens on its port any more.
  hub::Options down;
  down.endpoint = "http://127.0.0.1:9";  // discard port, closed
  down.cache = cache;
  EXPECT_EQ(hub::snapshot("org/tiny", down), snap);
  EXPECT_NE(error_of([&] { hub::snapshot("org/other", down); }).find("cannot be reached"), std::string::npos);
  down.offline = true;
  EXPECT_NE(error_of([&] { hub::snapshot("org/other", down); }).find("not in the cache"), std::string::npos);
}

TEST(Hub, ErrorsAreOneLineAndLeaveNoFileBehind) {
  FakeHub h;
  h.repos["org/tiny"] = tiny_repo();
  h.repos["org/gguf-only"] = {{"model-Q4_0.gguf", std::string(100, 'g')}, {"README.md", "x"}};
  const fs::path cache = temp_dir("hub-errors");
  auto message = [&](const std::string& id, hub::Options o) { return error_of([&] { hub::snapshot(id, o); }); };

  std::string e = message("org/missing", options(h, cache));
  EXPECT_NE(e.find("[hub] org/missing: not found (HTTP 404)"), std::string::npos) << e;
  hub::Options bad_rev = options(h, cache);
  bad_rev.revision = "v9";
  EXPECT_NE(message("org/tiny", bad_rev).find("not found"), std::string::npos);
  e = message("org/gguf-only", options(h, cache));
  EXPECT_NE(e.find("no config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("org/gguf-only/model-Q4_0.gguf"), std::string::npos) << e;
  EXPECT_NE(message("org/tiny/nothere.gguf", options(h, cache)).find("no file nothere.gguf"), std::string::npos);
  EXPECT_NE(message("not an id", options(h, cache)).find("not a model id"), std::string::npos);

  // A gated model: refused without the token, fetched with it.
  h.token = "secret";
  e = message("org/tiny", options(h, cache));
  EXPECT_NE(e.find("HF_TOKEN"), std::string::npos) << e;
  // A corrupted large file fails its sha256 check and leaves nothing.
  h.corrupt_lfs = true;
  hub::Options with_token = options(h, cache);
  with_token.token = "secret";
  e = message("org/tiny", with_token);
  EXPECT_NE(e.find("model.safetensors: checksum mismatch"), std::string::npos) << e;
  EXPECT_EQ(h.last_auth, "Bearer secret");
  const fs::path repo = cache / "models--org--tiny";
  EXPECT_FALSE(fs::exists(repo / "snapshots" / kCommit / "model.safetensors"));
  for (const auto& blob : fs::directory_iterator(repo / "blobs"))
    EXPECT_EQ(blob.path().string().find(".incomplete"), std::string::npos) << blob.path();
  // Fixed on the server: the next run completes the snapshot.
  h.corrupt_lfs = false;
  const fs::path snap = hub::snapshot("org/tiny", with_token);
  EXPECT_EQ(slurp(snap / "model.safetensors"), h.repos["org/tiny"]["model.safetensors"]);
  // The command line: one line naming the model, non-zero exit (this Hub now
  // wants a token, and like huggingface.co answers 401 for an unknown model).
  {
    ScopedEnv endpoint("HF_ENDPOINT", h.endpoint()), hub_cache("HF_HUB_CACHE", cache.string());
    const std::string err = (temp_dir("hub-cli-err") / "err").string();
    const int rc = std::system((lmlab_binary() + " generate --model org/missing -p hi > /dev/null 2> " + err).c_str());
    EXPECT_NE(WEXITSTATUS(rc), 0);
    const std::string text = slurp(err);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    EXPECT_NE(text.find("org/missing is no local file or folder; as a Hub model: [hub] org/missing: access denied"),
              std::string::npos) << text;
  }
  // Every message is one line.
  for (const std::string& m : {message("org/missing", with_token), message("org/gguf-only", with_token)})
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(Hub, AnInterruptedDownloadResumes) {
  FakeHub h;
  h.repos["org/tiny"] = tiny_repo();
  const std::string& weights = h.repos["org/tiny"]["model.safetensors"];
  const fs::path cache = temp_dir("hub-resume");
  const fs::path blobs = cache / "models--org--tiny" / "blobs";
  fs::create_directories(blobs);
  // What an interrupted run leaves: the first part of the file under its blob id.
  std::ofstream(blobs / (sha256(weights) + ".incomplete"), std::ios::binary) << weights.substr(0, weights.size() / 3);
  const fs::path snap = hub::snapshot("org/tiny", options(h, cache));
  EXPECT_EQ(h.last_range, fmt::format("bytes={}-", weights.size() / 3));
  EXPECT_EQ(slurp(snap / "model.safetensors"), weights);
  EXPECT_FALSE(fs::exists(blobs / (sha256(weights) + ".incomplete")));

  // A partial file that is not the start of the real one fails the checksum
  // and is deleted; the next run downloads the whole file.
  const fs::path cache2 = temp_dir("hub-resume-bad");
  const fs::path blobs2 = cache2 / "models--org--tiny" / "blobs";
  fs::create_directories(blobs2);
  std::ofstream(blobs2 / (sha256(weights) + ".incomplete"), std::ios::binary) << std::string(1000, 'z');
  EXPECT_NE(error_of([&] { hub::snapshot("org/tiny", options(h, cache2)); }).find("checksum mismatch"), std::string::npos);
  EXPECT_FALSE(fs::exists(blobs2 / (sha256(weights) + ".incomplete")));
  EXPECT_EQ(slurp(hub::snapshot("org/tiny", options(h, cache2)) / "model.safetensors"), weights);
  EXPECT_EQ(h.last_range, "");
}

}  // namespace
}  // namespace lmlab::test

#endif  // LMLAB_NO_HUB
