// UTF-8 validation, repair, counting and surrogateescape (see utf8.h).
#include "core/utf8.h"

namespace lmlab::utf8 {

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

// Number of bytes of the well-formed prefix of the sequence at s[i] (lead
// included), and whether the whole sequence is complete.
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

size_t seq_len(std::string_view s, size_t i) {
  bool complete;
  size_t n = valid_prefix(s, i, complete);
  return complete ? n : 0;
}

size_t invalid_len(std::string_view s, size_t i) {
  bool complete;
  size_t n = valid_prefix(s, i, complete);
  return n == 0 ? 1 : n;
}

size_t first_invalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = seq_len(s, i);
    if (!n) return i;
    i += n;
  }
  return npos;
}

bool is_valid(std::string_view s) { return first_invalid(s) == npos; }

std::string lossy(std::string_view s) {
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
    size_t n = seq_len(s, i);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.append(kReplacement);
      i += invalid_len(s, i);
    }
  }
  return out;
}

size_t incomplete_tail(std::string_view s) {
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

char32_t next(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t n = lead_len(c);
  if (i + n > s.size()) n = s.size() - i;
  char32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append(std::string& out, char32_t cp) {
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

size_t length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string_view prefix(std::string_view s, size_t n) {
  size_t i = 0;
  for (size_t k = 0; k < n && i < s.size(); ++k) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  }
  return s.substr(0, i);
}

std::u32string decode_escaped(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (seq_len(s, i) == 0) {
      // Python escapes each byte of an invalid run; its continuation bytes
      // are invalid on their own, so escaping one byte at a time matches.
      out.push_back(0xDC00 + static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    out.push_back(next(s, i));
  }
  return out;
}

void append_escaped(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) out += static_cast<char>(cp - 0xDC00);  // an undecodable byte
  else append(out, cp);
}

std::string encode_escaped(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_escaped(out, c);
  return out;
}

}  // namespace lmlab::utf8
