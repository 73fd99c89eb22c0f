// GPT-2 byte table and Unicode classes (see unicode.h).
#include "tokenizer/unicode.h"

#include <array>
#include <cstdlib>
#include <stdexcept>

#include <utf8proc.h>

namespace lmlab::detail {

namespace {

struct ByteTable {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 324> to_byte;  // code points stay below 256 + 68
  ByteTable() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      char32_t cp = printable ? b : 256 + extra++;
      utf8::append(to_char[b], cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

utf8proc_category_t category(char32_t cp) {
  return static_cast<utf8proc_category_t>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

std::string utf8proc_apply(std::string_view s, int options) {
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                        static_cast<utf8proc_ssize_t>(s.size()), &out,
                        static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (n < 0) throw std::invalid_argument(std::string("[tokenizer] utf8proc: ") +
                                         utf8proc_errmsg(n));
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

}  // namespace

const std::string& byte_to_char(uint8_t b) { return byte_table().to_char[b]; }

int char_to_byte(char32_t cp) {
  return cp < byte_table().to_byte.size() ? byte_table().to_byte[cp] : -1;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool is_alphanumeric(char32_t cp) {
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool is_numeric(char32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_punctuation(char32_t cp) {
  if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
                        (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
  auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_nonspacing_mark(char32_t cp) { return category(cp) == UTF8PROC_CATEGORY_MN; }

std::string normalize_nfc(std::string_view s) {
  return utf8proc_apply(s, UTF8PROC_COMPOSE);
}
std::string normalize_nfd(std::string_view s) {
  return utf8proc_apply(s, UTF8PROC_DECOMPOSE);
}
std::string normalize_nfkc(std::string_view s) {
  return utf8proc_apply(s, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
}
std::string normalize_nfkd(std::string_view s) {
  return utf8proc_apply(s, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = utf8::next(s, i);
    utf8::append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

}  // namespace lmlab::detail
