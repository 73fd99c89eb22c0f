// lmlab models: both caches listed from their own files (GGUF headers,
// config.json), sizes counted once per blob, and `rm` deleting only the named model.
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/gguf_writer.h"
#include "lmlab/model_cache.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace fs = std::filesystem;

void write_gguf(const fs::path& p, const std::string& arch, uint32_t file_type) {
  GgufWriter w;
  w.add_str("general.architecture", arch);
  w.add_u32("general.file_type", file_type);
  w.add_tensor("blk.0.attn_q.weight", {256, 2}, 12, std::vector<uint8_t>(2 * 144, 0));  // Q4_K
  w.write(p.string());
}

// A Hub repo folder: blobs, snapshots/<commit>/<file> → ../../blobs/<id>, refs/main.
void hub_file(const fs::path& repo, const std::string& file, const std::string& content) {
  const std::string commit = "0123abcd", blob = "blob-" + file;
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "snapshots" / commit);
  fs::create_directories(repo / "refs");
  std::ofstream(repo / "refs" / "main") << commit;
  std::ofstream(repo / "blobs" / blob, std::ios::binary) << content;
  fs::create_symlink(fs::path("../../blobs") / blob, repo / "snapshots" / commit / file);
}

struct Caches {
  fs::path lmlab, hf;
};

Caches make_caches() {
  fs::path root = temp_dir("model-cache");
  Caches c{root / "lmlab", root / "hf"};
  fs::create_directories(c.lmlab / "models");
  write_gguf(c.lmlab / "models" / "gemma-3-270m-q4_k_m.gguf", "gemma3", 15);
  std::ofstream(c.lmlab / "models" / "gemma-3-270m-q4_k_m.gguf.sha256-ok");
  write_gguf(c.lmlab / "models" / "mine.gguf", "llama", 2);
  std::ofstream(c.lmlab / "models" / "broken.gguf") << "not a gguf";
  const fs::path mlx = c.hf / "models--mlx-community--Tiny-4bit";
  hub_file(mlx, "config.json",
           R"({"model_type": "qwen3", "quantization": {"group_size": 64, "bits": 4}})");
  hub_file(mlx, "model.safetensors", std::string(1000, 'x'));
  const fs::path gg = c.hf / "models--org--Some-GGUF";
  write_gguf(c.lmlab / "tmp.gguf", "qwen2", 18);
  std::ifstream in(c.lmlab / "tmp.gguf", std::ios::binary);
  hub_file(gg, "some-Q6_K.gguf", std::string(std::istreambuf_iterator<char>(in), {}));
  fs::remove(c.lmlab / "tmp.gguf");
  return c;
}

const CachedModel* find(const std::vector<CachedModel>& all, const std::string& name) {
  for (const auto& m : all)
    if (m.name == name) return &m;
  return nullptr;
}

TEST(ModelCache, ListsBothCachesFromTheirOwnFiles) {
  Caches c = make_caches();
  auto all = list_cached_models(c.lmlab, c.hf);
  ASSERT_EQ(all.size(), 5u);
  const CachedModel* g = find(all, "gemma3-270m");  // a known model by its short name
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->cache, "lmlab");
  EXPECT_EQ(g->format, "gguf");
  EXPECT_EQ(g->quantization, "Q4_K_M");
  EXPECT_EQ(g->architecture, "gemma3");
  EXPECT_EQ(g->bytes, static_cast<int64_t>(fs::file_size(g->path)));
  const CachedModel* mine = find(all, (c.lmlab / "models" / "mine.gguf").string());
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(mine->quantization, "Q4_0");
  const CachedModel* broken = find(all, (c.lmlab / "models" / "broken.gguf").string());
  ASSERT_NE(broken, nullptr);
  EXPECT_NE(broken->error.find("GGUF"), std::string::npos) << broken->error;
  const CachedModel* mlx = find(all, "mlx-community/Tiny-4bit");
  ASSERT_NE(mlx, nullptr);
  EXPECT_EQ(mlx->format, "safetensors");
  EXPECT_EQ(mlx->architecture, "qwen3");
  EXPECT_EQ(mlx->quantization, "4-bit affine g64");
  EXPECT_GT(mlx->bytes, 1000);
  const CachedModel* hub_gguf = find(all, "org/Some-GGUF/some-Q6_K.gguf");
  ASSERT_NE(hub_gguf, nullptr);
  EXPECT_EQ(hub_gguf->quantization, "Q6_K");
  EXPECT_EQ(hub_gguf->architecture, "qwen2");
  EXPECT_EQ(all[0].cache, "lmlab");
  EXPECT_EQ(to_json(*mlx)["format"], "safetensors");
}

TEST(ModelCache, RemoveDeletesOnlyTheNamedModel) {
  Caches c = make_caches();
  CachedModel gone = remove_cached_model(c.lmlab, c.hf, "gemma3-270m");
  EXPECT_FALSE(fs::exists(gone.path));
  EXPECT_FALSE(fs::exists(gone.path.string() + ".sha256-ok"));
  remove_cached_model(c.lmlab, c.hf, "mlx-community/Tiny-4bit");
  EXPECT_FALSE(fs::exists(c.hf / "models--mlx-community--Tiny-4bit"));
  remove_cached_model(c.lmlab, c.hf, "org/Some-GGUF/some-Q6_K.gguf");
  auto left = list_cached_models(c.lmlab, c.hf);
  EXPECT_EQ(find(left, "org/Some-GGUF/some-Q6_K.gguf"), nullptr);
  EXPECT_NE(find(left, (c.lmlab / "models" / "mine.gguf").string()), nullptr);
  EXPECT_THROW(remove_cached_model(c.lmlab, c.hf, "nope/none"), std::invalid_argument);
}

TEST(ModelCache, CliListsAndRemoves) {
  Caches c = make_caches();
  const std::string env = "LMLAB_HOME=" + c.lmlab.string() + " HF_HUB_CACHE=" + c.hf.string() + " ";
  const fs::path out = c.lmlab / "out.json";
  ASSERT_EQ(std::system((env + lmlab_binary() + " models --json > " + out.string()).c_str()), 0);
  std::ifstream f(out);
  auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j.size(), 5u);
  EXPECT_EQ(j[0]["name"], "gemma3-270m");
  ASSERT_EQ(std::system((env + lmlab_binary() + " models rm gemma3-270m > /dev/null").c_str()), 0);
  EXPECT_NE(std::system((env + lmlab_binary() + " models rm gemma3-270m 2> /dev/null").c_str()), 0);
}

}  // namespace
}  // namespace lmlab::test
