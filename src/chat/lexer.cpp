// The lexer follows jinja2's lexer.py rule for rule (its regexes are the
// specification): newlines are normalized to \n, one trailing newline is
// dropped, and lstrip_blocks only strips a tag's indentation when the tag
// starts a line.
#include "chat/lexer.h"

#include <cmath>

#include "core/utf8.h"

namespace lmlab::detail::jinja {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.rstrip() on the ASCII whitespace jinja data can end with;
// rstrip also removes Unicode spaces, handled on the decoded text.
std::string py_rstrip(const std::string& s) {
  std::u32string cps = utf8::decode_escaped(s);
  size_t n = cps.size();
  while (n > 0 && py_isspace(cps[n - 1])) --n;
  cps.resize(n);
  return utf8::encode_escaped(cps);
}

// True when s[from:] is non-empty and all whitespace (re `\s+` fullmatch).
bool all_space(const std::string& s, size_t from) {
  if (from >= s.size()) return false;
  for (char32_t c : utf8::decode_escaped(s.substr(from)))
    if (!py_isspace(c)) return false;
  return true;
}

class Lexer {
 public:
  Lexer(const std::string& source, const LexOptions& opts) : opts_(opts) {
    // Normalize \r\n and \r to \n and drop one trailing newline, as jinja2 does.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0, n = src_.size();
    bool line_starting = true;
    while (pos < n) {
      size_t p = find_tag(pos);
      if (p == std::string::npos) {
        push(Tok::Data, src_.substr(pos), pos);
        break;
      }
      std::string text = src_.substr(pos, p - pos);
      char kind = src_[p + 1];  // '{', '%' or '#'
      char sign = p + 2 < n && (src_[p + 2] == '-' || src_[p + 2] == '+') ? src_[p + 2] : 0;
      if (sign == '-') {
        text = py_rstrip(text);
      } else if (sign != '+' && opts_.lstrip_blocks && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && all_space(text, l_pos)) text.resize(l_pos);
      }
      if (!text.empty()) push(Tok::Data, text, pos);
      size_t after = p + 2 + (sign ? 1 : 0);
      if (kind == '%' && raw_block(p, after, pos, line_starting)) continue;
      if (kind == '#') {
        pos = comment(p, after, line_starting);
      } else {
        pos = tag(p, after, kind == '{', line_starting);
      }
    }
    push(Tok::Eof, "", n);
    return std::move(toks_);
  }

 private:
  Loc loc(size_t pos) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= pos) lo = mid; else hi = mid;
    }
    return Loc{static_cast<int>(lo + 1), static_cast<int>(pos - line_starts_[lo] + 1)};
  }

  void push(Tok t, std::string text, size_t pos) { toks_.push_back(Token{t, std::move(text), loc(pos)}); }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  size_t skip_ws(size_t i) const {
    while (i < src_.size() && is_ws(src_[i])) ++i;
    return i;
  }

  // `{% raw %}...{% endraw %}`: the body is data, untouched.
  bool raw_block(size_t start, size_t after, size_t& pos, bool& line_starting) {
    size_t i = skip_ws(after);
    if (src_.compare(i, 3, "raw") != 0 || (i + 3 < src_.size() && is_name_char(src_[i + 3]))) return false;
    i = skip_ws(i + 3);
    if (src_.compare(i, 3, "-%}") == 0) i = skip_ws(i + 3);
    else if (src_.compare(i, 2, "%}") == 0) i += 2;
    else return false;
    for (size_t j = i; j + 1 < src_.size(); ++j) {
      if (src_[j] != '{' || src_[j + 1] != '%') continue;
      size_t k = j + 2;
      char sign = k < src_.size() && (src_[k] == '-' || src_[k] == '+') ? src_[k] : 0;
      if (sign) ++k;
      k = skip_ws(k);
      if (src_.compare(k, 6, "endraw") != 0) continue;
      k = skip_ws(k + 6);
      size_t end;
      if (src_.compare(k, 3, "+%}") == 0) end = k + 3;
      else if (src_.compare(k, 3, "-%}") == 0) end = skip_ws(k + 3);
      else if (src_.compare(k, 2, "%}") == 0) end = k + 2 + (opts_.trim_blocks && k + 2 < src_.size() && src_[k + 2] == '\n');
      else continue;
      std::string body = src_.substr(i, j - i);
      if (sign == '-') body = py_rstrip(body);
      else if (sign != '+' && opts_.lstrip_blocks) {
        size_t l_pos = body.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 && all_space(body, l_pos)) body.resize(l_pos);
      }
      if (!body.empty()) push(Tok::Data, body, i);
      line_starting = src_[end - 1] == '\n';
      pos = end;
      return true;
    }
    fail(loc(start), "Missing end of raw directive");
  }

  size_t comment(size_t start, size_t i, bool& line_starting) {
    for (; i + 1 < src_.size(); ++i) {
      size_t end = 0;
      if ((src_[i] == '+' || src_[i] == '-') && src_.compare(i + 1, 2, "#}") == 0) {
        end = src_[i] == '-' ? skip_ws(i + 3) : i + 3;
      } else if (src_.compare(i, 2, "#}") == 0) {
        end = i + 2 + (opts_.trim_blocks && i + 2 < src_.size() && src_[i + 2] == '\n');
      }
      if (end) {
        line_starting = src_[end - 1] == '\n';
        return end;
      }
    }
    fail(loc(start), "Missing end of comment tag");
  }

  // The inside of {{ }} or {% %}: expression tokens up to the closing
  // delimiter, which only counts when brackets are balanced.
  size_t tag(size_t start, size_t i, bool var, bool& line_starting) {
    push(var ? Tok::VarBegin : Tok::BlockBegin, "", start);
    std::string brackets;
    const size_t n = src_.size();
    while (true) {
      i = skip_ws(i);
      if (i >= n) fail(loc(start), var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      if (brackets.empty()) {
        size_t end = 0;
        if (var) {
          if (src_.compare(i, 3, "-}}") == 0) end = skip_ws(i + 3);
          else if (src_.compare(i, 2, "}}") == 0) end = i + 2;
        } else {
          if (src_.compare(i, 3, "-%}") == 0) end = skip_ws(i + 3);
          else if (src_.compare(i, 3, "+%}") == 0) end = i + 3;
          else if (src_.compare(i, 2, "%}") == 0) end = i + 2 + (opts_.trim_blocks && i + 2 < n && src_[i + 2] == '\n');
        }
        if (end) {
          push(var ? Tok::VarEnd : Tok::BlockEnd, "", i);
          line_starting = src_[end - 1] == '\n';
          return end;
        }
      }
      char c = src_[i];
      if (is_digit(c)) {
        i = number(i);
      } else if (is_name_start(c)) {
        size_t j = i;
        while (j < n && is_name_char(src_[j])) ++j;
        push(Tok::Name, src_.substr(i, j - i), i);
        i = j;
      } else if (c == '\'' || c == '"') {
        i = string_lit(i);
      } else {
        static const char* ops2[] = {"//", "**", "==", "!=", ">=", "<="};
        std::string op;
        for (const char* o : ops2)
          if (src_.compare(i, 2, o) == 0) op = o;
        if (op.empty()) {
          if (std::string("+-/*%~[](){}><=.:|,;").find(c) == std::string::npos)
            fail(loc(i), std::string("unexpected char '") + c + "'");
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") {
          brackets += op == "(" ? ')' : op == "[" ? ']' : '}';
        } else if (op == ")" || op == "]" || op == "}") {
          if (brackets.empty()) fail(loc(i), "unexpected '" + op + "'");
          if (brackets.back() != op[0])
            fail(loc(i), "unexpected '" + op + "', expected '" + std::string(1, brackets.back()) + "'");
          brackets.pop_back();
        }
        push(Tok::Op, op, i);
        i += op.size();
      }
    }
  }

  // Digits with optional '_' separators; a float needs digits after the '.'.
  size_t digits(size_t i) const {
    while (i < src_.size() && (is_digit(src_[i]) || (src_[i] == '_' && i + 1 < src_.size() && is_digit(src_[i + 1])))) ++i;
    return i;
  }

  size_t number(size_t i) {
    const size_t n = src_.size();
    size_t j = digits(i);
    bool is_float = false;
    if (j + 1 < n && src_[j] == '.' && is_digit(src_[j + 1])) {
      j = digits(j + 1);
      is_float = true;
    }
    if (j < n && (src_[j] == 'e' || src_[j] == 'E')) {
      size_t k = j + 1;
      if (k < n && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < n && is_digit(src_[k])) {
        j = digits(k);
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = i; k < j; ++k)
      if (src_[k] != '_') text += src_[k];
    Token t{is_float ? Tok::Float : Tok::Int, src_.substr(i, j - i), loc(i)};
    if (is_float) {
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      // jinja2 reads leading zeros only as "0", "00"...; "012" lexes as 0 then 12
      if (text.size() > 1 && text[0] == '0') {
        size_t z = 0;
        while (z < text.size() && text[z] == '0') ++z;
        if (z < text.size()) {
          j = i + z;
          text = "0";
          t.text = src_.substr(i, z);
        }
      }
      if (text.size() > 18) fail(loc(i), "integer literal too large");
      t.ival = std::stoll(text);
    }
    toks_.push_back(std::move(t));
    return j;
  }

  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python string-literal escapes (jinja2 decodes with "unicode-escape").
  size_t string_lit(size_t start) {
    const char q = src_[start];
    const size_t n = src_.size();
    std::string out;
    size_t i = start + 1;
    while (true) {
      if (i >= n) fail(loc(start), "unexpected end of string literal");
      char c = src_[i];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= n) fail(loc(start), "unexpected end of string literal");
      char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': case 'u': case 'U': {
          int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < len; ++k) {
            int h = i + k < n ? hexval(src_[i + k]) : -1;
            if (h < 0) fail(loc(start), "invalid \\" + std::string(1, e) + " escape in string literal");
            cp = cp * 16 + h;
          }
          if (cp > 0x10FFFF) fail(loc(start), "illegal Unicode character in string literal");
          i += len;
          utf8::append_escaped(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = e - '0';
            for (int k = 0; k < 2 && i < n && src_[i] >= '0' && src_[i] <= '7'; ++k) cp = cp * 8 + (src_[i++] - '0');
            utf8::append_escaped(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    push(Tok::String, out, start);
    return i + 1;
  }

  std::string src_;
  LexOptions opts_;
  std::vector<size_t> line_starts_;
  std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const LexOptions& opts) {
  return Lexer(source, opts).run();
}

}  // namespace lmlab::detail::jinja
