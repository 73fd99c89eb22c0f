// The lmlab and Hugging Face model caches, listed and pruned (model_cache.h).
#include "lmlab/model_cache.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <system_error>

#include <fmt/format.h>

#include "lmlab/core.h"
#include "lmlab/io.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab {

namespace {

int64_t file_bytes(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);  // follows symlinks (Hub snapshots link to blobs)
  return ec ? 0 : static_cast<int64_t>(n);
}

int64_t tree_bytes(const fs::path& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) n += static_cast<int64_t>(it->file_size(ec));
  return n;
}

// The quantization of a GGUF: its file type, else the commonest tensor type.
std::string gguf_quantization(const io::GgufFile& g) {
  if (auto ft = meta_int(g.meta, "general.file_type"))
    if (std::string n = gguf_file_type_name(*ft); !n.empty()) return n;
  std::map<uint32_t, int> count;
  for (const auto& t : g.tensors)
    if (t.dims.size() >= 2) ++count[t.type];
  auto top = std::max_element(count.begin(), count.end(),
                              [](const auto& a, const auto& b) { return a.second < b.second; });
  return top == count.end() ? "" : io::ggml_type_name(top->first);
}

void describe_gguf(CachedModel& m) {
  m.format = "gguf";
  try {
    io::GgufFile g = io::read_gguf(m.path);
    m.architecture = meta_string(g.meta, "general.architecture").value_or("");
    m.quantization = gguf_quantization(g);
  } catch (const std::exception& e) {
    m.error = e.what();
  }
}

void describe_config(CachedModel& m, const fs::path& config) {
  try {
    std::ifstream f(config);
    json c = json::parse(f);
    if (c.contains("text_config") && !c.contains("model_type")) c = c["text_config"];
    m.architecture = c.value("model_type", "");
    const json* q = c.contains("quantization") ? &c["quantization"]
                    : c.contains("quantization_config") ? &c["quantization_config"] : nullptr;
    if (q && q->is_object() && q->contains("bits"))
      m.quantization = fmt::format("{}-bit {} g{}", q->value("bits", 0), q->value("mode", std::string("affine")),
                                   q->value("group_size", 64));
    else
      m.quantization = c.value("torch_dtype", c.value("dtype", std::string()));
  } catch (const std::exception& e) {
    m.error = fmt::format("config.json: {}", e.what());
  }
}

}  // namespace

CachedModel describe_model(const fs::path& path) {
  CachedModel m{.name = path.string(), .cache = "", .path = path};
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    m.bytes = tree_bytes(path);
    m.format = "safetensors";
    if (fs::exists(path / "config.json", ec)) describe_config(m, path / "config.json");
  } else {
    m.bytes = file_bytes(path);
    describe_gguf(m);
  }
  return m;
}

namespace {

void list_lmlab(const fs::path& root, std::vector<CachedModel>& out) {
  std::error_code ec;
  const fs::path dir = root / "models";
  std::vector<CachedModel> found;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path p = it->path();
    if (p.extension() != ".gguf" || !it->is_regular_file(ec)) continue;
    CachedModel m{.name = p.string(), .cache = "lmlab", .path = p, .bytes = file_bytes(p)};
    for (const auto& k : known_models())
      if (k.file == p.filename().string()) m.name = k.name;
    describe_gguf(m);
    found.push_back(std::move(m));
  }
  // Models known by short name first, then other files by path.
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    const bool ka = find_known_model(a.name) != nullptr, kb = find_known_model(b.name) != nullptr;
    return ka != kb ? ka : a.name < b.name;
  });
  out.insert(out.end(), found.begin(), found.end());
}

// The snapshot a Hub repo folder resolves to: refs/main, else the newest one.
fs::path snapshot_of(const fs::path& repo) {
  std::error_code ec;
  std::ifstream ref(repo / "refs" / "main");
  std::string commit;
  if (ref >> commit && fs::is_directory(repo / "snapshots" / commit, ec)) return repo / "snapshots" / commit;
  fs::path best;
  fs::file_time_type newest{};
  for (auto it = fs::directory_iterator(repo / "snapshots", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto t = it->last_write_time(ec);
    if (best.empty() || t > newest) best = it->path(), newest = t;
  }
  return best;
}

void list_hub_repo(const fs::path& repo, const std::string& id, std::vector<CachedModel>& out) {
  const fs::path snap = snapshot_of(repo);
  CachedModel dir_entry{.name = id, .cache = "hf", .path = snap.empty() ? repo : snap, .format = "incomplete"};
  int64_t gguf_bytes = 0;
  std::error_code ec;
  std::vector<CachedModel> ggufs;
  bool safetensors = false;
  for (auto it = fs::directory_iterator(snap, ec); !snap.empty() && !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path p = it->path();
    if (p.extension() == ".gguf") {
      CachedModel g{.name = id + "/" + p.filename().string(), .cache = "hf", .path = p, .bytes = file_bytes(p)};
      describe_gguf(g);
      gguf_bytes += g.bytes;
      ggufs.push_back(std::move(g));
    } else if (p.extension() == ".safetensors") {
      safetensors = true;
    }
  }
  dir_entry.bytes = tree_bytes(repo / "blobs") - gguf_bytes;
  if (safetensors) dir_entry.format = "safetensors";
  if (fs::exists(snap / "config.json", ec)) describe_config(dir_entry, snap / "config.json");
  if (safetensors || ggufs.empty()) out.push_back(std::move(dir_entry));
  for (auto& g : ggufs) out.push_back(std::move(g));
}

void list_hub(const fs::path& root, std::vector<CachedModel>& out) {
  std::error_code ec;
  std::vector<std::pair<std::string, fs::path>> repos;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string dir = it->path().filename().string();
    const std::string prefix = "models--";
    if (!dir.starts_with(prefix) || !it->is_directory(ec)) continue;
    const std::string rest = dir.substr(prefix.size());
    const size_t sep = rest.find("--");
    if (sep == std::string::npos) continue;
    repos.emplace_back(rest.substr(0, sep) + "/" + rest.substr(sep + 2), it->path());
  }
  std::sort(repos.begin(), repos.end());
  for (const auto& [id, path] : repos) list_hub_repo(path, id, out);
}

}  // namespace

json to_json(const CachedModel& m) {
  json j = {{"name", m.name},     {"cache", m.cache},         {"path", m.path.string()},
            {"bytes", m.bytes},   {"format", m.format},       {"quantization", m.quantization},
            {"architecture", m.architecture}};
  if (!m.error.empty()) j["error"] = m.error;
  return j;
}

std::vector<CachedModel> list_cached_models(const fs::path& lmlab_cache, const fs::path& hf_cache) {
  std::vector<CachedModel> out;
  list_lmlab(lmlab_cache, out);
  list_hub(hf_cache, out);
  return out;
}

CachedModel remove_cached_model(const fs::path& lmlab_cache, const fs::path& hf_cache, const std::string& name) {
  std::vector<CachedModel> all = list_cached_models(lmlab_cache, hf_cache);
  auto it = std::find_if(all.begin(), all.end(), [&](const CachedModel& m) { return m.name == name; });
  if (it == all.end())
    throw std::invalid_argument(fmt::format("[models] no cached model '{}' (see `lmlab models` for the names)", name));
  std::error_code ec;
  if (it->cache == "lmlab") {
    fs::remove(it->path, ec);
    fs::remove(fs::path(it->path.string() + ".sha256-ok"), ec);
  } else if (it->format == "gguf") {
    const fs::path blob = fs::canonical(it->path, ec);
    fs::remove(it->path, ec);
    if (!blob.empty()) fs::remove(blob, ec);
  } else {
    // The repo folder: .../models--org--name/snapshots/<commit> → .../models--org--name.
    const fs::path repo = it->path.parent_path().filename() == "snapshots" ? it->path.parent_path().parent_path()
                                                                             : it->path;
    fs::remove_all(repo, ec);
  }
  if (ec)
    throw std::runtime_error(fmt::format("[models] could not remove {}: {}", it->path.string(), ec.message()));
  return *it;
}

std::string gguf_file_type_name(int64_t t) {
  static const std::map<int64_t, const char*> names = {
      {0, "F32"},     {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
      {9, "Q5_1"},    {10, "Q2_K"},    {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
      {15, "Q4_K_M"}, {16, "Q5_K_S"},  {17, "Q5_K_M"}, {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"},
      {21, "Q2_K_S"}, {22, "IQ3_XS"},  {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"},
      {27, "IQ3_M"},  {28, "IQ2_S"},   {29, "IQ2_M"},  {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"},
      {36, "TQ1_0"},  {37, "TQ2_0"},   {38, "MXFP4_MOE"}};
  auto it = names.find(t);
  return it == names.end() ? "" : it->second;
}

}  // namespace lmlab
