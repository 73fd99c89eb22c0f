// tojson as transformers defines it: Python's json.dumps(x,
// ensure_ascii=False, indent=None, separators=None, sort_keys=False), which
// differs from jinja2's own tojson (no HTML escaping, keeps non-ASCII).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "chat/interp.h"
#include "core/utf8.h"

namespace lmlab::detail::jinja {
namespace {

struct JsonWriter {
  std::string indent;  // per level; only used when pretty
  bool pretty = false;
  std::string item_sep, key_sep;
  bool sort_keys = false;
  bool ensure_ascii = false;
  Loc loc;
  std::string out;

  void str(const std::string& s) {
    out += '"';
    for (char32_t c : utf8::decode_escaped(s)) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default: {
          char buf[16];
          if (c < 0x20 || (ensure_ascii && c >= 0x7f && (c < 0xDC80 || c > 0xDCFF))) {
            if (c >= 0x10000) {
              char32_t v = c - 0x10000;
              std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                            static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
            } else {
              std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
            }
            out += buf;
          } else {
            utf8::append_escaped(out, c);
          }
        }
      }
    }
    out += '"';
  }

  void newline(int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) out += indent;
  }

  void write(const Value& v, int level) {
    if (level > 200) fail(loc, "Circular reference detected");
    if (out.size() > (size_t{64} << 20)) fail(loc, "tojson output too large");
    switch (v.type()) {
      case Value::Type::None: out += "null"; return;
      case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
      case Value::Type::Int: out += std::to_string(v.as_int()); return;
      case Value::Type::Float: {
        double d = v.as_float();
        if (std::isnan(d)) out += "NaN";
        else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
        else out += py_float_repr(d);
        return;
      }
      case Value::Type::String: str(v.as_str()); return;
      case Value::Type::List: {
        const auto& items = v.items();
        if (items.empty()) { out += "[]"; return; }
        out += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += item_sep;
          if (pretty) newline(level + 1);
          write(items[i], level + 1);
        }
        if (pretty) newline(level);
        out += ']';
        return;
      }
      case Value::Type::Dict: {
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : v.dict_obj().items) items.push_back(&kv);
        if (items.empty()) { out += "{}"; return; }
        if (sort_keys)
          std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += item_sep;
          if (pretty) newline(level + 1);
          str(items[i]->first);
          out += key_sep;
          write(items[i]->second, level + 1);
        }
        if (pretty) newline(level);
        out += '}';
        return;
      }
      default: fail(loc, "Object of type " + v.type_name() + " is not JSON serializable");
    }
  }
};

}  // namespace

std::string to_json(const Value& v, const Value& indent, const Value& separators, bool sort_keys, bool ensure_ascii,
                    const Loc& loc) {
  JsonWriter w;
  w.loc = loc;
  w.sort_keys = sort_keys;
  w.ensure_ascii = ensure_ascii;
  if (!indent.is_none() && !indent.is_undefined()) {
    w.pretty = true;
    if (indent.is_string()) w.indent = indent.as_str();
    else if (indent.is_int() || indent.is_bool()) w.indent = std::string(std::clamp<int64_t>(indent.as_int(), 0, 1000), ' ');
    else fail(loc, "tojson indent must be an integer or a string");
  }
  w.item_sep = w.pretty ? "," : ", ";
  w.key_sep = ": ";
  if (!separators.is_none() && !separators.is_undefined()) {
    if (!separators.is_list() || separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string())
      fail(loc, "tojson separators must be a pair of strings");
    w.item_sep = separators.items()[0].as_str();
    w.key_sep = separators.items()[1].as_str();
  }
  w.write(v, 0);
  return std::move(w.out);
}

}  // namespace lmlab::detail::jinja
