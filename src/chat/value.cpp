// Python object semantics for the Jinja engine: truthiness, str/repr,
// equality and ordering, float formatting.
#include "chat/value.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "core/utf8.h"

namespace lmlab::detail::jinja {

void fail(const Loc& loc, const std::string& msg) {
  throw std::invalid_argument("[chat_template] line " + std::to_string(loc.line) + ", column " +
                              std::to_string(loc.col) + ": " + msg);
}

const Value* DictObj::find(const std::string& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void DictObj::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

const Value* CallArgs::kwarg(const std::string& name) const {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

const Value* CallArgs::get(size_t i, const std::string& name) const {
  if (i < pos.size()) return &pos[i];
  return kwarg(name);
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto l = std::make_shared<ListObj>();
  l->items = std::move(items);
  l->is_tuple = tuple;
  return Value(std::move(l));
}

Value Value::dict(DictObj d) { return Value(std::make_shared<DictObj>(std::move(d))); }

Value Value::callable(std::string name, NativeFn fn) {
  return Value(std::make_shared<CallableObj>(CallableObj{std::move(name), std::move(fn)}));
}

bool Value::truthy() const {
  switch (type()) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return as_bool();
    case Type::Int: return as_int() != 0;
    case Type::Float: return as_float() != 0.0;
    case Type::String: return !as_str().empty();
    case Type::List: return !items().empty();
    case Type::Dict: return !dict_obj().items.empty();
    default: return true;
  }
}

std::string Value::type_name() const {
  switch (type()) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "str";
    case Type::List: return is_tuple() ? "tuple" : "list";
    case Type::Dict: return "dict";
    case Type::Namespace: return "Namespace";
    case Type::Callable: return "function";
  }
  return "object";
}

// The containers being printed, innermost last: a namespace can hold itself
// (`{% set ns.x = ns %}`), and Python prints such a cycle as {...} or [...].
static thread_local std::vector<const void*> printing;

struct Printing {
  explicit Printing(const void* p) { printing.push_back(p); }
  ~Printing() { printing.pop_back(); }
  static bool active(const void* p) { return std::find(printing.begin(), printing.end(), p) != printing.end(); }
};

static std::string dict_repr(const DictObj& d) {
  if (Printing::active(&d)) return "{...}";
  Printing guard(&d);
  std::string s = "{";
  bool first = true;
  for (const auto& [k, v] : d.items) {
    if (!first) s += ", ";
    first = false;
    s += py_str_repr(k) + ": " + v.repr();
  }
  return s + "}";
}

static std::string list_repr(const ListObj& l) {
  if (Printing::active(&l)) return l.is_tuple ? "(...)" : "[...]";
  Printing guard(&l);
  std::string s = l.is_tuple ? "(" : "[";
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (i) s += ", ";
    s += l.items[i].repr();
  }
  if (l.is_tuple && l.items.size() == 1) s += ",";
  return s + (l.is_tuple ? ")" : "]");
}

std::string Value::str() const {
  switch (type()) {
    case Type::Undefined: return "";
    case Type::None: return "None";
    case Type::Bool: return as_bool() ? "True" : "False";
    case Type::Int: return std::to_string(as_int());
    case Type::Float: return py_float_repr(as_float());
    case Type::String: return as_str();
    case Type::List: return list_repr(list_obj());
    case Type::Dict: return dict_repr(dict_obj());
    case Type::Namespace: return "<Namespace " + dict_repr(ns_obj().attrs) + ">";
    case Type::Callable: return "<function " + callable_obj().name + ">";
  }
  return "";
}

std::string Value::repr() const { return is_string() ? py_str_repr(as_str()) : str(); }

static int type_rank(const Value& v) { return v.is_number() ? 1 : static_cast<int>(v.type()) + 10; }

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (type_rank(a) != type_rank(b)) return false;
  switch (a.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.as_str() == b.as_str();
    case Value::Type::List: {
      // Python: a list never equals a tuple.
      if (a.is_tuple() != b.is_tuple()) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Type::Dict: {
      const auto& x = a.dict_obj().items;
      const auto& y = b.dict_obj();
      if (x.size() != y.items.size()) return false;
      for (const auto& [k, v] : x) {
        const Value* o = y.find(k);
        if (!o || !equals(v, *o)) return false;
      }
      return true;
    }
    case Value::Type::Namespace: return &a.ns_obj() == &b.ns_obj();
    case Value::Type::Callable: return &a.callable_obj() == &b.callable_obj();
    default: return false;
  }
}

int compare(const Value& a, const Value& b, const Loc& loc) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, as Python compares str.
    int c = a.as_str().compare(b.as_str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals(x[i], y[i])) return compare(x[i], y[i], loc);
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail(loc, "'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits in scientific form, then laid out the way
  // Python's repr does: fixed notation for exponents in [-4, 16).
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  int exp = std::stoi(sci.substr(e + 1));
  if (digits.size() > 1) digits.erase(1, 1);  // drop the '.'
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min<size_t>(digits.size(), exp + 1));
      while (static_cast<int>(ip.size()) < exp + 1) ip += '0';
      std::string fp = static_cast<int>(digits.size()) > exp + 1 ? digits.substr(exp + 1) : "0";
      out = ip + "." + fp;
    } else {
      out = "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return sign + out;
}

// Python's str.isprintable for one code point: not in categories
// Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs (except the ASCII space).
static bool py_isprintable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x20 || c == 0x7f) return false;
  if (c < 0x7f) return true;
  if (c >= 0xDC80 && c <= 0xDCFF) return false;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

std::string py_str_repr(const std::string& s) {
  std::u32string cps = utf8::decode_escaped(s);
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (char32_t c : cps) {
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (py_isprintable(c)) {
      utf8::append_escaped(out, c);
    } else {
      char b[16];
      if (c < 0x100) std::snprintf(b, sizeof(b), "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(b, sizeof(b), "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(b, sizeof(b), "\\U%08x", static_cast<unsigned>(c));
      out += b;
    }
  }
  out += q;
  return out;
}

bool py_isspace(char32_t c) {
  switch (c) {
    case ' ': case '\t': case '\n': case '\v': case '\f': case '\r':
    case 0x1c: case 0x1d: case 0x1e: case 0x1f: case 0x85: case 0xa0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000: return true;
    default: return c >= 0x2000 && c <= 0x200a;
  }
}

}  // namespace lmlab::detail::jinja
