// Values of the Jinja engine: Python's object model cut down to what chat
// templates touch. Jinja semantics need more than JSON: undefined vs none,
// int vs float (1.0 prints as "1.0"), tuples, insertion-ordered dicts,
// mutable namespaces and callables (macros, globals, bound methods).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace lmlab::detail::jinja {

// 1-based position in the (newline-normalized) template source.
struct Loc {
  int line = 1;
  int col = 1;
};

// Throws std::invalid_argument("[chat_template] line L, column C: msg").
[[noreturn]] void fail(const Loc& loc, const std::string& msg);

class Value;

struct ListObj {
  std::vector<Value> items;
  bool is_tuple = false;
};

// Insertion-ordered string-keyed map (Python dicts keep insertion order, and
// tojson output must follow it). Linear lookup: template dicts are small.
struct DictObj {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

// jinja2's namespace(): the one mutable object templates can write to.
struct NamespaceObj {
  DictObj attrs;
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(const std::string& name) const;
  // Positional i, else keyword `name`, else nullptr.
  const Value* get(size_t i, const std::string& name) const;
};

using NativeFn = std::function<Value(CallArgs&, const Loc&)>;

struct CallableObj {
  std::string name;
  NativeFn fn;
};

struct Undefined {
  std::string hint;  // what an error on using it says, e.g. "'x' is undefined"
};
struct None {};

class Value {
 public:
  enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() : v_(Undefined{}) {}
  Value(None) : v_(None{}) {}
  Value(bool b) : v_(b) {}
  Value(int64_t i) : v_(i) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::shared_ptr<ListObj> l) : v_(std::move(l)) {}
  Value(std::shared_ptr<DictObj> d) : v_(std::move(d)) {}
  Value(std::shared_ptr<NamespaceObj> n) : v_(std::move(n)) {}
  Value(std::shared_ptr<CallableObj> c) : v_(std::move(c)) {}

  static Value undefined(std::string hint = {}) { Value v; v.v_ = Undefined{std::move(hint)}; return v; }
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value dict(DictObj d);
  static Value callable(std::string name, NativeFn fn);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_undefined() const { return type() == Type::Undefined; }
  bool is_none() const { return type() == Type::None; }
  bool is_bool() const { return type() == Type::Bool; }
  bool is_int() const { return type() == Type::Int; }
  bool is_float() const { return type() == Type::Float; }
  // Python: bool is an int, and both are numbers.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return type() == Type::String; }
  bool is_list() const { return type() == Type::List; }
  bool is_tuple() const { return is_list() && list_obj().is_tuple; }
  bool is_dict() const { return type() == Type::Dict; }
  bool is_namespace() const { return type() == Type::Namespace; }
  bool is_callable() const { return type() == Type::Callable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }
  double as_float() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const std::string& as_str() const { return std::get<std::string>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }
  const ListObj& list_obj() const { return *std::get<std::shared_ptr<ListObj>>(v_); }
  const std::vector<Value>& items() const { return list_obj().items; }
  const DictObj& dict_obj() const { return *std::get<std::shared_ptr<DictObj>>(v_); }
  NamespaceObj& ns_obj() const { return *std::get<std::shared_ptr<NamespaceObj>>(v_); }
  const CallableObj& callable_obj() const { return *std::get<std::shared_ptr<CallableObj>>(v_); }

  bool truthy() const;
  std::string str() const;   // Python str(): what {{ }} prints
  std::string repr() const;  // Python repr(): how values print inside containers
  std::string type_name() const;  // Python type name, for error messages

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<ListObj>,
               std::shared_ptr<DictObj>, std::shared_ptr<NamespaceObj>, std::shared_ptr<CallableObj>>
      v_;
};

// Python ==, including 1 == 1.0 == True and deep list/dict equality.
bool equals(const Value& a, const Value& b);
// Python <: negative, zero or positive; fails (TypeError) on unorderable types.
int compare(const Value& a, const Value& b, const Loc& loc);

// Python float repr: shortest round-trip digits, "1.0", "1e+16", "1.5e-05".
std::string py_float_repr(double d);
std::string py_str_repr(const std::string& s);

bool py_isspace(char32_t c);

}  // namespace lmlab::detail::jinja
