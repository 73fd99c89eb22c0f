// Syntax tree of a parsed template. One node type for expressions and one
// for statements, each a tagged struct: the evaluator is a switch per kind.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace lmlab::detail::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  Literal,   // value
  Name,      // name
  List,      // args
  Tuple,     // args
  Dict,      // args: key0, value0, key1, value1...
  Attr,      // args[0].name
  Item,      // args[0][args[1]]
  Slice,     // args[0][args[1]:args[2]:args[3]] (null parts allowed)
  Call,      // args[0](args[1:], kwargs)
  Filter,    // args[0] | name(args[1:], kwargs)
  Test,      // args[0] is name(args[1:], kwargs)
  Neg, Pos, Not,      // unary on args[0]
  Binary,    // args[0] op args[1]; op in + - * / // % ** ~
  And, Or,   // args[0], args[1]
  Compare,   // args[0] ops[0] args[1] ops[1] args[2]... (chained)
  Cond,      // args[1] if args[0] else args[2] (args[2] may be null)
};

struct Expr {
  ExprKind kind;
  Loc loc;
  Value value;                 // Literal
  std::string name;            // Name, Attr, Filter, Test; the operator for Binary
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // Compare: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  Data,       // text
  Print,      // {{ expr }}
  If,         // conds[i] -> bodies[i]; else_body
  For,        // targets in expr [if cond]; body; else_body
  Set,        // targets (or ns attr) = expr
  SetBlock,   // targets[0] = captured body, piped through filters
  Macro,      // name(params = defaults) body
  CallBlock,  // {% call(params) expr %} body
  FilterBlock,  // body piped through filters
  With,       // targets[i] = withs[i]; body
  Break,
  Continue,
  Generation,  // transformers' {% generation %}: renders its body
};

struct FilterCall {
  std::string name;
  Loc loc;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt {
  StmtKind kind;
  Loc loc;
  std::string text;             // Data; Macro name
  ExprPtr expr;                 // Print, For iterable, Set value, CallBlock call
  ExprPtr cond;                 // For filter
  std::vector<ExprPtr> conds;   // If
  std::vector<Body> bodies;     // If branches
  Body body;
  Body else_body;
  std::vector<std::string> targets;  // For/Set names; With names
  bool unpack = false;          // targets were a tuple
  std::string ns_attr;          // Set: {% set targets[0].ns_attr = ... %}
  std::vector<ExprPtr> withs;   // With values
  std::vector<std::string> params;   // Macro / CallBlock parameters
  std::vector<ExprPtr> defaults;     // one per param, null when none
  std::vector<FilterCall> filters;   // SetBlock, FilterBlock
};

struct Template {
  Body body;
};

}  // namespace lmlab::detail::jinja
