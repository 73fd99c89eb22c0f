// UTF-8 validation, GPT-2 byte table and Unicode classes (see unicode.h).
#include "tokenizer/unicode.h"

#include <array>
#include <cstdlib>
#include <stdexcept>

#include <utf8proc.h>

namespace lmlab::detail {

namespace {

bool in(unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; }

// Valid range of the second byte for a lead byte (Unicode Table 3-7).
bool second_ok(unsigned char lead, unsigned char c) {
  switch (lead) {
    case 0xE0: return in(c, 0xA0, 0xBF);
    case 0xED: return in(c, 0x80, 0x9F);
    case 0xF0: return in(c, 0x90, 0xBF);
    case 0xF4: return in(c, 0x80, 0x8F);
    default: return in(c, 0x80, 0xBF);
  }
}

size_t expected_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (in(lead, 0xC2, 0xDF)) return 2;
  if (in(lead, 0xE0, 0xEF)) return 3;
  if (in(lead, 0xF0, 0xF4)) return 4;
  return 0;
}

// Number of bytes of the well-formed prefix of the sequence at s[i]
// (lead included), and whether the whole sequence is complete.
size_t valid_prefix(std::string_view s, size_t i, bool& complete) {
  auto lead = static_cast<unsigned char>(s[i]);
  size_t need = expected_len(lead);
  complete = false;
  if (need == 0) return 0;
  if (need == 1) {
    complete = true;
    return 1;
  }
  size_t k = 1;
  for (; k < need; ++k) {
    if (i + k >= s.size()) return k;
    auto c = static_cast<unsigned char>(s[i + k]);
    bool ok = k == 1 ? second_ok(lead, c) : in(c, 0x80, 0xBF);
    if (!ok) return k;
  }
  complete = true;
  return need;
}

}  // namespace

size_t utf8_seq_len(std::string_view s, size_t i) {
  bool complete;
  size_t n = valid_prefix(s, i, complete);
  return complete ? n : 0;
}

size_t utf8_invalid_len(std::string_view s, size_t i) {
  bool complete;
  size_t n = valid_prefix(s, i, complete);
  return n == 0 ? 1 : n;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    // Fast path for ASCII runs.
    size_t j = i;
    while (j < s.size() && static_cast<unsigned char>(s[j]) < 0x80) ++j;
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= s.size()) break;
    size_t n = utf8_seq_len(s, i);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.append(kReplacementChar);
      i += utf8_invalid_len(s, i);
    }
  }
  return out;
}

bool utf8_is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq_len(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // A pending sequence is at most 3 bytes long and starts with a lead byte.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    size_t i = s.size() - back;
    auto c = static_cast<unsigned char>(s[i]);
    if (in(c, 0x80, 0xBF)) continue;
    bool complete;
    size_t n = valid_prefix(s, i, complete);
    return (!complete && n == back) ? back : 0;
  }
  return 0;
}

char32_t utf8_next(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t n = utf8_lead_len(c);
  if (i + n > s.size()) n = s.size() - i;
  char32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

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
      utf8_append(to_char[b], cp);
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
    char32_t cp = utf8_next(s, i);
    utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

}  // namespace lmlab::detail
