#include "chat/parser.h"

#include <initializer_list>

namespace lmlab::detail::jinja {
namespace {

constexpr int kMaxDepth = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::unique_ptr<Template> run() {
    auto tpl = std::make_unique<Template>();
    tpl->body = body({});
    if (cur().type != Tok::Eof) fail(cur().loc, "unexpected '" + cur().text + "'");
    return tpl;
  }

 private:
  // ---- token helpers
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void next() { if (i_ + 1 < t_.size()) ++i_; }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(const char* op) { if (is_op(op)) { next(); return true; } return false; }
  bool skip_name(const char* n) { if (is_name(n)) { next(); return true; } return false; }

  std::string describe(const Token& t) const {
    switch (t.type) {
      case Tok::Eof: return "end of template";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::VarEnd: return "end of print statement";
      case Tok::Data: return "template data";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void unexpected(const std::string& expected) const {
    fail(cur().loc, "unexpected " + describe(cur()) + ", expected " + expected);
  }
  void expect_op(const char* op) { if (!skip_op(op)) unexpected(std::string("'") + op + "'"); }
  std::string expect_name() {
    if (cur().type != Tok::Name) unexpected("a name");
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() { if (cur().type != Tok::BlockEnd) unexpected("end of statement block"); next(); }

  struct Guard {
    explicit Guard(Parser& p) : p(p) { if (++p.depth_ > kMaxDepth) fail(p.cur().loc, "template nested too deeply"); }
    ~Guard() { --p.depth_; }
    Parser& p;
  };

  ExprPtr node(ExprKind k, const Loc& loc) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->loc = loc;
    return e;
  }

  // ---- statements
  // Parses until a {% name %} with name in `ends` (left unconsumed, the
  // parser sitting on the name) or the end of the template.
  Body body(std::initializer_list<const char*> ends) {
    Guard g(*this);
    Body out;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::Eof) {
        if (ends.size()) fail(t.loc, "unexpected end of template, expected '" + std::string(*ends.begin()) + "'");
        return out;
      }
      if (t.type == Tok::Data) {
        auto s = stmt(StmtKind::Data, t.loc);
        s->text = t.text;
        out.push_back(std::move(s));
        next();
      } else if (t.type == Tok::VarBegin) {
        auto s = stmt(StmtKind::Print, t.loc);
        next();
        s->expr = tuple_expr(/*with_cond=*/true);
        if (cur().type != Tok::VarEnd) unexpected("end of print statement");
        next();
        out.push_back(std::move(s));
      } else if (t.type == Tok::BlockBegin) {
        next();
        if (cur().type != Tok::Name) unexpected("a tag name");
        for (const char* e : ends)
          if (cur().text == e) return out;
        out.push_back(statement());
      } else {
        unexpected("template data or a tag");
      }
    }
  }

  StmtPtr stmt(StmtKind k, const Loc& loc) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->loc = loc;
    return s;
  }

  // At "{% name": consumes the tag name then `name` or fails.
  void end_tag(const char* name) {
    if (!skip_name(name)) unexpected(std::string("'") + name + "'");
    expect_block_end();
  }

  StmtPtr statement() {
    const Token& t = cur();
    const std::string name = t.text;
    const Loc loc = t.loc;
    next();
    if (name == "if") return if_stmt(loc);
    if (name == "for") return for_stmt(loc);
    if (name == "set") return set_stmt(loc);
    if (name == "macro") return macro_stmt(loc);
    if (name == "call") return call_stmt(loc);
    if (name == "filter") {
      auto s = stmt(StmtKind::FilterBlock, loc);
      filter_chain(s->filters, /*first_has_pipe=*/false);
      expect_block_end();
      s->body = body({"endfilter"});
      end_tag("endfilter");
      return s;
    }
    if (name == "with") {
      auto s = stmt(StmtKind::With, loc);
      while (cur().type != Tok::BlockEnd) {
        if (!s->targets.empty()) expect_op(",");
        s->targets.push_back(expect_name());
        expect_op("=");
        s->withs.push_back(expr(true));
      }
      expect_block_end();
      s->body = body({"endwith"});
      end_tag("endwith");
      return s;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail(loc, "'" + name + "' outside of a loop");
      expect_block_end();
      return stmt(name == "break" ? StmtKind::Break : StmtKind::Continue, loc);
    }
    if (name == "generation") {
      expect_block_end();
      auto s = stmt(StmtKind::Generation, loc);
      s->body = body({"endgeneration"});
      end_tag("endgeneration");
      return s;
    }
    fail(loc, "Encountered unknown tag '" + name + "'.");
  }

  StmtPtr if_stmt(const Loc& loc) {
    auto s = stmt(StmtKind::If, loc);
    while (true) {
      s->conds.push_back(tuple_expr(/*with_cond=*/false));
      expect_block_end();
      s->bodies.push_back(body({"elif", "else", "endif"}));
      if (skip_name("elif")) continue;
      if (skip_name("else")) {
        expect_block_end();
        s->else_body = body({"endif"});
      }
      end_tag("endif");
      return s;
    }
  }

  // Assignment targets: `a`, `a, b`, `(a, b)`.
  void targets(Stmt& s) {
    bool paren = skip_op("(");
    s.targets.push_back(expect_name());
    while (skip_op(",")) {
      s.unpack = true;
      if (cur().type != Tok::Name) break;
      s.targets.push_back(expect_name());
    }
    if (paren) {
      expect_op(")");
      s.unpack = true;
    }
  }

  StmtPtr for_stmt(const Loc& loc) {
    auto s = stmt(StmtKind::For, loc);
    targets(*s);
    if (!skip_name("in")) unexpected("'in'");
    s->expr = tuple_expr(/*with_cond=*/false);
    if (skip_name("if")) s->cond = expr(/*with_cond=*/false);
    if (is_name("recursive")) fail(cur().loc, "recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    s->body = body({"endfor", "else"});
    --loop_depth_;
    if (skip_name("else")) {
      expect_block_end();
      s->else_body = body({"endfor"});
    }
    end_tag("endfor");
    return s;
  }

  StmtPtr set_stmt(const Loc& loc) {
    auto s = stmt(StmtKind::Set, loc);
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == ".") {
      s->targets.push_back(expect_name());
      next();
      s->ns_attr = expect_name();
    } else {
      targets(*s);
    }
    if (skip_op("=")) {
      s->expr = tuple_expr(/*with_cond=*/true);
      expect_block_end();
      return s;
    }
    if (s->unpack || !s->ns_attr.empty()) unexpected("'='");
    s->kind = StmtKind::SetBlock;
    if (is_op("|")) filter_chain(s->filters, /*first_has_pipe=*/true);
    expect_block_end();
    s->body = body({"endset"});
    end_tag("endset");
    return s;
  }

  void params(Stmt& s) {
    expect_op("(");
    while (!skip_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (skip_op(")")) break;
      s.params.push_back(expect_name());
      s.defaults.push_back(skip_op("=") ? expr(true) : nullptr);
    }
  }

  StmtPtr macro_stmt(const Loc& loc) {
    auto s = stmt(StmtKind::Macro, loc);
    s->text = expect_name();
    params(*s);
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = body({"endmacro"});
    loop_depth_ = saved;
    end_tag("endmacro");
    return s;
  }

  StmtPtr call_stmt(const Loc& loc) {
    auto s = stmt(StmtKind::CallBlock, loc);
    if (is_op("(")) params(*s);
    s->expr = expr(true);
    if (s->expr->kind != ExprKind::Call) fail(s->expr->loc, "expected call");
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = body({"endcall"});
    loop_depth_ = saved;
    end_tag("endcall");
    return s;
  }

  void filter_chain(std::vector<FilterCall>& out, bool first_has_pipe) {
    bool first = true;
    while ((first && !first_has_pipe) || skip_op("|")) {
      first = false;
      FilterCall f;
      f.loc = cur().loc;
      f.name = dotted_name();
      if (!is_known_filter(f.name)) fail(f.loc, "No filter named '" + f.name + "'.");
      if (is_op("(")) call_args(f.args, f.kwargs);
      out.push_back(std::move(f));
    }
  }

  // ---- expressions
  ExprPtr tuple_expr(bool with_cond) {
    Loc loc = cur().loc;
    ExprPtr first = expr(with_cond);
    if (!is_op(",")) return first;
    auto t = node(ExprKind::Tuple, loc);
    t->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (cur().type == Tok::BlockEnd || cur().type == Tok::VarEnd || is_op(")")) break;
      t->args.push_back(expr(with_cond));
    }
    return t;
  }

  ExprPtr expr(bool with_cond) {
    Guard g(*this);
    return with_cond ? cond_expr() : or_expr();
  }

  ExprPtr cond_expr() {
    ExprPtr e = or_expr();
    while (is_name("if")) {
      auto c = node(ExprKind::Cond, cur().loc);
      next();
      ExprPtr test = or_expr();
      ExprPtr other = skip_name("else") ? cond_expr() : nullptr;
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(ExprKind k, const Loc& loc, ExprPtr a, ExprPtr b, const std::string& op = {}) {
    auto e = node(k, loc);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr or_expr() {
    ExprPtr e = and_expr();
    while (is_name("or")) {
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::Or, loc, std::move(e), and_expr());
    }
    return e;
  }

  ExprPtr and_expr() {
    ExprPtr e = not_expr();
    while (is_name("and")) {
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::And, loc, std::move(e), not_expr());
    }
    return e;
  }

  ExprPtr not_expr() {
    if (is_name("not")) {
      Guard g(*this);
      auto e = node(ExprKind::Not, cur().loc);
      next();
      e->args.push_back(not_expr());
      return e;
    }
    return compare();
  }

  ExprPtr compare() {
    Loc loc = cur().loc;
    ExprPtr first = math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::Compare, loc);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr math1() {
    ExprPtr e = concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::Binary, loc, std::move(e), concat(), op);
    }
    return e;
  }

  ExprPtr concat() {
    ExprPtr e = math2();
    while (is_op("~")) {
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::Binary, loc, std::move(e), math2(), "~");
    }
    return e;
  }

  ExprPtr math2() {
    ExprPtr e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::Binary, loc, std::move(e), power(), op);
    }
    return e;
  }

  ExprPtr power() {
    ExprPtr e = unary(true);
    while (is_op("**")) {
      Loc loc = cur().loc;
      next();
      e = binary(ExprKind::Binary, loc, std::move(e), unary(true), "**");
    }
    return e;
  }

  ExprPtr unary(bool with_filter) {
    Guard g(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(is_op("-") ? ExprKind::Neg : ExprKind::Pos, cur().loc);
      next();
      e->args.push_back(unary(false));
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    if (with_filter) e = filter_expr(std::move(e));
    return e;
  }

  ExprPtr primary() {
    const Token& t = cur();
    Loc loc = t.loc;
    if (t.type == Tok::Name) {
      const std::string& n = t.text;
      ExprPtr e = node(ExprKind::Literal, loc);
      if (n == "true" || n == "True") e->value = true;
      else if (n == "false" || n == "False") e->value = false;
      else if (n == "none" || n == "None") e->value = None{};
      else {
        e->kind = ExprKind::Name;
        e->name = n;
      }
      next();
      return e;
    }
    if (t.type == Tok::String) {
      std::string s;
      while (cur().type == Tok::String) {
        s += cur().text;
        next();
      }
      auto e = node(ExprKind::Literal, loc);
      e->value = std::move(s);
      return e;
    }
    if (t.type == Tok::Int || t.type == Tok::Float) {
      auto e = node(ExprKind::Literal, loc);
      e->value = t.type == Tok::Int ? Value(t.ival) : Value(t.fval);
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      if (skip_op(")")) return node(ExprKind::Tuple, loc);
      ExprPtr first = expr(true);
      if (skip_op(")")) return first;
      auto tup = node(ExprKind::Tuple, loc);
      tup->args.push_back(std::move(first));
      while (skip_op(",")) {
        if (is_op(")")) break;
        tup->args.push_back(expr(true));
      }
      expect_op(")");
      return tup;
    }
    if (is_op("[")) {
      next();
      auto l = node(ExprKind::List, loc);
      while (!skip_op("]")) {
        if (!l->args.empty()) expect_op(",");
        if (skip_op("]")) break;
        l->args.push_back(expr(true));
      }
      return l;
    }
    if (is_op("{")) {
      next();
      auto d = node(ExprKind::Dict, loc);
      while (!skip_op("}")) {
        if (!d->args.empty()) expect_op(",");
        if (skip_op("}")) break;
        d->args.push_back(expr(true));
        expect_op(":");
        d->args.push_back(expr(true));
      }
      return d;
    }
    unexpected("an expression");
  }

  ExprPtr postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        Loc loc = cur().loc;
        next();
        if (cur().type == Tok::Name) {
          auto a = node(ExprKind::Attr, loc);
          a->name = cur().text;
          next();
          a->args.push_back(std::move(e));
          e = std::move(a);
        } else if (cur().type == Tok::Int) {
          auto lit = node(ExprKind::Literal, cur().loc);
          lit->value = cur().ival;
          next();
          e = binary(ExprKind::Item, loc, std::move(e), std::move(lit));
        } else {
          unexpected("a name or number");
        }
      } else if (is_op("[")) {
        e = subscript(std::move(e));
      } else if (is_op("(")) {
        e = call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr subscript(ExprPtr obj) {
    Loc loc = cur().loc;
    next();  // [
    ExprPtr parts[3];
    int colons = 0;
    for (int k = 0; k < 3; ++k) {
      if (!is_op(":") && !is_op("]")) parts[k] = expr(true);
      if (k < 2 && skip_op(":")) {
        ++colons;
        continue;
      }
      break;
    }
    expect_op("]");
    if (colons == 0) {
      if (!parts[0]) fail(loc, "expected subscript expression");
      return binary(ExprKind::Item, loc, std::move(obj), std::move(parts[0]));
    }
    auto s = node(ExprKind::Slice, loc);
    s->args.push_back(std::move(obj));
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }

  void call_args(std::vector<ExprPtr>& args, std::vector<std::pair<std::string, ExprPtr>>& kwargs) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (skip_op(")")) break;
      if (is_op("*") || is_op("**")) fail(cur().loc, "*args and **kwargs are not supported");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        std::string k = cur().text;
        next();
        next();
        kwargs.emplace_back(k, expr(true));
      } else {
        if (!kwargs.empty()) fail(cur().loc, "positional argument follows keyword argument");
        args.push_back(expr(true));
      }
    }
  }

  ExprPtr call(ExprPtr callee) {
    auto c = node(ExprKind::Call, callee->loc);
    c->args.push_back(std::move(callee));
    call_args(c->args, c->kwargs);
    return c;
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().type == Tok::Name) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  ExprPtr filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        auto f = node(ExprKind::Filter, cur().loc);
        f->name = dotted_name();
        if (!is_known_filter(f->name)) fail(f->loc, "No filter named '" + f->name + "'.");
        f->args.push_back(std::move(e));
        if (is_op("(")) call_args(f->args, f->kwargs);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        bool negated = skip_name("not");
        auto t = node(ExprKind::Test, cur().loc);
        t->name = dotted_name();
        if (!is_known_test(t->name)) fail(t->loc, "No test named '" + t->name + "'.");
        t->args.push_back(std::move(e));
        const Token& c = cur();
        if (is_op("(")) {
          call_args(t->args, t->kwargs);
        } else if ((c.type == Tok::Name || c.type == Tok::String || c.type == Tok::Int || c.type == Tok::Float ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail(c.loc, "You cannot chain multiple tests with is");
          t->args.push_back(postfix(primary()));
        }
        e = std::move(t);
        if (negated) {
          auto n = node(ExprKind::Not, e->loc);
          n->args.push_back(std::move(e));
          e = std::move(n);
        }
      } else if (is_op("(")) {
        e = call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Template> parse(const std::string& source, const LexOptions& opts) {
  return Parser(tokenize(source, opts)).run();
}

}  // namespace lmlab::detail::jinja
