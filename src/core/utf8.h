// UTF-8, once for the whole project: validation by Unicode's well-formedness
// table (overlongs, surrogates and code points past U+10FFFF are invalid),
// lossy repair with the maximal-subpart rule (Rust's from_utf8_lossy, Python's
// errors="replace"), Python's surrogateescape round trip for the Jinja engine,
// and code-point counting for terminal output. No Unicode tables here: the
// character classes of the tokenizer live in tokenizer/unicode.h.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lmlab::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
inline constexpr size_t npos = std::string_view::npos;

// Length of the well-formed sequence starting at s[i], or 0 when invalid or cut.
size_t seq_len(std::string_view s, size_t i);
// Length of the maximal invalid subpart at s[i] (what one U+FFFD replaces).
size_t invalid_len(std::string_view s, size_t i);
// Byte length a lead byte announces (1 for ASCII and for stray bytes).
inline size_t lead_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

bool is_valid(std::string_view s);
// Byte offset of the first invalid sequence, npos when s is valid.
size_t first_invalid(std::string_view s);
// Each maximal invalid subpart becomes U+FFFD; valid text comes back unchanged.
std::string lossy(std::string_view s);
// Bytes at the end of s that start a sequence still waiting for continuation
// bytes (0 when s ends on a character boundary or with invalid bytes).
size_t incomplete_tail(std::string_view s);

// Decodes the code point at s[i] and advances i past it. s[i..] should be
// valid; a cut sequence is read as far as it goes.
char32_t next(std::string_view s, size_t& i);
void append(std::string& out, char32_t cp);

// Code points in s (continuation bytes are not counted; invalid bytes are).
size_t length(std::string_view s);
// The first n code points of s.
std::string_view prefix(std::string_view s, size_t n);

// Python's surrogateescape: each byte of an invalid sequence decodes to
// U+DC80 + byte and encodes back to that byte, so any bytes round-trip.
std::u32string decode_escaped(std::string_view s);
void append_escaped(std::string& out, char32_t cp);
std::string encode_escaped(std::u32string_view s);

}  // namespace lmlab::utf8
