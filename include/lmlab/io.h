// Reading model files: GGUF (metadata + tensors under their GGUF names), MLX /
// Hugging Face model directories (config.json + single or sharded safetensors),
// and saving MLX model directories. io/ knows no model family: the families'
// specs map GGUF names and metadata onto Hugging Face ones (src/models/gguf.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/core.h"
#include "lmlab/ggml.h"
#include "lmlab/weights.h"

namespace lmlab::io {

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGML order: dims[0] is the contiguous (input) dim
  uint32_t type = 0;
  uint64_t offset = 0;        // from the start of the data section
  uint64_t nbytes = 0;
};

// GGUF metadata value types, numbered as the file format numbers them.
enum class GgufType : uint32_t { U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };
// A key's stored type; `element` is an Array's element type.
struct GgufKeyType {
  GgufType type = GgufType::String;
  GgufType element = GgufType::U8;
};

struct GgufFile {
  std::filesystem::path path;
  uint32_t version = 0;
  Metadata meta;
  std::map<std::string, GgufKeyType> meta_types;  // each key's type as stored (Metadata widens them)
  std::vector<GgufTensorInfo> tensors;
  uint64_t data_offset = 0;  // absolute file offset of the tensor data
  uint64_t file_size = 0;
};

// Parses and validates the header (metadata and tensor table) without reading
// tensor data. Throws std::runtime_error "[gguf] <file>: ..." for truncated or
// corrupt files.
GgufFile read_gguf(const std::filesystem::path& path);
// The same from bytes in memory (`path` names them in errors); what
// read_gguf runs on the mapped file, and what the GGUF fuzzer feeds.
GgufFile parse_gguf(const uint8_t* data, uint64_t size, const std::filesystem::path& path);

// One tensor to write: `data` holds its bytes in GGML layout (row-major,
// `dims[0]` contiguous), e.g. float16 values for F16 or uint8 blocks.
struct GgufTensorOut {
  std::string name;
  std::vector<int64_t> dims;  // GGML order, as GgufTensorInfo
  GgmlType type = GgmlType::F32;
  mlx::core::array data = mlx::core::array(0);
};
struct GgufOut {
  Metadata meta;
  std::map<std::string, GgufKeyType> types;  // one per key of `meta`
  std::vector<GgufTensorOut> tensors;
};
// Writes a GGUF (version 3) file: header, metadata, tensor infos, data padded
// to general.alignment (32 when absent), into a temp file renamed into place.
// Throws std::invalid_argument, writing nothing, for a key without a type or
// whose value does not fit it, or a tensor whose bytes do not match its dims
// and type; std::runtime_error when the file cannot be written.
void write_gguf(const std::filesystem::path& path, const GgufOut& gguf);

// Reads every tensor, converting to MLX: F32/F16/BF16 stay dense (cast to
// `float_dtype` when given); Q4_0/Q4_1/Q8_0 become MLX affine quantization,
// group size 32, exactly (no rounding). Names are GGUF names (`blk.0.attn_q.weight`).
// Other types throw lmlab::Unsupported naming the tensor and type.
Weights read_gguf_tensors(const GgufFile& file);

// Raw GGML blocks (uint8 (..., n · block bytes), a raw-block mode's `P.weight`)
// dequantized with MLX ops on the default device: (..., n · block elements) in
// `dtype`, equal to ggml_dequantize_row bit for bit (computed in float32).
mlx::core::array ggml_dequantize(const mlx::core::array& blocks, GgmlType type,
                                 mlx::core::Dtype dtype = mlx::core::float32);

// The raw-block types whose decoder is linear per 16-element sub-block (Q2_K,
// Q3_K, Q6_K) in MLX's affine terms: element e = scales[e/16] · levels[e] +
// biases[e/16], equal to ggml_dequantize in float32 (every product is exact
// there; where ggml gives −0.0 this gives +0.0). levels: (..., n) uint8, unsigned (Q6_K 0..63, the value
// d·sc·(level − 32)); scales, biases: (..., n/16) float32. Other types throw
// std::invalid_argument.
struct GgmlAffine {
  mlx::core::array levels, scales, biases;
};
GgmlAffine ggml_affine_form(const mlx::core::array& blocks, GgmlType type);

// One tensor of a safetensors header: dtype name ("F16"), shape, and its
// byte range in the data section.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};
struct SafetensorsHeader {
  uint64_t header_bytes = 0;
  std::vector<SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};
// Checks a safetensors file's header against its size (every range inside
// the data, sizes matching shapes and dtypes, no overlaps) without reading
// the data. Throws std::runtime_error "[safetensors] <file>: ..." for a
// truncated or corrupt file, lmlab::Unsupported for a dtype MLX cannot load.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& path);
// The same from bytes in memory (what the safetensors fuzzer feeds).
SafetensorsHeader parse_safetensors_header(const uint8_t* data, uint64_t size, const std::filesystem::path& path);

// The quantization of each of `prefixes` (modules stored with `.scales`) as
// config.json's "quantization" (or "quantization_config") gives it: the
// global bits/group_size/mode, a per-module object overriding them, `false`
// leaving the module unquantized (absent from the result). Throws
// std::invalid_argument "[model] <where>: ..." for a missing block or a value
// of the wrong type or outside what MLX's affine kernels take.
std::map<std::string, QuantSpec> quantization_from_config(const nlohmann::json& config,
                                                          const std::vector<std::string>& prefixes,
                                                          const std::string& where);

// An MLX / HF model directory.
struct ModelDir {
  nlohmann::json config;  // config.json (+ generation_config.json eos override)
  Weights weights;        // quantized modules registered from config["quantization"]
};

// Loads config.json and every model*.safetensors (sharded or not). Tensors are
// lazy (read on first use). Throws for missing/invalid files, naming them.
ModelDir read_model_dir(const std::filesystem::path& dir);

// Writes an MLX model directory (config.json with "quantization",
// model.safetensors or shards + index) atomically: into a temp folder, then rename.
// Refuses to overwrite an existing directory. `extra_files` are copied in when
// they exist; `written_files` (file name → content) are written in.
void save_model_dir(const std::filesystem::path& dir,
                    const nlohmann::json& config,
                    const Weights& weights,
                    const std::vector<std::filesystem::path>& extra_files = {},
                    const std::map<std::string, std::string>& written_files = {});

// An mlx-lm adapter folder: adapter_config.json (the run's settings; the keys
// read are fine_tune_type, lora_parameters.scale/dropout) and its weights file.
struct AdapterFile {
  std::filesystem::path dir, weights_file;
  nlohmann::json config;
  std::unordered_map<std::string, mlx::core::array> tensors;
};

// Reads `dir`; weights_file defaults to dir/adapters.safetensors (a checkpoint
// such as 0000100_adapters.safetensors may be given instead). Throws
// std::invalid_argument naming the missing or invalid file.
AdapterFile read_adapter_dir(const std::filesystem::path& dir, const std::filesystem::path& weights_file = {});
// "lora", "dora" or "full" (mlx-lm's default: lora).
std::string adapter_kind(const AdapterFile& a);

// Attaches LoRA/DoRA adapters to the modules the file names (or, for full
// fine-tuning, replaces the layers' tensors), checking every name and shape
// against the model; throws std::invalid_argument naming the first mismatch
// before changing anything it checked.
void apply_adapters(Weights& w, const AdapterFile& a);

// mx::save_safetensors into a temp file in the same folder, then rename.
void save_safetensors_atomic(const std::filesystem::path& path,
                             const std::unordered_map<std::string, mlx::core::array>& tensors,
                             const std::unordered_map<std::string, std::string>& metadata = {});

}  // namespace lmlab::io
