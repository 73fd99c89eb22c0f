// The evaluator: walks the syntax tree over Values, with jinja2's scoping
// (a for-loop iteration, macro call or with block opens a frame; if does
// not) and hard limits so no input can run away with time, memory or stack.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/ast.h"
#include "chat/value.h"

namespace lmlab::detail::jinja {

struct Limits {
  size_t max_output = size_t{16} << 20;  // bytes of any one string, output included
  int max_call_depth = 64;               // nested macro calls
  uint64_t max_steps = 5'000'000;       // evaluation steps (plus bytes/64 built)
};

struct Frame;
using FramePtr = std::shared_ptr<Frame>;

struct Frame {
  DictObj vars;
  FramePtr parent;
  const Value* lookup(const std::string& name) const;
};

class Interp {
 public:
  explicit Interp(const Limits& limits) : limits_(limits) {}
  ~Interp();

  std::string render(const Template& tpl, DictObj globals);

  Value eval(const Expr& e, const FramePtr& f);
  Value call(const Value& callee, CallArgs& args, const Loc& loc);

  // Budget checks, used by builtins that build big values.
  void charge(uint64_t steps, const Loc& loc);
  void check_size(size_t bytes, const Loc& loc);
  // Registers a namespace so its attributes are cleared after rendering
  // (a namespace can hold itself, and shared_ptr cycles would leak).
  void track(const std::shared_ptr<NamespaceObj>& ns) { namespaces_.push_back(ns); }

 private:
  enum class Flow { Normal, Break, Continue };

  Flow exec(const Body& body, const FramePtr& f, std::string& out);
  Flow exec_stmt(const Stmt& s, const FramePtr& f, std::string& out);
  void exec_for(const Stmt& s, const FramePtr& f, std::string& out);
  void assign(const Stmt& s, const Value& v, const FramePtr& f);
  Value apply_filters(const std::vector<FilterCall>& fs, Value v, const FramePtr& f);
  Value make_macro(const Stmt& s, const FramePtr& f);
  Value eval_compare(const Expr& e, const FramePtr& f);
  Value eval_call(const Expr& e, const FramePtr& f);
  void eval_args(const Expr& e, size_t from, const FramePtr& f, CallArgs& out);
  void emit(std::string& out, const std::string& s, const Loc& loc);

  Limits limits_;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  FramePtr root_;
  std::vector<std::weak_ptr<NamespaceObj>> namespaces_;
};

// ---- builtins (filters.cpp, objects.cpp)
Value apply_filter(Interp& in, const std::string& name, const Value& v, CallArgs& args, const Loc& loc);
bool apply_test(Interp& in, const std::string& name, const Value& v, CallArgs& args, const Loc& loc);
// obj.name: a dict key, namespace attribute or bound method; undefined if none.
Value get_attr(Interp& in, const Value& obj, const std::string& name, const Loc& loc);
// obj[key]: index, key or attribute; undefined if none.
Value get_item(Interp& in, const Value& obj, const Value& key, const Loc& loc);
Value slice(Interp& in, const Value& obj, const Value& start, const Value& stop, const Value& step, const Loc& loc);
// What a for loop walks: list items, dict keys, string characters.
std::vector<Value> iterate(const Value& v, const Loc& loc);
Value binary_op(Interp& in, const std::string& op, const Value& a, const Value& b, const Loc& loc);
bool contains(const Value& container, const Value& item, const Loc& loc);
// Python json.dumps with transformers' tojson defaults (ensure_ascii=False).
std::string to_json(const Value& v, const Value& indent, const Value& separators, bool sort_keys,
                    bool ensure_ascii, const Loc& loc);
// Globals every template sees: range, namespace, dict, raise_exception, strftime_now.
void add_globals(Interp& in, DictObj& g);
// transformers' namespaces refuse underscore-prefixed attribute names.
std::string underscore_error(const std::string& name);
// Throws the error that using an undefined value raises.
[[noreturn]] void undefined_error(const Value& v, const Loc& loc);

}  // namespace lmlab::detail::jinja
