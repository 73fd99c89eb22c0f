// Normalizers, pre-tokenizers, decoders and post-processors of tokenizer.json
// (see components.h). Each mirrors the HF `tokenizers` stage of the same name.
#include "tokenizer/components.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace lmlab::detail {

using json = nlohmann::json;

namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 '▁'
const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

const json& field(const json& j, const char* key) {
  if (!j.is_object()) bad("expected an object holding '" + std::string(key) + "'");
  auto it = j.find(key);
  if (it == j.end()) bad("missing field '" + std::string(key) + "' in " + j.dump().substr(0, 80));
  return *it;
}

std::string str_field(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_string()) bad("field '" + std::string(key) + "' must be a string");
  return v.get<std::string>();
}

bool bool_field(const json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad("field '" + std::string(key) + "' must be a boolean");
  return it->get<bool>();
}

size_t uint_field(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_number_unsigned()) bad("field '" + std::string(key) + "' must be an unsigned integer");
  return v.get<size_t>();
}

const json& array_field(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_array()) bad("field '" + std::string(key) + "' must be an array");
  return v;
}

std::string type_of(const json& j) {
  if (!j.is_object()) bad("a pipeline stage must be an object, got " + j.dump().substr(0, 80));
  return str_field(j, "type");
}

// A single character given as a string ("▁").
std::string char_field(const json& j, const char* key) {
  std::string s = str_field(j, key);
  size_t i = 0;
  if (s.empty() || !utf8::is_valid(s) || (utf8::next(s, i), i != s.size()))
    bad("field '" + std::string(key) + "' must be one character");
  return s;
}

// -------------------------------------------------------------------------
// Patterns: a literal string or a regex, found left to right without overlap.

class Pattern {
 public:
  explicit Pattern(const json& j) {
    if (j.is_object() && j.contains("Regex")) {
      regex_ = std::make_unique<Regex>(str_field(j, "Regex"));
    } else if (j.is_object() && j.contains("String")) {
      literal_ = str_field(j, "String");
    } else {
      bad("pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  explicit Pattern(std::unique_ptr<Regex> re) : regex_(std::move(re)) {}

  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
    if (regex_) return regex_->find_all(s, out);
    if (literal_.empty()) return;
    for (size_t pos = s.find(literal_); pos != std::string_view::npos;
         pos = s.find(literal_, pos + literal_.size()))
      out.emplace_back(pos, pos + literal_.size());
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
};

std::string replace_all(std::string_view s, const Pattern& pattern, const std::string& content) {
  std::vector<std::pair<size_t, size_t>> matches;
  pattern.find_all(s, matches);
  if (matches.empty()) return std::string(s);
  std::string out;
  size_t prev = 0;
  for (auto [a, b] : matches) {
    out.append(s.substr(prev, a - prev));
    out += content;
    prev = b;
  }
  out.append(s.substr(prev));
  return out;
}

// -------------------------------------------------------------------------
// Splitting with HF's delimiter behaviours.

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  bad("unknown split behavior '" + s + "'");
}

struct Span {
  size_t start, end;
  bool match;
};

// Turns match ranges into spans covering the whole text, then applies the
// behaviour; the result lists the ranges to keep.
std::vector<Span> apply_behavior(size_t len, const std::vector<std::pair<size_t, size_t>>& matches,
                                 Behavior behavior, bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (auto [a, b] : matches) {
    if (prev != a) spans.push_back({prev, a, invert});
    spans.push_back({a, b, !invert});
    prev = b;
  }
  if (prev != len) spans.push_back({prev, len, invert});

  std::vector<Span> out;
  switch (behavior) {
    case Behavior::Isolated:
      return spans;
    case Behavior::Removed:
      for (const Span& s : spans)
        if (!s.match) out.push_back(s);
      return out;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.match && !prev_match && !out.empty()) out.back().end = s.end;
        else out.push_back(s);
        prev_match = s.match;
      }
      return out;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !prev_match && !out.empty()) out.back().start = it->start;
        else out.push_back(*it);
        prev_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      return out;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.match == prev_match && !out.empty()) out.back().end = s.end;
        else out.push_back(s);
        prev_match = s.match;
      }
      return out;
    }
  }
  return out;
}

// Splits every piece with `find` (which appends match ranges) and `behavior`.
template <typename Find>
void split_pieces(std::vector<Piece>& pieces, Behavior behavior, bool invert, Find&& find) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  std::vector<std::pair<size_t, size_t>> matches;
  for (Piece& p : pieces) {
    matches.clear();
    find(std::string_view(p.text), matches);
    if (matches.empty() && !invert && behavior != Behavior::Removed) {
      if (!p.text.empty()) out.push_back(std::move(p));
      continue;
    }
    for (const Span& s : apply_behavior(p.text.size(), matches, behavior, invert)) {
      if (s.end <= s.start) continue;
      out.push_back({p.text.substr(s.start, s.end - s.start), p.at_start && s.start == 0});
    }
  }
  pieces = std::move(out);
}

// Every character satisfying `pred` is one match (HF's char-predicate pattern).
template <typename Pred>
auto char_matches(Pred pred) {
  return [pred](std::string_view s, std::vector<std::pair<size_t, size_t>>& out) {
    for (size_t i = 0; i < s.size();) {
      size_t start = i;
      char32_t cp = utf8::next(s, i);
      if (pred(cp)) out.emplace_back(start, i);
    }
  };
}

// -------------------------------------------------------------------------
// Normalizers

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  std::string normalize(std::string s) const override {
    for (const auto& step : steps_) s = step->normalize(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class FunctionNormalizer : public Normalizer {
 public:
  explicit FunctionNormalizer(std::string (*fn)(std::string_view)) : fn_(fn) {}
  std::string normalize(std::string s) const override { return fn_(s); }

 private:
  std::string (*fn_)(std::string_view);
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string s) const override {
    return s.empty() ? s : prefix_ + s;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string s) const override {
    return replace_all(s, pattern_, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string s) const override {
    size_t begin = 0, end = s.size();
    if (left_) {
      while (begin < end) {
        size_t i = begin;
        if (!is_whitespace(utf8::next(s, i))) break;
        begin = i;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(utf8::next(s, i))) break;
        end = start;
      }
    }
    return s.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

std::string strip_accents(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    if (!is_nonspacing_mark(utf8::next(s, i))) out.append(s.substr(start, i - start));
  }
  return out;
}

std::string byte_level_chars(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) out += byte_to_char(c);
  return out;
}

// -------------------------------------------------------------------------
// Pre-tokenizers

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& step : steps_) step->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, behavior_, invert_,
                 [this](std::string_view s, auto& out) { pattern_.find_all(s, out); });
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  void split(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (Piece& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (regex_)
      split_pieces(pieces, Behavior::Isolated, false,
                   [this](std::string_view s, auto& out) { regex_->find_all(s, out); });
    for (Piece& p : pieces) p.text = byte_level_chars(p.text);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class PredicatePreTokenizer : public PreTokenizer {
 public:
  PredicatePreTokenizer(bool (*pred)(char32_t), Behavior behavior)
      : pred_(pred), behavior_(behavior) {}
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, behavior_, false, char_matches(pred_));
  }

 private:
  bool (*pred_)(char32_t);
  Behavior behavior_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {
    size_t i = 0;
    rep_cp_ = utf8::next(replacement_, i);
  }
  void split(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string s;
      for (char c : p.text) {
        if (c == ' ') s += replacement_;
        else s += c;
      }
      bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
      bool prepend = prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_start);
      if (prepend && !starts) s.insert(0, replacement_);
      p.text = std::move(s);
    }
    if (split_) {
      char32_t rep = rep_cp_;
      split_pieces(pieces, Behavior::MergedWithNext, false,
                   char_matches([rep](char32_t c) { return c == rep; }));
    }
  }

 private:
  std::string replacement_;
  char32_t rep_cp_;
  Prepend prepend_;
  bool split_;
};

MetaspacePreTokenizer::Prepend parse_prepend(const json& j) {
  if (j.contains("prepend_scheme")) {
    std::string s = str_field(j, "prepend_scheme");
    if (s == "always") return MetaspacePreTokenizer::Prepend::Always;
    if (s == "first") return MetaspacePreTokenizer::Prepend::First;
    if (s == "never") return MetaspacePreTokenizer::Prepend::Never;
    bad("unknown prepend_scheme '" + s + "'");
  }
  return bool_field(j, "add_prefix_space", true) ? MetaspacePreTokenizer::Prepend::Always
                                                 : MetaspacePreTokenizer::Prepend::Never;
}

// -------------------------------------------------------------------------
// Decoders

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }
  bool has_byte_fallback() const override {
    return std::any_of(steps_.begin(), steps_.end(),
                       [](const auto& s) { return s->has_byte_fallback(); });
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      size_t mark = bytes.size();
      bool all_mapped = true;
      for (size_t i = 0; i < t.size();) {
        int b = char_to_byte(utf8::next(t, i));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      // A token with characters outside the table (an added token such as
      // "<｜User｜>") contributes its own UTF-8 bytes, as HF does.
      if (!all_mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8::lossy(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = replace_all(t, pattern_, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      // A run of byte tokens that is not valid UTF-8 gives one U+FFFD per byte.
      if (utf8::is_valid(pending)) out.push_back(pending);
      else out.insert(out.end(), pending.size(), std::string(utf8::kReplacement));
      pending.clear();
    };
    for (std::string& t : tokens) {
      int hi = -1, lo = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        hi = hex_digit(t[3]);
        lo = hex_digit(t[4]);
      }
      if (hi >= 0 && lo >= 0) {
        pending += static_cast<char>(hi * 16 + lo);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  bool has_byte_fallback() const override { return true; }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      size_t n = content_.size();
      size_t begin = 0, end = t.size();
      for (size_t k = 0; k < start_ && begin + n <= end && t.compare(begin, n, content_) == 0; ++k)
        begin += n;
      for (size_t k = 0; k < stop_ && end >= begin + n && t.compare(end - n, n, content_) == 0; ++k)
        end -= n;
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string_view t = tokens[i];
      std::string out;
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          pos += replacement_.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string repl = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      for (size_t pos = 0; pos < t.size();) {
        if (!suffix_.empty() && t.compare(pos, suffix_.size(), suffix_) == 0) {
          out += repl;
          pos += suffix_.size();
        } else {
          out += t[pos++];
        }
      }
      t = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

// -------------------------------------------------------------------------
// Post-processors

class TemplateProcessor : public PostProcessor {
 public:
  // Each item is either a list of special ids or the sequence (empty + flag).
  struct Item {
    bool sequence;
    std::vector<int> ids;
  };
  explicit TemplateProcessor(std::vector<Item> items) : items_(std::move(items)) {}
  std::vector<int> process(std::vector<int> ids) const override {
    std::vector<int> out;
    out.reserve(ids.size() + 4);
    for (const Item& item : items_) {
      if (item.sequence) out.insert(out.end(), ids.begin(), ids.end());
      else out.insert(out.end(), item.ids.begin(), item.ids.end());
    }
    return out;
  }

 private:
  std::vector<Item> items_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  std::vector<int> process(std::vector<int> ids) const override {
    for (const auto& step : steps_) ids = step->process(std::move(ids));
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

class IdentityProcessor : public PostProcessor {
 public:
  std::vector<int> process(std::vector<int> ids) const override { return ids; }
};

std::unique_ptr<PostProcessor> make_template(const json& j,
                                             const std::function<int(const std::string&)>& id_of) {
  const json& single = array_field(j, "single");
  const json* specials = j.contains("special_tokens") ? &j["special_tokens"] : nullptr;
  std::vector<TemplateProcessor::Item> items;
  for (const json& piece : single) {
    if (piece.is_object() && piece.contains("Sequence")) {
      items.push_back({true, {}});
    } else if (piece.is_object() && piece.contains("SpecialToken")) {
      std::string name = str_field(piece["SpecialToken"], "id");
      TemplateProcessor::Item item{false, {}};
      if (specials && specials->is_object() && specials->contains(name)) {
        const json& ids = array_field((*specials)[name], "ids");
        for (const json& id : ids) {
          if (!id.is_number_integer()) bad("special token ids must be integers");
          item.ids.push_back(id.get<int>());
        }
      } else {
        int id = id_of(name);
        if (id < 0) bad("template special token '" + name + "' is not in the vocabulary");
        item.ids.push_back(id);
      }
      items.push_back(std::move(item));
    } else {
      bad("template items must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::make_unique<TemplateProcessor>(std::move(items));
}

// BertProcessing / RobertaProcessing: [cls] A [sep], with "cls"/"sep" as [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const json& j) {
  auto id_at = [&](const char* key) {
    const json& v = array_field(j, key);
    if (v.size() != 2 || !v[1].is_number_integer()) bad("'" + std::string(key) + "' must be [token, id]");
    return v[1].get<int>();
  };
  std::vector<TemplateProcessor::Item> items{{false, {id_at("cls")}}, {true, {}}, {false, {id_at("sep")}}};
  return std::make_unique<TemplateProcessor>(std::move(items));
}

}  // namespace

// ---------------------------------------------------------------------------
// Builders

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const json& s : array_field(j, "normalizers"))
      if (auto n = make_normalizer(s)) steps.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "NFC") return std::make_unique<FunctionNormalizer>(&normalize_nfc);
  if (type == "NFD") return std::make_unique<FunctionNormalizer>(&normalize_nfd);
  if (type == "NFKC") return std::make_unique<FunctionNormalizer>(&normalize_nfkc);
  if (type == "NFKD") return std::make_unique<FunctionNormalizer>(&normalize_nfkd);
  if (type == "Lowercase") return std::make_unique<FunctionNormalizer>(&to_lower);
  if (type == "StripAccents") return std::make_unique<FunctionNormalizer>(&strip_accents);
  if (type == "ByteLevel") return std::make_unique<FunctionNormalizer>(&byte_level_chars);
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(str_field(j, "prepend"));
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(Pattern(field(j, "pattern")),
                                               str_field(j, "content"));
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(bool_field(j, "strip_left", true),
                                             bool_field(j, "strip_right", true));
  bad("unsupported normalizer type '" + type + "'");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const json& s : array_field(j, "pretokenizers"))
      if (auto p = make_pre_tokenizer(s)) steps.push_back(std::move(p));
    return make_sequence(std::move(steps));
  }
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(Pattern(field(j, "pattern")),
                                               parse_behavior(str_field(j, "behavior")),
                                               bool_field(j, "invert", false));
  if (type == "ByteLevel")
    return make_byte_level(bool_field(j, "add_prefix_space", true),
                           bool_field(j, "use_regex", true));
  if (type == "Digits")
    return std::make_unique<PredicatePreTokenizer>(
        &is_numeric,
        bool_field(j, "individual_digits", false) ? Behavior::Isolated : Behavior::Contiguous);
  if (type == "Punctuation") {
    Behavior b = j.contains("behavior") ? parse_behavior(str_field(j, "behavior"))
                                        : Behavior::Isolated;
    return std::make_unique<PredicatePreTokenizer>(&is_punctuation, b);
  }
  if (type == "WhitespaceSplit")
    return std::make_unique<PredicatePreTokenizer>(&is_whitespace, Behavior::Removed);
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(std::make_unique<PredicatePreTokenizer>(&is_whitespace, Behavior::Removed));
    steps.push_back(std::make_unique<PredicatePreTokenizer>(&is_punctuation, Behavior::Isolated));
    return make_sequence(std::move(steps));
  }
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>(
        Pattern(std::make_unique<Regex>("\\w+|[^\\w\\s]+")), Behavior::Removed, true);
  if (type == "Metaspace")
    return std::make_unique<MetaspacePreTokenizer>(char_field(j, "replacement"), parse_prepend(j),
                                                   bool_field(j, "split", true));
  bad("unsupported pre-tokenizer type '" + type + "'");
}

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const json& s : array_field(j, "decoders"))
      if (auto d = make_decoder(s)) steps.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return make_byte_level_decoder();
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(Pattern(field(j, "pattern")), str_field(j, "content"));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(char_field(j, "content"), uint_field(j, "start"),
                                          uint_field(j, "stop"));
  if (type == "Metaspace")
    return std::make_unique<MetaspaceDecoder>(
        char_field(j, "replacement"),
        parse_prepend(j) != MetaspacePreTokenizer::Prepend::Never);
  if (type == "BPEDecoder")
    return std::make_unique<BpeSuffixDecoder>(j.contains("suffix") ? str_field(j, "suffix")
                                                                    : "</w>");
  bad("unsupported decoder type '" + type + "'");
}

std::unique_ptr<PostProcessor> make_post_processor(
    const json& j, const std::function<int(const std::string&)>& token_id) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (const json& s : array_field(j, "processors"))
      if (auto p = make_post_processor(s, token_id)) steps.push_back(std::move(p));
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  // ByteLevel only trims offsets, which lmlab does not report.
  if (type == "ByteLevel") return std::make_unique<IdentityProcessor>();
  if (type == "TemplateProcessing") return make_template(j, token_id);
  if (type == "BertProcessing" || type == "RobertaProcessing") return make_cls_sep(j);
  bad("unsupported post-processor type '" + type + "'");
}

std::unique_ptr<PreTokenizer> make_regex_split(const std::string& pattern) {
  return std::make_unique<SplitPreTokenizer>(Pattern(std::make_unique<Regex>(pattern)),
                                             Behavior::Isolated, false);
}

std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizer> make_sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) {
  return std::make_unique<SequencePreTokenizer>(std::move(steps));
}

std::unique_ptr<Decoder> make_byte_level_decoder() { return std::make_unique<ByteLevelDecoder>(); }

std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_leading_space) {
  std::vector<std::unique_ptr<Decoder>> steps;
  steps.push_back(std::make_unique<ReplaceDecoder>(Pattern(json{{"String", kMetaspace}}), " "));
  steps.push_back(std::make_unique<ByteFallbackDecoder>());
  steps.push_back(std::make_unique<FuseDecoder>());
  if (strip_leading_space) steps.push_back(std::make_unique<StripDecoder>(" ", 1, 0));
  return std::make_unique<SequenceDecoder>(std::move(steps));
}

std::unique_ptr<Normalizer> make_sentencepiece_normalizer(bool add_space_prefix) {
  std::vector<std::unique_ptr<Normalizer>> steps;
  if (add_space_prefix) steps.push_back(std::make_unique<PrependNormalizer>(kMetaspace));
  steps.push_back(
      std::make_unique<ReplaceNormalizer>(Pattern(json{{"String", " "}}), kMetaspace));
  return std::make_unique<SequenceNormalizer>(std::move(steps));
}

std::unique_ptr<PostProcessor> make_bos_eos(std::optional<int> bos, std::optional<int> eos) {
  std::vector<TemplateProcessor::Item> items;
  if (bos) items.push_back({false, {*bos}});
  items.push_back({true, {}});
  if (eos) items.push_back({false, {*eos}});
  return std::make_unique<TemplateProcessor>(std::move(items));
}

}  // namespace lmlab::detail
