// Unicode helpers for the tokenizer: GPT-2's byte<->char table and character
// classes that match Rust's char methods, which HF `tokenizers` uses. UTF-8
// itself (validation, lossy repair, decoding) is core/utf8.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace lmlab::detail {

// GPT-2 byte-level table: every byte maps to a printable code point.
const std::string& byte_to_char(uint8_t b);
// Inverse of byte_to_char; -1 when cp is not in the table.
int char_to_byte(char32_t cp);

// Rust char::is_whitespace (Unicode White_Space).
bool is_whitespace(char32_t cp);
// Rust char::is_alphanumeric (Alphabetic or Numeric; approximated by L*/N*).
bool is_alphanumeric(char32_t cp);
// Rust char::is_numeric (Nd, Nl, No).
bool is_numeric(char32_t cp);
// ASCII punctuation or Unicode P* (HF's is_punc).
bool is_punctuation(char32_t cp);
// Nonspacing mark (Mn), dropped by StripAccents.
bool is_nonspacing_mark(char32_t cp);

// Unicode normal forms and lowercasing, via utf8proc; input must be valid UTF-8.
std::string normalize_nfc(std::string_view s);
std::string normalize_nfd(std::string_view s);
std::string normalize_nfkc(std::string_view s);
std::string normalize_nfkd(std::string_view s);
std::string to_lower(std::string_view s);

}  // namespace lmlab::detail
