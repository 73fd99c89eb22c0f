// UTF-8 and Unicode helpers for the tokenizer: lossy validation (the same
// maximal-subpart rule as Rust's from_utf8_lossy and Python's
// errors="replace"), GPT-2's byte<->char table, and character classes that
// match Rust's char methods, which HF `tokenizers` uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lmlab::detail {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at s[i], or 0 when invalid or cut.
size_t utf8_seq_len(std::string_view s, size_t i);
// Length of the maximal invalid subpart at s[i] (replaced by one U+FFFD).
size_t utf8_invalid_len(std::string_view s, size_t i);
// Each maximal invalid subpart becomes U+FFFD; valid text comes back unchanged.
std::string utf8_lossy(std::string_view s);
bool utf8_is_valid(std::string_view s);
// Number of bytes at the end of s that start a sequence still waiting for
// continuation bytes (0 when s ends on a character boundary).
size_t utf8_incomplete_tail(std::string_view s);

// Decodes the (valid) code point at s[i] and advances i.
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);
// Byte length of the character whose first byte is `lead` (1 for stray bytes).
inline size_t utf8_lead_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

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
