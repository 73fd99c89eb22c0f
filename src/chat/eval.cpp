// Statement execution and expression evaluation.
#include <algorithm>

#include "chat/interp.h"
#include "chat/parser.h"

namespace lmlab::detail::jinja {

const Value* Frame::lookup(const std::string& name) const {
  for (const Frame* f = this; f; f = f->parent.get())
    if (const Value* v = f->vars.find(name)) return v;
  return nullptr;
}

Interp::~Interp() {
  for (auto& w : namespaces_)
    if (auto ns = w.lock()) ns->attrs.items.clear();
}

void Interp::charge(uint64_t steps, const Loc& loc) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) fail(loc, "template exceeded its evaluation budget");
}

void Interp::check_size(size_t bytes, const Loc& loc) {
  if (bytes > limits_.max_output) fail(loc, "template output exceeded " + std::to_string(limits_.max_output) + " bytes");
}

void Interp::emit(std::string& out, const std::string& s, const Loc& loc) {
  check_size(out.size() + s.size(), loc);
  charge(1 + s.size() / 64, loc);
  out += s;
}

std::string Interp::render(const Template& tpl, DictObj globals) {
  root_ = std::make_shared<Frame>();
  add_globals(*this, globals);
  auto g = std::make_shared<Frame>();
  g->vars = std::move(globals);
  root_->parent = g;
  std::string out;
  exec(tpl.body, root_, out);
  return out;
}

Interp::Flow Interp::exec(const Body& body, const FramePtr& f, std::string& out) {
  for (const auto& s : body) {
    Flow fl = exec_stmt(*s, f, out);
    if (fl != Flow::Normal) return fl;
  }
  return Flow::Normal;
}

Interp::Flow Interp::exec_stmt(const Stmt& s, const FramePtr& f, std::string& out) {
  charge(1, s.loc);
  switch (s.kind) {
    case StmtKind::Data: emit(out, s.text, s.loc); break;
    case StmtKind::Print: emit(out, eval(*s.expr, f).str(), s.expr->loc); break;
    case StmtKind::If:
      for (size_t i = 0; i < s.conds.size(); ++i)
        if (eval(*s.conds[i], f).truthy()) return exec(s.bodies[i], f, out);
      return exec(s.else_body, f, out);
    case StmtKind::For: exec_for(s, f, out); break;
    case StmtKind::Set: assign(s, eval(*s.expr, f), f); break;
    case StmtKind::SetBlock: {
      std::string buf;
      exec(s.body, f, buf);
      assign(s, apply_filters(s.filters, Value(std::move(buf)), f), f);
      break;
    }
    case StmtKind::FilterBlock: {
      std::string buf;
      exec(s.body, f, buf);
      emit(out, apply_filters(s.filters, Value(std::move(buf)), f).str(), s.loc);
      break;
    }
    case StmtKind::Macro: f->vars.set(s.text, make_macro(s, f)); break;
    case StmtKind::CallBlock: {
      // The body becomes `caller`, a macro the called macro can invoke.
      Value caller = make_macro(s, f);
      const Expr& c = *s.expr;
      Value callee = eval(*c.args[0], f);
      CallArgs args;
      eval_args(c, 1, f, args);
      args.kw.emplace_back("caller", caller);
      emit(out, call(callee, args, c.loc).str(), s.loc);
      break;
    }
    case StmtKind::With: {
      auto inner = std::make_shared<Frame>();
      inner->parent = f;
      for (size_t i = 0; i < s.targets.size(); ++i) inner->vars.set(s.targets[i], eval(*s.withs[i], f));
      return exec(s.body, inner, out);
    }
    case StmtKind::Generation: return exec(s.body, f, out);
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
  }
  return Flow::Normal;
}

void Interp::assign(const Stmt& s, const Value& v, const FramePtr& f) {
  if (!s.ns_attr.empty()) {
    const Value* ns = f->lookup(s.targets[0]);
    if (!ns || !ns->is_namespace()) fail(s.loc, "cannot assign attribute on non-namespace object");
    if (s.ns_attr[0] == '_') fail(s.loc, underscore_error(s.ns_attr));
    ns->ns_obj().attrs.set(s.ns_attr, v);
    return;
  }
  if (!s.unpack) {
    f->vars.set(s.targets[0], v);
    return;
  }
  std::vector<Value> items = iterate(v, s.loc);
  if (items.size() != s.targets.size())
    fail(s.loc, items.size() > s.targets.size() ? "too many values to unpack" : "not enough values to unpack");
  for (size_t i = 0; i < items.size(); ++i) f->vars.set(s.targets[i], items[i]);
}

void Interp::exec_for(const Stmt& s, const FramePtr& f, std::string& out) {
  Value seq = eval(*s.expr, f);
  if (seq.is_none() || seq.is_number() || seq.is_callable() || seq.is_namespace())
    fail(s.expr->loc, "'" + seq.type_name() + "' object is not iterable");
  std::vector<Value> items = iterate(seq, s.expr->loc);
  auto bind = [&](const FramePtr& fr, const Value& item) {
    if (!s.unpack) {
      fr->vars.set(s.targets[0], item);
      return;
    }
    std::vector<Value> parts = iterate(item, s.loc);
    if (parts.size() != s.targets.size())
      fail(s.loc, parts.size() > s.targets.size() ? "too many values to unpack" : "not enough values to unpack");
    for (size_t i = 0; i < parts.size(); ++i) fr->vars.set(s.targets[i], parts[i]);
  };
  if (s.cond) {  // `for x in xs if cond`: filtered before loop.* are computed
    std::vector<Value> kept;
    for (const Value& item : items) {
      auto tmp = std::make_shared<Frame>();
      tmp->parent = f;
      bind(tmp, item);
      if (eval(*s.cond, tmp).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(s.else_body, f, out);
    return;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  auto index = std::make_shared<int64_t>(0);
  Value cycle = Value::callable("cycle", [index, this](CallArgs& a, const Loc& loc) -> Value {
    if (a.pos.empty()) fail(loc, "no items for cycling given");
    return a.pos[static_cast<size_t>(*index % static_cast<int64_t>(a.pos.size()))];
  });
  for (int64_t i = 0; i < n; ++i) {
    *index = i;
    auto iter = std::make_shared<Frame>();
    iter->parent = f;
    bind(iter, items[i]);
    DictObj loop;
    loop.items.reserve(13);
    loop.items.emplace_back("index", Value(i + 1));
    loop.items.emplace_back("index0", Value(i));
    loop.items.emplace_back("revindex", Value(n - i));
    loop.items.emplace_back("revindex0", Value(n - i - 1));
    loop.items.emplace_back("first", Value(i == 0));
    loop.items.emplace_back("last", Value(i == n - 1));
    loop.items.emplace_back("length", Value(n));
    loop.items.emplace_back("depth", Value(1));
    loop.items.emplace_back("depth0", Value(0));
    loop.items.emplace_back("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
    loop.items.emplace_back("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
    loop.items.emplace_back("cycle", cycle);
    iter->vars.set("loop", Value::dict(std::move(loop)));
    if (exec(s.body, iter, out) == Flow::Break) break;
  }
}

Value Interp::apply_filters(const std::vector<FilterCall>& fs, Value v, const FramePtr& f) {
  for (const auto& fc : fs) {
    CallArgs args;
    for (const auto& a : fc.args) args.pos.push_back(eval(*a, f));
    for (const auto& [k, a] : fc.kwargs) args.kw.emplace_back(k, eval(*a, f));
    v = apply_filter(*this, fc.name, v, args, fc.loc);
  }
  return v;
}

Value Interp::make_macro(const Stmt& s, const FramePtr& f) {
  std::weak_ptr<Frame> def = f;
  const Stmt* sp = &s;
  return Value::callable(s.text.empty() ? "caller" : s.text, [this, sp, def](CallArgs& a, const Loc& loc) -> Value {
    if (call_depth_ >= limits_.max_call_depth) fail(loc, "maximum macro recursion depth exceeded");
    FramePtr parent = def.lock();
    auto fr = std::make_shared<Frame>();
    fr->parent = parent ? parent : root_;
    std::vector<Value> varargs;
    DictObj kwargs;
    for (size_t i = 0; i < a.pos.size(); ++i) {
      if (i < sp->params.size()) fr->vars.set(sp->params[i], a.pos[i]);
      else varargs.push_back(a.pos[i]);
    }
    for (auto& [k, v] : a.kw) {
      auto it = std::find(sp->params.begin(), sp->params.end(), k);
      if (it != sp->params.end()) fr->vars.set(k, v);
      else if (k == "caller") fr->vars.set(k, v);
      else kwargs.set(k, v);
    }
    for (size_t i = 0; i < sp->params.size(); ++i) {
      if (fr->vars.find(sp->params[i])) continue;
      fr->vars.set(sp->params[i], sp->defaults[i] ? eval(*sp->defaults[i], fr)
                                                  : Value::undefined("parameter '" + sp->params[i] + "' was not provided"));
    }
    fr->vars.set("varargs", Value::list(std::move(varargs)));
    fr->vars.set("kwargs", Value::dict(std::move(kwargs)));
    ++call_depth_;
    std::string out;
    try {
      exec(sp->body, fr, out);
    } catch (...) {
      --call_depth_;
      throw;
    }
    --call_depth_;
    return Value(std::move(out));
  });
}

Value Interp::call(const Value& callee, CallArgs& args, const Loc& loc) {
  if (callee.is_undefined()) undefined_error(callee, loc);
  if (!callee.is_callable()) fail(loc, "'" + callee.type_name() + "' object is not callable");
  return callee.callable_obj().fn(args, loc);
}

void Interp::eval_args(const Expr& e, size_t from, const FramePtr& f, CallArgs& out) {
  for (size_t i = from; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i], f));
  for (const auto& [k, a] : e.kwargs) out.kw.emplace_back(k, eval(*a, f));
}

Value Interp::eval_compare(const Expr& e, const FramePtr& f) {
  Value left = eval(*e.args[0], f);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1], f);
    const std::string& op = e.ops[i];
    const Loc& loc = e.args[i + 1]->loc;
    bool r;
    if (op == "==") r = equals(left, right);
    else if (op == "!=") r = !equals(left, right);
    else if (op == "in") r = contains(right, left, loc);
    else if (op == "notin") r = !contains(right, left, loc);
    else {
      if (left.is_undefined()) undefined_error(left, loc);
      if (right.is_undefined()) undefined_error(right, loc);
      int c = compare(left, right, loc);
      r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!r) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interp::eval_call(const Expr& e, const FramePtr& f) {
  Value callee = eval(*e.args[0], f);
  CallArgs args;
  eval_args(e, 1, f, args);
  return call(callee, args, e.loc);
}

Value Interp::eval(const Expr& e, const FramePtr& f) {
  charge(1, e.loc);
  switch (e.kind) {
    case ExprKind::Literal: return e.value;
    case ExprKind::Name: {
      const Value* v = f->lookup(e.name);
      return v ? *v : Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a, f));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      DictObj d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], f);
        d.set(k.is_string() ? k.as_str() : k.str(), eval(*e.args[i + 1], f));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::Attr: return get_attr(*this, eval(*e.args[0], f), e.name, e.loc);
    case ExprKind::Item: {
      Value obj = eval(*e.args[0], f);
      return get_item(*this, obj, eval(*e.args[1], f), e.loc);
    }
    case ExprKind::Slice: {
      Value obj = eval(*e.args[0], f);
      Value parts[3];
      for (int k = 0; k < 3; ++k) parts[k] = e.args[k + 1] ? eval(*e.args[k + 1], f) : Value(None{});
      return slice(*this, obj, parts[0], parts[1], parts[2], e.loc);
    }
    case ExprKind::Call: return eval_call(e, f);
    case ExprKind::Filter: {
      Value v = eval(*e.args[0], f);
      CallArgs args;
      eval_args(e, 1, f, args);
      return apply_filter(*this, e.name, v, args, e.loc);
    }
    case ExprKind::Test: {
      Value v = eval(*e.args[0], f);
      CallArgs args;
      eval_args(e, 1, f, args);
      return Value(apply_test(*this, e.name, v, args, e.loc));
    }
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.args[0], f);
      if (v.is_undefined()) undefined_error(v, e.loc);
      if (!v.is_number()) fail(e.loc, "bad operand type for unary " + std::string(e.kind == ExprKind::Neg ? "-" : "+") + ": '" + v.type_name() + "'");
      if (e.kind == ExprKind::Pos) return v.is_bool() ? Value(v.as_int()) : v;
      if (v.is_float()) return Value(-v.as_float());
      if (v.as_int() == INT64_MIN) fail(e.loc, "integer overflow");
      return Value(-v.as_int());
    }
    case ExprKind::Not: return Value(!eval(*e.args[0], f).truthy());
    case ExprKind::Binary: {
      Value a = eval(*e.args[0], f);
      Value b = eval(*e.args[1], f);
      return binary_op(*this, e.name, a, b, e.loc);
    }
    case ExprKind::And: {
      Value a = eval(*e.args[0], f);
      return a.truthy() ? eval(*e.args[1], f) : a;
    }
    case ExprKind::Or: {
      Value a = eval(*e.args[0], f);
      return a.truthy() ? a : eval(*e.args[1], f);
    }
    case ExprKind::Compare: return eval_compare(e, f);
    case ExprKind::Cond:
      if (eval(*e.args[0], f).truthy()) return eval(*e.args[1], f);
      if (e.args[2]) return eval(*e.args[2], f);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
  }
  return Value();
}

}  // namespace lmlab::detail::jinja
