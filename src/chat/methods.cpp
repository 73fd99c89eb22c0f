#include "chat/methods.h"

#include <utf8proc.h>

#include <algorithm>
#include <set>

#include "core/utf8.h"

namespace lmlab::detail::jinja {
namespace {

const std::set<std::string> kStrMethods = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower",
    "title", "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isalpha", "isalnum",
    "isspace", "islower", "isupper", "format", "removeprefix", "removesuffix"};
const std::set<std::string> kDictMethods = {"items", "keys", "values", "get"};
const std::set<std::string> kListMethods = {"index", "count"};

Value arg(const CallArgs& a, size_t i, const std::string& name, const Value& dflt) {
  const Value* v = a.get(i, name);
  return v ? *v : dflt;
}

const std::string& str_arg(const CallArgs& a, size_t i, const std::string& name, const Loc& loc) {
  const Value* v = a.get(i, name);
  if (!v) fail(loc, "missing argument '" + name + "'");
  if (!v->is_string()) fail(loc, "expected a string for '" + name + "', got '" + v->type_name() + "'");
  return v->as_str();
}

bool all_cps(const std::string& s, bool (*pred)(char32_t)) {
  std::u32string cps = utf8::decode_escaped(s);
  if (cps.empty()) return false;
  for (char32_t c : cps)
    if (!pred(c)) return false;
  return true;
}

bool cp_alpha(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}
bool cp_digit(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND; }
bool cp_alnum(char32_t c) { return cp_alpha(c) || cp_digit(c); }

// Python's str.format with {} / {0} / {name} fields and {{ }} escapes.
std::string py_format(const std::string& fmt, const CallArgs& a, const Loc& loc) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') { out += '{'; ++i; continue; }
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') { out += '}'; ++i; continue; }
    if (c == '}') fail(loc, "Single '}' encountered in format string");
    if (c != '{') { out += c; continue; }
    size_t end = fmt.find('}', i);
    if (end == std::string::npos) fail(loc, "Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, end - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) fail(loc, "format specs are not supported");
    const Value* v;
    if (field.empty()) v = auto_idx < a.pos.size() ? &a.pos[auto_idx++] : nullptr;
    else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t k = field.size() > 6 ? SIZE_MAX : std::stoul(field);
      v = k < a.pos.size() ? &a.pos[k] : nullptr;
    } else v = a.kwarg(field);
    if (!v) fail(loc, "format: missing argument '" + field + "'");
    out += v->str();
    i = end;
  }
  return out;
}

Value call_str_method(Interp& in, const std::string& s, const std::string& m, CallArgs& a, const Loc& loc) {
  static const Value none{None{}};
  if (m == "strip" || m == "lstrip" || m == "rstrip")
    return Value(py_strip(s, arg(a, 0, "chars", none), m != "rstrip", m != "lstrip"));
  if (m == "split" || m == "rsplit") {
    Value ms = arg(a, 1, "maxsplit", Value(-1));
    if (!ms.is_int()) fail(loc, "maxsplit must be an integer");
    Value sep = arg(a, 0, "sep", none);
    std::vector<Value> out;
    if (sep.is_string() && sep.as_str().empty()) fail(loc, "empty separator");
    for (auto& p : m == "split" ? py_split(s, sep, ms.as_int()) : py_rsplit(s, sep, ms.as_int()))
      out.emplace_back(std::move(p));
    in.charge(out.size(), loc);
    return Value::list(std::move(out));
  }
  if (m == "splitlines") {
    std::vector<Value> out;
    for (auto& p : py_splitlines(s)) out.emplace_back(std::move(p));
    return Value::list(std::move(out));
  }
  if (m == "startswith" || m == "endswith") {
    const Value* p = a.get(0, "prefix");
    if (!p) fail(loc, m + "() takes at least 1 argument");
    std::vector<Value> cands = p->is_tuple() ? p->items() : std::vector<Value>{*p};
    for (const Value& c : cands) {
      if (!c.is_string()) fail(loc, m + " first arg must be str or a tuple of str, not " + c.type_name());
      const std::string& x = c.as_str();
      if (x.size() > s.size()) continue;
      if (m == "startswith" ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0)
        return Value(true);
    }
    return Value(false);
  }
  if (m == "upper") return Value(py_upper(s));
  if (m == "lower") return Value(py_lower(s));
  if (m == "title") return Value(py_title(s));
  if (m == "capitalize") return Value(py_capitalize(s));
  if (m == "replace") {
    Value count = arg(a, 2, "count", Value(-1));
    if (!count.is_int()) fail(loc, "replace count must be an integer");
    std::string r = py_replace(s, str_arg(a, 0, "old", loc), str_arg(a, 1, "new", loc), count.as_int());
    in.check_size(r.size(), loc);
    return Value(std::move(r));
  }
  if (m == "find" || m == "rfind") {
    const std::string& sub = str_arg(a, 0, "sub", loc);
    size_t p = m == "find" ? s.find(sub) : s.rfind(sub);
    if (p == std::string::npos) return Value(-1);
    return Value(static_cast<int64_t>(py_len(s.substr(0, p))));
  }
  if (m == "count") {
    const std::string& sub = str_arg(a, 0, "sub", loc);
    if (sub.empty()) return Value(static_cast<int64_t>(py_len(s) + 1));
    int64_t n = 0;
    for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
    return Value(n);
  }
  if (m == "join") {
    const Value* it = a.get(0, "iterable");
    if (!it) fail(loc, "join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& v : iterate(*it, loc)) {
      if (!v.is_string()) fail(loc, "sequence item: expected str instance, " + v.type_name() + " found");
      if (!first) out += s;
      first = false;
      out += v.as_str();
      in.check_size(out.size(), loc);
    }
    return Value(std::move(out));
  }
  if (m == "removeprefix" || m == "removesuffix") {
    const std::string& x = str_arg(a, 0, m == "removeprefix" ? "prefix" : "suffix", loc);
    if (x.size() <= s.size()) {
      if (m == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value(s.substr(x.size()));
      if (m == "removesuffix" && s.compare(s.size() - x.size(), x.size(), x) == 0) return Value(s.substr(0, s.size() - x.size()));
    }
    return Value(s);
  }
  if (m == "isdigit") return Value(all_cps(s, cp_digit));
  if (m == "isalpha") return Value(all_cps(s, cp_alpha));
  if (m == "isalnum") return Value(all_cps(s, cp_alnum));
  if (m == "isspace") return Value(all_cps(s, py_isspace));
  if (m == "islower" || m == "isupper") {
    bool cased = false;
    for (char32_t c : utf8::decode_escaped(s)) {
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) {
        if (m == "islower") return Value(false);
        cased = true;
      } else if (cat == UTF8PROC_CATEGORY_LL) {
        if (m == "isupper") return Value(false);
        cased = true;
      }
    }
    return Value(cased);
  }
  if (m == "format") {
    std::string r = py_format(s, a, loc);
    in.check_size(r.size(), loc);
    return Value(std::move(r));
  }
  fail(loc, "'str' object has no attribute '" + m + "'");
}

}  // namespace

bool has_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return kStrMethods.count(name) > 0;
  if (obj.is_dict()) return kDictMethods.count(name) > 0;
  if (obj.is_list()) return kListMethods.count(name) > 0;
  return false;
}

Value bound_method(Interp& in, const Value& obj, const std::string& name) {
  return Value::callable(name, [&in, obj, name](CallArgs& a, const Loc& loc) -> Value {
    if (obj.is_string()) return call_str_method(in, obj.as_str(), name, a, loc);
    if (obj.is_dict()) {
      const auto& d = obj.dict_obj();
      if (name == "get") {
        const Value* k = a.get(0, "key");
        if (!k) fail(loc, "get expected at least 1 argument");
        const Value* v = k->is_string() ? d.find(k->as_str()) : nullptr;
        if (v) return *v;
        const Value* dflt = a.get(1, "default");
        return dflt ? *dflt : Value(None{});
      }
      std::vector<Value> out;
      for (const auto& [k, v] : d.items) {
        if (name == "keys") out.emplace_back(k);
        else if (name == "values") out.push_back(v);
        else out.push_back(Value::list({Value(k), v}, /*tuple=*/true));
      }
      in.charge(out.size(), loc);
      return Value::list(std::move(out));
    }
    const auto& items = obj.items();
    const Value* x = a.get(0, "value");
    if (!x) fail(loc, name + "() takes exactly one argument");
    int64_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!equals(items[i], *x)) continue;
      if (name == "index") return Value(static_cast<int64_t>(i));
      ++n;
    }
    if (name == "index") fail(loc, x->repr() + " is not in list");
    return Value(n);
  });
}

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::u32string cps = utf8::decode_escaped(s);
  std::u32string set;
  bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) set = utf8::decode_escaped(chars.str());
  auto strip = [&](char32_t c) { return ws ? py_isspace(c) : set.find(c) != std::u32string::npos; };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip(cps[b])) ++b;
  if (right)
    while (e > b && strip(cps[e - 1])) --e;
  return utf8::encode_escaped(cps.substr(b, e - b));
}

static bool is_cased(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

static bool is_case_ignorable(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' || c == ':' ||
         c == 0xB7 || c == 0x2018 || c == 0x2019;
}

// Python lower-cases Σ to final ς after a cased letter that no cased letter
// follows (case-ignorable characters skipped both ways), as in "ΣΊΣΥΦΟΣ".lower().
static bool final_sigma(const std::u32string& cps, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(cps[j - 1])) --j;
  if (j == 0 || !is_cased(cps[j - 1])) return false;
  for (j = i + 1; j < cps.size() && is_case_ignorable(cps[j]); ++j) {
  }
  return j == cps.size() || !is_cased(cps[j]);
}

// Simple case mapping per code point, plus the common one-to-many mappings
// of Python's full (SpecialCasing) mapping: ß -> SS, ligatures, İ -> i̇, final ς.
static std::string map_case(const std::string& s, bool upper) {
  std::u32string out;
  const std::u32string cps = utf8::decode_escaped(s);
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    if (c >= 0xDC80 && c <= 0xDCFF) {
      out.push_back(c);
      continue;
    }
    const char32_t* special = nullptr;
    if (upper) {
      switch (c) {
        case 0xDF: special = U"SS"; break;
        case 0xFB00: special = U"FF"; break;
        case 0xFB01: special = U"FI"; break;
        case 0xFB02: special = U"FL"; break;
        case 0xFB03: special = U"FFI"; break;
        case 0xFB04: special = U"FFL"; break;
        case 0xFB05: case 0xFB06: special = U"ST"; break;
        case 0x149: special = U"\u02BCN"; break;
      }
    } else if (c == 0x130) {
      special = U"i\u0307";
    } else if (c == 0x3A3 && final_sigma(cps, i)) {
      special = U"\u03C2";
    }
    if (special) out += special;
    else out.push_back(static_cast<char32_t>(upper ? utf8proc_toupper(static_cast<utf8proc_int32_t>(c))
                                                   : utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
  }
  return utf8::encode_escaped(out);
}

std::string py_upper(const std::string& s) { return map_case(s, true); }
std::string py_lower(const std::string& s) { return map_case(s, false); }

std::string py_capitalize(const std::string& s) {
  std::u32string cps = utf8::decode_escaped(py_lower(s));
  if (!cps.empty()) cps[0] = static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(cps[0])));
  return utf8::encode_escaped(cps);
}

std::string py_title(const std::string& s) {
  const std::u32string in = utf8::decode_escaped(s);
  std::u32string cps = in;
  bool prev_cased = false;
  for (size_t i = 0; i < cps.size(); ++i) {
    char32_t& c = cps[i];
    const bool cased = is_cased(c);
    if (cased && prev_cased && c == 0x3A3 && final_sigma(in, i)) c = 0x3C2;
    else if (cased)
      c = static_cast<char32_t>(prev_cased ? utf8proc_tolower(static_cast<utf8proc_int32_t>(c))
                                           : utf8proc_totitle(static_cast<utf8proc_int32_t>(c)));
    prev_cased = cased;
  }
  return utf8::encode_escaped(cps);
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {
    // Runs of whitespace separate; leading/trailing whitespace is ignored.
    std::u32string cps = utf8::decode_escaped(s);
    size_t i = 0, n = cps.size();
    while (true) {
      while (i < n && py_isspace(cps[i])) ++i;
      if (i >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > i && py_isspace(cps[e - 1])) --e;
        out.push_back(utf8::encode_escaped(cps.substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < n && !py_isspace(cps[j])) ++j;
      out.push_back(utf8::encode_escaped(cps.substr(i, j - i)));
      i = j;
    }
    return out;
  }
  const std::string d = sep.str();
  if (d.empty()) fail(Loc{}, "empty separator");
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t p = s.find(d, start);
    if (p == std::string::npos) break;
    out.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::vector<std::string> py_rsplit(const std::string& s, const Value& sep, int64_t maxsplit) {
  if (maxsplit < 0) return py_split(s, sep, -1);
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {
    // Mirror of the whitespace split, walking from the right.
    std::u32string cps = utf8::decode_escaped(s);
    size_t e = cps.size();
    while (true) {
      while (e > 0 && py_isspace(cps[e - 1])) --e;
      if (e == 0) break;
      if (static_cast<int64_t>(out.size()) == maxsplit) {
        size_t b = 0;
        while (b < e && py_isspace(cps[b])) ++b;
        out.push_back(utf8::encode_escaped(cps.substr(b, e - b)));
        break;
      }
      size_t b = e;
      while (b > 0 && !py_isspace(cps[b - 1])) --b;
      out.push_back(utf8::encode_escaped(cps.substr(b, e - b)));
      e = b;
    }
  } else {
    const std::string d = sep.str();
    size_t end = s.size();
    while (static_cast<int64_t>(out.size()) < maxsplit && end >= d.size()) {
      size_t p = s.rfind(d, end - d.size());
      if (p == std::string::npos) break;
      out.push_back(s.substr(p + d.size(), end - p - d.size()));
      end = p;
    }
    out.push_back(s.substr(0, end));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s) {
  std::u32string cps = utf8::decode_escaped(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < cps.size()) {
    char32_t c = cps[i];
    bool nl = c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e ||
              c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!nl) {
      ++i;
      continue;
    }
    out.push_back(utf8::encode_escaped(cps.substr(start, i - start)));
    i += (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ? 2 : 1;
    start = i;
  }
  if (start < cps.size()) out.push_back(utf8::encode_escaped(cps.substr(start)));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  if (old.empty()) {
    // Python inserts rep between every character (and at both ends).
    std::u32string cps = utf8::decode_escaped(s);
    std::string out;
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (i < cps.size()) utf8::append_escaped(out, cps[i]);
    }
    return out;
  }
  std::string out;
  size_t start = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t p = s.find(old, start);
    if (p == std::string::npos) break;
    out.append(s, start, p - start);
    out += rep;
    start = p + old.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return out;
}

size_t py_len(const std::string& s) { return utf8::decode_escaped(s).size(); }

}  // namespace lmlab::detail::jinja
