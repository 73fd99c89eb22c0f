// The models on this machine: the lmlab cache (models fetched by short name,
// core.h) and the Hugging Face cache (hub.h's layout, shared with mlx_lm and
// transformers), each described from its own files — GGUF header or
// config.json — without loading any weights. `lmlab models` prints this list.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmlab {

struct CachedModel {
  std::string name{};          // what --model takes: "gemma3-270m", "org/name", "org/name/file.gguf"
  std::string cache{};         // "lmlab" or "hf"
  std::filesystem::path path{};
  int64_t bytes = 0;         // on disk (a Hub repo's blobs, each counted once)
  std::string format{};        // "gguf", "safetensors", or "incomplete" (no weights yet)
  std::string quantization{};  // "Q4_K_M", "4-bit affine g64", "bfloat16", "" when unknown
  std::string architecture{};  // GGUF general.architecture or config.json model_type
  std::string error{};         // why the description is missing (an unreadable file), else ""
};
nlohmann::json to_json(const CachedModel& m);

// Every model in the lmlab cache (`lmlab_cache`/models) and the Hugging Face
// cache (`hf_cache`, hub::cache_root() by default), lmlab's first, by name.
std::vector<CachedModel> list_cached_models(const std::filesystem::path& lmlab_cache,
                                            const std::filesystem::path& hf_cache);

// One model on disk, described like a cache entry (name = the path): a GGUF
// file, or a model directory with config.json (bytes: every file in it).
CachedModel describe_model(const std::filesystem::path& path);

// Deletes the model `name` (as listed) from its cache: the GGUF and its checksum
// stamp, or the Hub repo folder with its blobs. Returns what was removed.
// Throws std::invalid_argument when no listed model has that name.
CachedModel remove_cached_model(const std::filesystem::path& lmlab_cache,
                                const std::filesystem::path& hf_cache, const std::string& name);

// llama.cpp's name of a GGUF general.file_type ("Q4_K_M"), "" when unknown.
std::string gguf_file_type_name(int64_t file_type);

}  // namespace lmlab
