// Recursive-descent parser for the Jinja subset chat templates use, with
// jinja2's operator precedence (filters and tests bind tighter than
// arithmetic; `not` looser than comparisons).
#pragma once

#include <memory>
#include <string>

#include "chat/ast.h"
#include "chat/lexer.h"

namespace lmlab::detail::jinja {

// Throws std::invalid_argument "[chat_template] line L, column C: ..." on a
// syntax error, an unknown tag, filter or test, or nesting deeper than 200.
std::unique_ptr<Template> parse(const std::string& source, const LexOptions& opts = {});

// Filter and test names the evaluator implements (checked at parse time, as
// jinja2 does when it compiles).
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);

}  // namespace lmlab::detail::jinja
