// Python str/dict/list methods templates call (message.content.strip(),
// d.items(), s.split('x')...), and the string helpers filters share.
#pragma once

#include <string>
#include <vector>

#include "chat/interp.h"

namespace lmlab::detail::jinja {

bool has_method(const Value& obj, const std::string& name);
// A callable bound to obj: obj.name(...).
Value bound_method(Interp& in, const Value& obj, const std::string& name);

// chars: which code points to strip; none means whitespace.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_capitalize(const std::string& s);
std::string py_title(const std::string& s);
std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit);
std::vector<std::string> py_rsplit(const std::string& s, const Value& sep, int64_t maxsplit);
std::vector<std::string> py_splitlines(const std::string& s);
std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count);
size_t py_len(const std::string& s);

}  // namespace lmlab::detail::jinja
