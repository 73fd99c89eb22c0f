// GGML's tensor types as GGUF files store them (ggml-common.h): the size of
// each type's block, and exact float32 decoding of quantized blocks.
//
// Types whose values are q·scale + bias per run of 32 elements (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K) are repacked into MLX's affine layout when a
// GGUF is read. The others (Q2_K, Q3_K, Q6_K with 16-element sub-blocks,
// IQ4_NL and IQ4_XS with a non-linear codebook) keep their block bytes: the
// module's QuantSpec mode is then the type's lowercase name ("q6_k") and its
// `P.weight` holds the raw blocks as uint8 (rows, K / block · block bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lmlab::io {

// GGML tensor type ids as written in GGUF files.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
  IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};
std::string ggml_type_name(uint32_t type);  // "Q4_K"; "type99" when unknown

// One block of a type: `elements` values stored in `bytes` bytes.
struct GgmlBlock {
  int elements = 0;
  int bytes = 0;
};
// nullopt for type ids lmlab does not know.
std::optional<GgmlBlock> ggml_block(uint32_t type);

// The raw-block QuantSpec modes: "q2_k", "q3_k", "q6_k", "iq4_nl", "iq4_xs".
bool is_ggml_mode(const std::string& mode);
// The type of a raw-block mode; throws std::invalid_argument for other modes.
GgmlType ggml_mode_type(const std::string& mode);
std::string ggml_mode_name(GgmlType type);  // "q6_k"

// Decodes `n` values (a multiple of the block size) from consecutive blocks,
// with ggml's arithmetic in ggml's order (dequantize_row_* in ggml-quants.c):
// every product ggml rounds to float32 is rounded at the same step, so the
// result equals ggml's and the gguf package's bit for bit. Quantized types
// and F32/F16/BF16; throws lmlab::Unsupported for others.
void ggml_dequantize_row(GgmlType type, const uint8_t* blocks, float* out, int64_t n);

// The stored fields of one block of a raw-block mode, for viewing and editing.
// Element i's value is, with sc = scales[i / sub_block]:
//   q2_k  d·sc·q − dmin·mins        q3_k  d·(sc − 32)·(q − 4)     q6_k  d·sc·(q − 32)
//   iq4_nl d·kIq4Values[q]          iq4_xs d·(sc − 32)·kIq4Values[q]
struct GgmlBlockFields {
  float d = 0, dmin = 0;    // the float16 super-block scales (dmin: q2_k only)
  int sub_block = 0;        // elements sharing one sub-block scale
  std::vector<int> scales;  // as stored: q2_k 4-bit, q3_k/iq4_xs 6-bit, q6_k int8; none for iq4_nl
  std::vector<int> mins;    // q2_k's 4-bit sub-block mins
  std::vector<int> q;       // each element's field, unsigned as stored (iq4: codebook index)
};
GgmlBlockFields ggml_unpack_block(GgmlType type, const uint8_t* block);
// Writes the fields back (the inverse of ggml_unpack_block; d and dmin are
// rounded to float16). Throws std::invalid_argument for a field out of range.
void ggml_pack_block(GgmlType type, const GgmlBlockFields& f, uint8_t* block);
// Bits of a raw-block mode's element fields (q2_k 2, q3_k 3, q6_k 6, iq4 4).
int ggml_field_bits(GgmlType type);

// The non-linear 4-bit codebook of IQ4_NL and IQ4_XS (kvalues_iq4nl).
extern const int8_t kIq4Values[16];

}  // namespace lmlab::io
