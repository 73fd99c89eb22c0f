// Jinja lexer: splits a template into data and tag tokens, applying
// whitespace control ({%- -%}, {%+) and the trim_blocks / lstrip_blocks
// settings transformers renders chat templates with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chat/value.h"

namespace lmlab::detail::jinja {

enum class Tok { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // data, name, operator, or the unescaped string literal
  Loc loc;
  int64_t ival = 0;
  double fval = 0.0;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws (via fail) on unterminated tags, comments or strings, bad characters
// and unbalanced brackets.
std::vector<Token> tokenize(const std::string& source, const LexOptions& opts = {});

}  // namespace lmlab::detail::jinja
