// jinja2's builtin filters and tests (the subset chat templates use), with
// transformers' tojson.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "chat/methods.h"
#include "chat/parser.h"
#include "core/utf8.h"

namespace lmlab::detail::jinja {
namespace {

const std::set<std::string> kFilters = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first",
    "float", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
    "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
    "title", "tojson", "trim", "unique", "upper", "wordcount", "forceescape"};
const std::set<std::string> kTests = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "even", "false", "float", "ge", ">=",
    "gt", ">", "greaterthan", "in", "integer", "iterable", "le", "<=", "lt", "<", "lessthan", "lower", "mapping",
    "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "filter", "test",
    "escaped"};

const Value kNone{None{}};

Value arg(const CallArgs& a, size_t i, const std::string& name, const Value& dflt = kNone) {
  const Value* v = a.get(i, name);
  return v ? *v : dflt;
}

size_t length_of(const Value& v, const Loc& loc) {
  switch (v.type()) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return py_len(v.as_str());
    case Value::Type::List: return v.items().size();
    case Value::Type::Dict: return v.dict_obj().items.size();
    default: fail(loc, "object of type '" + v.type_name() + "' has no len()");
  }
}

// jinja2's make_attrgetter: "a.b.0" walks items by dotted parts.
Value attr_path(Interp& in, const Value& obj, const Value& attribute, const Loc& loc) {
  if (!attribute.is_string()) return get_item(in, obj, attribute, loc);
  Value cur = obj;
  for (const std::string& part : py_split(attribute.as_str(), Value("."), -1)) {
    bool digits = !part.empty() && part.size() < 18 && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = get_item(in, cur, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part), loc);
  }
  return cur;
}

// Sort key: lowercased strings unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.is_string() ? Value(py_lower(v.as_str())) : v;
}

std::vector<Value> sorted(Interp& in, std::vector<Value> items, bool reverse, bool cs, const Value& attribute,
                          const Loc& loc) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& v : items) {
    Value k = attribute.is_none() ? v : attr_path(in, v, attribute, loc);
    keyed.emplace_back(sort_key(k, cs), std::move(v));
  }
  in.charge(keyed.size() * 8, loc);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, loc) < 0 : compare(a.first, b.first, loc) < 0;
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

// select/reject/selectattr/rejectattr: keep items whose test (or
// truthiness) matches.
Value select(Interp& in, const Value& v, CallArgs& a, bool by_attr, bool keep, const Loc& loc) {
  size_t i = 0;
  Value attribute;
  if (by_attr) {
    if (a.pos.empty()) fail(loc, "selectattr/rejectattr need an attribute name");
    attribute = a.pos[0];
    i = 1;
  }
  std::string test = i < a.pos.size() ? a.pos[i].str() : "";
  if (!test.empty() && !is_known_test(test)) fail(loc, "No test named '" + test + "'.");
  CallArgs targs;
  targs.pos.assign(a.pos.begin() + std::min(a.pos.size(), i + 1), a.pos.end());
  std::vector<Value> out;
  for (const Value& item : iterate(v, loc)) {
    Value x = by_attr ? attr_path(in, item, attribute, loc) : item;
    bool r = test.empty() ? x.truthy() : apply_test(in, test, x, targs, loc);
    if (r == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

bool parse_py_int(const std::string& text, int64_t& out) {
  std::string s = py_strip(text, kNone, true, true);
  std::string digits;
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && isdigit(s[i + 1])) continue;
    if (!isdigit(static_cast<unsigned char>(s[i]))) return false;
    digits += s[i];
  }
  if (digits.empty() || digits.size() > 18) return false;
  out = std::stoll(digits) * (neg ? -1 : 1);
  return true;
}

bool parse_py_float(const std::string& text, double& out) {
  std::string s = py_strip(text, kNone, true, true);
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && s.find_first_of("xXpP") == std::string::npos;
}

// Python round(x, n): correctly rounded through printf, half to even.
Value py_round(const Value& v, int64_t precision, const std::string& method, const Loc& loc) {
  if (!v.is_number()) fail(loc, "type " + v.type_name() + " doesn't define __round__ method");
  double x = v.as_float();
  double p = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value(std::ceil(x * p) / p);
  if (method == "floor") return Value(std::floor(x * p) / p);
  if (method != "common") fail(loc, "method must be 'common', 'ceil' or 'floor'");
  if (!v.is_float()) return Value(v.as_int());  // round(int, n) keeps the int
  if (!std::isfinite(x)) return v;
  if (precision < 0 || precision > 300) return Value(std::nearbyint(x * p) / p);
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
  return Value(std::strtod(buf, nullptr));
}

}  // namespace

bool is_known_filter(const std::string& name) { return kFilters.count(name) > 0; }
bool is_known_test(const std::string& name) { return kTests.count(name) > 0; }

Value apply_filter(Interp& in, const std::string& f, const Value& v, CallArgs& a, const Loc& loc) {
  if (f == "tojson") {
    Value ea = arg(a, 0, "ensure_ascii", Value(false));
    return Value(to_json(v, arg(a, 1, "indent"), arg(a, 2, "separators"), arg(a, 3, "sort_keys").truthy(),
                         ea.truthy(), loc));
  }
  if (f == "safe" || f == "string") return v.is_string() ? v : Value(v.str());
  if (f == "e" || f == "escape" || f == "forceescape") return Value(html_escape(v.str()));
  if (f == "trim") return Value(py_strip(v.str(), arg(a, 0, "chars"), true, true));
  if (f == "upper") return Value(py_upper(v.str()));
  if (f == "lower") return Value(py_lower(v.str()));
  if (f == "capitalize") return Value(py_capitalize(v.str()));
  if (f == "title") {
    // jinja2 splits at runs of -, whitespace and opening brackets and writes
    // each word as word[0].upper() + word[1:].lower() (the rest lowered as one
    // string: Python's final-sigma rule looks at its neighbours there).
    const std::u32string cps = utf8::decode_escaped(v.str());
    auto is_sep = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c); };
    std::string out;
    for (size_t i = 0; i < cps.size();) {
      size_t j = i + 1;
      while (j < cps.size() && is_sep(cps[j]) == is_sep(cps[i])) ++j;
      const std::string first = utf8::encode_escaped(cps.substr(i, 1)), rest = utf8::encode_escaped(cps.substr(i + 1, j - i - 1));
      out += is_sep(cps[i]) ? first + rest : py_upper(first) + py_lower(rest);
      i = j;
    }
    return Value(out);
  }
  if (f == "length" || f == "count") return Value(static_cast<int64_t>(length_of(v, loc)));
  if (f == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (char32_t c : utf8::decode_escaped(v.str())) {
      std::string one;
      utf8::append_escaped(one, c);
      bool w = c == '_' || (c < 0x80 ? isalnum(static_cast<int>(c)) != 0 : !py_isspace(c));
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value(n);
  }
  if (f == "default" || f == "d") {
    bool boolean = arg(a, 1, "boolean", Value(false)).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value(""));
    return v;
  }
  if (f == "first" || f == "last") {
    std::vector<Value> items = iterate(v, loc);
    if (items.empty()) return Value::undefined("No " + f + " item, sequence was empty.");
    return f == "first" ? items.front() : items.back();
  }
  if (f == "list") return Value::list(iterate(v, loc));
  if (f == "reverse") {
    if (v.is_string()) {
      std::u32string cps = utf8::decode_escaped(v.as_str());
      std::reverse(cps.begin(), cps.end());
      return Value(utf8::encode_escaped(cps));
    }
    std::vector<Value> items = iterate(v, loc);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (f == "join") {
    Value sep = arg(a, 0, "d", Value(""));
    Value attribute = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v, loc)) {
      if (!first) out += sep.str();
      first = false;
      out += (attribute.is_none() ? item : attr_path(in, item, attribute, loc)).str();
      in.check_size(out.size(), loc);
    }
    return Value(std::move(out));
  }
  if (f == "replace") {
    Value count = arg(a, 2, "count");
    std::string r = py_replace(v.str(), arg(a, 0, "old").str(), arg(a, 1, "new").str(),
                               count.is_none() ? -1 : count.as_int());
    in.check_size(r.size(), loc);
    return Value(std::move(r));
  }
  if (f == "int") {
    Value dflt = arg(a, 0, "default", Value(0));
    int64_t i;
    double d;
    if (v.is_int() || v.is_bool()) return Value(v.as_int());
    if (v.is_float() && std::isfinite(v.as_float()) && std::fabs(v.as_float()) < 9.2e18)
      return Value(static_cast<int64_t>(v.as_float()));
    if (v.is_string() && parse_py_int(v.as_str(), i)) return Value(i);
    if (v.is_string() && parse_py_float(v.as_str(), d) && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value(static_cast<int64_t>(d));
    return dflt;
  }
  if (f == "float") {
    double d;
    if (v.is_number()) return Value(v.as_float());
    if (v.is_string() && parse_py_float(v.as_str(), d)) return Value(d);
    return arg(a, 0, "default", Value(0.0));
  }
  if (f == "abs") {
    if (!v.is_number()) fail(loc, "bad operand type for abs(): '" + v.type_name() + "'");
    if (v.is_float()) return Value(std::fabs(v.as_float()));
    if (v.as_int() == INT64_MIN) fail(loc, "integer overflow");
    return Value(static_cast<int64_t>(std::llabs(v.as_int())));
  }
  if (f == "round") {
    Value prec = arg(a, 0, "precision", Value(0));
    if (!prec.is_int()) fail(loc, "round precision must be an integer");
    return py_round(v, prec.as_int(), arg(a, 1, "method", Value("common")).str(), loc);
  }
  if (f == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) fail(loc, "Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, x] : v.dict_obj().items) out.push_back(Value::list({Value(k), x}, true));
    return Value::list(std::move(out));
  }
  if (f == "dictsort") {
    if (!v.is_dict()) fail(loc, "You can only sort by either \"key\" or \"value\" of a mapping.");
    bool cs = arg(a, 0, "case_sensitive", Value(false)).truthy();
    std::string by = arg(a, 1, "by", Value("key")).str();
    bool reverse = arg(a, 2, "reverse", Value(false)).truthy();
    if (by != "key" && by != "value") fail(loc, "You can only sort by either \"key\" or \"value\"");
    std::vector<Value> pairs;
    for (const auto& [k, x] : v.dict_obj().items) pairs.push_back(Value::list({Value(k), x}, true));
    return Value::list(sorted(in, std::move(pairs), reverse, cs, Value(by == "key" ? 0 : 1), loc));
  }
  if (f == "sort") {
    return Value::list(sorted(in, iterate(v, loc), arg(a, 0, "reverse", Value(false)).truthy(),
                              arg(a, 1, "case_sensitive", Value(false)).truthy(), arg(a, 2, "attribute"), loc));
  }
  if (f == "unique" || f == "min" || f == "max") {
    bool cs = arg(a, 0, "case_sensitive", Value(false)).truthy();
    Value attribute = arg(a, 1, "attribute");
    std::vector<Value> items = iterate(v, loc);
    in.charge(items.size() * (f == "unique" ? items.size() : 1), loc);
    auto key = [&](const Value& x) { return sort_key(attribute.is_none() ? x : attr_path(in, x, attribute, loc), cs); };
    if (f == "unique") {
      std::vector<Value> out, seen;
      for (const Value& x : items) {
        Value k = key(x);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) continue;
        seen.push_back(k);
        out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    size_t best = 0;
    for (size_t i = 1; i < items.size(); ++i) {
      int c = compare(key(items[i]), key(items[best]), loc);
      if (f == "min" ? c < 0 : c > 0) best = i;
    }
    return items[best];
  }
  if (f == "sum") {
    Value attribute = arg(a, 0, "attribute");
    Value total = arg(a, 1, "start", Value(0));
    for (const Value& x : iterate(v, loc))
      total = binary_op(in, "+", total, attribute.is_none() ? x : attr_path(in, x, attribute, loc), loc);
    return total;
  }
  if (f == "map") {
    std::vector<Value> out;
    if (const Value* attribute = a.kwarg("attribute")) {
      const Value* dflt = a.kwarg("default");
      for (const Value& x : iterate(v, loc)) {
        Value r = attr_path(in, x, *attribute, loc);
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return Value::list(std::move(out));
    }
    if (a.pos.empty()) fail(loc, "map requires a filter argument");
    std::string name = a.pos[0].str();
    if (!is_known_filter(name)) fail(loc, "No filter named '" + name + "'.");
    CallArgs fargs;
    fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
    fargs.kw = a.kw;
    for (const Value& x : iterate(v, loc)) {
      CallArgs copy = fargs;
      out.push_back(apply_filter(in, name, x, copy, loc));
    }
    return Value::list(std::move(out));
  }
  if (f == "select") return select(in, v, a, false, true, loc);
  if (f == "reject") return select(in, v, a, false, false, loc);
  if (f == "selectattr") return select(in, v, a, true, true, loc);
  if (f == "rejectattr") return select(in, v, a, true, false, loc);
  if (f == "attr") return get_attr(in, v, arg(a, 0, "name").str(), loc);
  if (f == "indent") {
    Value width = arg(a, 0, "width", Value(4));
    std::string ind = width.is_string() ? width.as_str()
                                        : std::string(std::clamp<int64_t>(width.is_number() ? width.as_int() : 4, 0, 1000), ' ');
    bool first = arg(a, 1, "first", Value(false)).truthy();
    bool blank = arg(a, 2, "blank", Value(false)).truthy();
    std::vector<std::string> lines = py_splitlines(v.str() + "\n");
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += "\n" + ((blank || !lines[i].empty()) ? ind : "");
      out += lines[i];
      in.check_size(out.size(), loc);
    }
    return Value(first ? ind + out : out);
  }
  if (f == "center") {
    Value width = arg(a, 0, "width", Value(80));
    std::string s = v.str();
    int64_t len = static_cast<int64_t>(py_len(s));
    int64_t w = std::min<int64_t>(width.is_number() ? width.as_int() : 80, 1 << 20);
    if (w <= len) return Value(s);
    int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
    return Value(std::string(left, ' ') + s + std::string(pad - left, ' '));
  }
  if (f == "batch") {
    Value count = arg(a, 0, "linecount");
    if (!count.is_int() || count.as_int() <= 0) fail(loc, "batch linecount must be a positive integer");
    const Value* fill = a.get(1, "fill_with");
    std::vector<Value> out, cur;
    for (const Value& x : iterate(v, loc)) {
      cur.push_back(x);
      if (static_cast<int64_t>(cur.size()) == count.as_int()) out.push_back(Value::list(std::exchange(cur, {})));
    }
    if (!cur.empty()) {
      if (fill && !fill->is_none())
        while (static_cast<int64_t>(cur.size()) < count.as_int()) cur.push_back(*fill);
      out.push_back(Value::list(std::move(cur)));
    }
    return Value::list(std::move(out));
  }
  if (f == "format") fail(loc, "the format filter (printf-style) is not supported");
  fail(loc, "No filter named '" + f + "'.");
}

bool apply_test(Interp& in, const std::string& t, const Value& v, CallArgs& a, const Loc& loc) {
  auto other = [&]() -> const Value& {
    if (a.pos.empty()) fail(loc, "test '" + t + "' needs an argument");
    return a.pos[0];
  };
  if (t == "defined") return !v.is_undefined();
  if (t == "undefined") return v.is_undefined();
  if (t == "none") return v.is_none();
  if (t == "boolean") return v.is_bool();
  if (t == "true") return v.is_bool() && v.as_bool();
  if (t == "false") return v.is_bool() && !v.as_bool();
  if (t == "integer") return v.is_int();
  if (t == "float") return v.is_float();
  if (t == "number") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "mapping") return v.is_dict();
  if (t == "callable") return v.is_callable();
  if (t == "iterable" || t == "sequence") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (t == "escaped") return false;
  if (t == "lower" || t == "upper") {
    std::string s = v.str();
    return t == "lower" ? py_lower(s) == s && py_upper(s) != s : py_upper(s) == s && py_lower(s) != s;
  }
  if (t == "odd" || t == "even") {
    if (!v.is_int() && !v.is_bool()) fail(loc, "test '" + t + "' needs an integer");
    int64_t r = v.as_int() % 2;
    return t == "odd" ? r != 0 : r == 0;
  }
  if (t == "divisibleby") {
    const Value& n = other();
    if (!v.is_number() || !n.is_number()) fail(loc, "divisibleby needs numbers");
    Value r = binary_op(in, "%", v, n, loc);
    return r.as_float() == 0;
  }
  if (t == "eq" || t == "equalto" || t == "==") return equals(v, other());
  if (t == "ne" || t == "!=") return !equals(v, other());
  if (t == "sameas") {
    const Value& o = other();
    if (v.is_none() || v.is_bool()) return equals(v, o) && v.type() == o.type();
    return false;
  }
  if (t == "in") return contains(other(), v, loc);
  if (t == "filter") return is_known_filter(v.str());
  if (t == "test") return is_known_test(v.str());
  const Value& o = other();
  if (v.is_undefined()) undefined_error(v, loc);
  if (o.is_undefined()) undefined_error(o, loc);
  int c = compare(v, o, loc);
  if (t == "lt" || t == "<" || t == "lessthan") return c < 0;
  if (t == "le" || t == "<=") return c <= 0;
  if (t == "gt" || t == ">" || t == "greaterthan") return c > 0;
  if (t == "ge" || t == ">=") return c >= 0;
  fail(loc, "No test named '" + t + "'.");
}

}  // namespace lmlab::detail::jinja
