// Attribute and item access, slicing, iteration, operators and globals:
// Python's behaviour as seen through jinja2's sandboxed environment.
#include <chrono>
#include <cmath>
#include <ctime>

#include "chat/interp.h"
#include "chat/methods.h"
#include "core/utf8.h"

namespace lmlab::detail::jinja {

void undefined_error(const Value& v, const Loc& loc) {
  const std::string& hint = v.is_undefined() ? v.undefined_hint() : std::string();
  fail(loc, hint.empty() ? "value is undefined" : hint);
}

// jinja2's object_type_repr: "None" for None, "<type> object" otherwise.
static std::string obj_desc(const Value& v) {
  std::string desc = v.is_none() ? "None" : v.type_name() + " object";
  return "'" + desc + "'";
}

Value get_attr(Interp& in, const Value& obj, const std::string& name, const Loc& loc) {
  if (obj.is_undefined()) undefined_error(obj, loc);
  if (obj.is_namespace()) {
    const Value* v = obj.ns_obj().attrs.find(name);
    return v ? *v : Value::undefined("'Namespace' object has no attribute '" + name + "'");
  }
  // Python attribute lookup first finds methods (so `d.items` is the
  // method even when the dict has an "items" key), then jinja2 falls back
  // to the key.
  if (has_method(obj, name)) return bound_method(in, obj, name);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict_obj().find(name)) return *v;
  }
  return Value::undefined(obj_desc(obj) + " has no attribute '" + name + "'");
}

static bool as_index(const Value& key, int64_t size, int64_t& out) {
  if (!key.is_int() && !key.is_bool()) return false;
  int64_t i = key.as_int();
  if (i < 0) i += size;
  if (i < 0 || i >= size) return false;
  out = i;
  return true;
}

Value get_item(Interp& in, const Value& obj, const Value& key, const Loc& loc) {
  if (obj.is_undefined()) undefined_error(obj, loc);
  int64_t i;
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = obj.dict_obj().find(key.as_str())) return *v;
    }
  } else if (obj.is_list()) {
    if (as_index(key, static_cast<int64_t>(obj.items().size()), i)) return obj.items()[i];
  } else if (obj.is_string()) {
    if (key.is_int() || key.is_bool()) {
      std::u32string cps = utf8::decode_escaped(obj.as_str());
      if (as_index(key, static_cast<int64_t>(cps.size()), i)) return Value(utf8::encode_escaped(cps.substr(i, 1)));
    }
  }
  if (key.is_string()) return get_attr(in, obj, key.as_str(), loc);
  return Value::undefined(obj_desc(obj) + " has no element " + key.repr());
}

// Python's PySlice_AdjustIndices, then a walk.
static std::vector<size_t> slice_indices(int64_t len, const Value& a, const Value& b, const Value& c, const Loc& loc) {
  for (const Value* v : {&a, &b, &c})
    if (!v->is_none() && !v->is_int() && !v->is_bool())
      fail(loc, "slice indices must be integers or None or have an __index__ method");
  int64_t step = c.is_none() ? 1 : c.as_int();
  if (step == 0) fail(loc, "slice step cannot be zero");
  auto adjust = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t x = v.as_int();
    if (x < 0) {
      x += len;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= len) {
      x = step < 0 ? len - 1 : len;
    }
    return x;
  };
  int64_t start = adjust(a, step < 0 ? len - 1 : 0);
  int64_t stop = adjust(b, step < 0 ? -1 : len);
  std::vector<size_t> idx;
  if (step > 0)
    for (int64_t k = start; k < stop; k += step) idx.push_back(static_cast<size_t>(k));
  else
    for (int64_t k = start; k > stop; k += step) idx.push_back(static_cast<size_t>(k));
  return idx;
}

Value slice(Interp& in, const Value& obj, const Value& a, const Value& b, const Value& c, const Loc& loc) {
  if (obj.is_undefined()) undefined_error(obj, loc);
  if (obj.is_string()) {
    std::u32string cps = utf8::decode_escaped(obj.as_str());
    std::u32string out;
    for (size_t k : slice_indices(static_cast<int64_t>(cps.size()), a, b, c, loc)) out.push_back(cps[k]);
    return Value(utf8::encode_escaped(out));
  }
  if (obj.is_list()) {
    const auto& items = obj.items();
    std::vector<Value> out;
    for (size_t k : slice_indices(static_cast<int64_t>(items.size()), a, b, c, loc)) out.push_back(items[k]);
    in.charge(out.size(), loc);
    return Value::list(std::move(out), obj.is_tuple());
  }
  fail(loc, "'" + obj.type_name() + "' object is not subscriptable");
}

std::vector<Value> iterate(const Value& v, const Loc& loc) {
  switch (v.type()) {
    case Value::Type::Undefined: return {};
    case Value::Type::List: return v.items();
    case Value::Type::Dict: {
      std::vector<Value> keys;
      for (const auto& kv : v.dict_obj().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Type::String: {
      std::vector<Value> chars;
      for (char32_t c : utf8::decode_escaped(v.as_str())) {
        std::string s;
        utf8::append_escaped(s, c);
        chars.emplace_back(std::move(s));
      }
      return chars;
    }
    default: fail(loc, "'" + v.type_name() + "' object is not iterable");
  }
}

bool contains(const Value& container, const Value& item, const Loc& loc) {
  switch (container.type()) {
    case Value::Type::Undefined: return false;
    case Value::Type::String:
      if (!item.is_string())
        fail(loc, "'in <string>' requires string as left operand, not " + item.type_name());
      return container.as_str().find(item.as_str()) != std::string::npos;
    case Value::Type::List:
      for (const Value& x : container.items())
        if (equals(x, item)) return true;
      return false;
    case Value::Type::Dict: return item.is_string() && container.dict_obj().find(item.as_str()) != nullptr;
    default: fail(loc, "argument of type '" + container.type_name() + "' is not iterable");
  }
}

static void check_overflow(bool overflow, const Loc& loc) {
  if (overflow) fail(loc, "integer overflow");
}

static double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((b < 0) != (m < 0))) m += b;
  return m;
}

Value binary_op(Interp& in, const std::string& op, const Value& a, const Value& b, const Loc& loc) {
  if (op == "~") {
    std::string s = a.str() + b.str();
    in.check_size(s.size(), loc);
    in.charge(s.size() / 64, loc);
    return Value(std::move(s));
  }
  if (a.is_undefined()) undefined_error(a, loc);
  if (b.is_undefined()) undefined_error(b, loc);
  auto unsupported = [&]() -> Value {
    if (op == "+" && a.is_string())
      fail(loc, "can only concatenate str (not \"" + b.type_name() + "\") to str");
    if (op == "+" && a.is_list() && !a.is_tuple())
      fail(loc, "can only concatenate list (not \"" + b.type_name() + "\") to list");
    fail(loc, "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
  };
  if (a.is_number() && b.is_number()) {
    bool fl = a.is_float() || b.is_float();
    if (op == "/" || (fl && op != "**")) {
      double x = a.as_float(), y = b.as_float();
      if ((op == "/" || op == "//" || op == "%") && y == 0) fail(loc, "division by zero");
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "/") return Value(x / y);
      if (op == "//") return Value(std::floor(x / y));
      if (op == "%") return Value(py_fmod(x, y));
      return unsupported();
    }
    if (op == "**") {
      if (fl || b.as_int() < 0) {
        double x = a.as_float(), y = b.as_float();
        if (x == 0 && y < 0) fail(loc, "0.0 cannot be raised to a negative power");
        return Value(std::pow(x, y));
      }
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) check_overflow(__builtin_mul_overflow(r, base, &r), loc);
        e >>= 1;
        if (e) check_overflow(__builtin_mul_overflow(base, base, &base), loc);
      }
      return Value(r);
    }
    int64_t x = a.as_int(), y = b.as_int(), r = 0;
    if (op == "+" || op == "-" || op == "*") {
      check_overflow(op == "+" ? __builtin_add_overflow(x, y, &r)
                     : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                 : __builtin_mul_overflow(x, y, &r), loc);
      return Value(r);
    }
    if (y == 0) fail(loc, "integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) fail(loc, "integer overflow");
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    return Value(op == "//" ? q : m);
  }
  if (op == "+" && a.is_string() && b.is_string()) {
    in.check_size(a.as_str().size() + b.as_str().size(), loc);
    in.charge((a.as_str().size() + b.as_str().size()) / 64, loc);
    return Value(a.as_str() + b.as_str());
  }
  if (op == "+" && a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    std::vector<Value> out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    in.check_size(out.size(), loc);
    in.charge(out.size(), loc);
    return Value::list(std::move(out), a.is_tuple());
  }
  if (op == "*" && (((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) ||
                    ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())))) {
    const Value& seq = a.is_int() || a.is_bool() ? b : a;
    int64_t n = std::max<int64_t>(0, (a.is_int() || a.is_bool() ? a : b).as_int());
    size_t unit = seq.is_string() ? seq.as_str().size() : seq.items().size();
    if (unit && static_cast<uint64_t>(n) > (uint64_t{1} << 40) / unit) in.check_size(SIZE_MAX, loc);
    in.check_size(unit * n, loc);
    in.charge(unit * n / (seq.is_string() ? 64 : 1), loc);
    if (seq.is_string()) {
      std::string s;
      s.reserve(unit * n);
      for (int64_t k = 0; k < n; ++k) s += seq.as_str();
      return Value(std::move(s));
    }
    std::vector<Value> out;
    for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.items().begin(), seq.items().end());
    return Value::list(std::move(out), seq.is_tuple());
  }
  if (op == "%" && a.is_string()) fail(loc, "printf-style string formatting is not supported");
  return unsupported();
}

std::string underscore_error(const std::string& name) {
  return "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" + name + "'.";
}

void add_globals(Interp& in, DictObj& g) {
  g.set("range", Value::callable("range", [&in](CallArgs& a, const Loc& loc) -> Value {
    if (a.pos.empty() || a.pos.size() > 3 || !a.kw.empty()) fail(loc, "range expected 1 to 3 integer arguments");
    for (const Value& v : a.pos)
      if (!v.is_int() && !v.is_bool()) fail(loc, "'" + v.type_name() + "' object cannot be interpreted as an integer");
    int64_t start = a.pos.size() > 1 ? a.pos[0].as_int() : 0;
    int64_t stop = a.pos.size() > 1 ? a.pos[1].as_int() : a.pos[0].as_int();
    int64_t step = a.pos.size() > 2 ? a.pos[2].as_int() : 1;
    if (step == 0) fail(loc, "range() arg 3 must not be zero");
    // jinja2's sandbox refuses ranges over MAX_RANGE items.
    double count = step > 0 ? std::ceil((static_cast<double>(stop) - start) / step)
                            : std::ceil((static_cast<double>(start) - stop) / -static_cast<double>(step));
    if (count > 100000) fail(loc, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    std::vector<Value> out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) out.emplace_back(k);
    in.charge(out.size(), loc);
    return Value::list(std::move(out));
  }));
  g.set("namespace", Value::callable("namespace", [&in](CallArgs& a, const Loc& loc) -> Value {
    auto ns = std::make_shared<NamespaceObj>();
    auto add = [&](const std::string& k, const Value& v) {
      if (!k.empty() && k[0] == '_') fail(loc, underscore_error(k));
      ns->attrs.set(k, v);
    };
    for (const Value& p : a.pos) {
      if (!p.is_dict()) fail(loc, "namespace() positional argument must be a mapping");
      for (const auto& [k, v] : p.dict_obj().items) add(k, v);
    }
    for (const auto& [k, v] : a.kw) add(k, v);
    in.track(ns);
    return Value(ns);
  }));
  g.set("dict", Value::callable("dict", [](CallArgs& a, const Loc& loc) -> Value {
    DictObj d;
    for (const Value& p : a.pos) {
      if (!p.is_dict()) fail(loc, "dict() positional argument must be a mapping");
      for (const auto& [k, v] : p.dict_obj().items) d.set(k, v);
    }
    for (const auto& [k, v] : a.kw) d.set(k, v);
    return Value::dict(std::move(d));
  }));
  g.set("raise_exception", Value::callable("raise_exception", [](CallArgs& a, const Loc& loc) -> Value {
    fail(loc, a.pos.empty() ? std::string("raise_exception called") : a.pos[0].str());
  }));
  g.set("strftime_now", Value::callable("strftime_now", [](CallArgs& a, const Loc& loc) -> Value {
    if (a.pos.empty() || !a.pos[0].is_string()) fail(loc, "strftime_now expects a format string");
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[512];
    size_t n = std::strftime(buf, sizeof(buf), a.pos[0].as_str().c_str(), &tm);
    return Value(std::string(buf, n));
  }));
}

}  // namespace lmlab::detail::jinja
