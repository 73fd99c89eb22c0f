// Encoding and decoding with a loaded pipeline, in HF `tokenizers` order:
// added tokens are cut out of the raw text, the rest is normalized (then
// normalized added tokens are cut out), pre-tokenized and run through BPE;
// BOS/EOS come from the post-processor. Also the public Tokenizer and
// StreamingDetokenizer methods.
#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "tokenizer/impl.h"
#include "tokenizer/unicode.h"

namespace lmlab {

namespace {

struct Segment {
  size_t start, end;
  int added = -1;  // index into TokenizerImpl::added, or -1 for plain text
};

bool is_word_char(char32_t c) { return c == '_' || detail::is_alphanumeric(c); }

char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  return utf8::next(s, i);
}

// Cuts `s` at the added tokens found by `matcher`, honouring single_word,
// lstrip and rstrip the way HF's AddedVocabulary::find_matches does.
std::vector<Segment> split_added(std::string_view s, const detail::AddedMatcher& matcher,
                                 const std::vector<detail::AddedToken>& added) {
  std::vector<Segment> out;
  size_t done = 0, pos = 0, start, end;
  int index;
  while (pos < s.size() && matcher.find(s, pos, start, end, index)) {
    const detail::AddedToken& tok = added[index];
    pos = end;
    if (tok.single_word) {
      size_t i = end;
      bool word_before = start > 0 && is_word_char(last_char(s.substr(0, start)));
      bool word_after = end < s.size() && is_word_char(utf8::next(s, i));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      while (start > done) {
        size_t prev = start - 1;
        while (prev > done && (static_cast<unsigned char>(s[prev]) & 0xC0) == 0x80) --prev;
        size_t i = prev;
        if (!detail::is_whitespace(utf8::next(s, i))) break;
        start = prev;
      }
    }
    if (tok.rstrip) {
      while (end < s.size()) {
        size_t i = end;
        if (!detail::is_whitespace(utf8::next(s, i))) break;
        end = i;
      }
      pos = end;
    }
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, end, index});
    done = end;
  }
  if (done < s.size()) out.push_back({done, s.size(), -1});
  return out;
}

}  // namespace

void TokenizerImpl::finish() {
  int max_id = -1;
  for (const auto& [tok, id] : model.vocab()) max_id = std::max(max_id, id);
  for (const auto& t : added) max_id = std::max(max_id, t.id);
  detail::check_id_range(max_id, model.vocab().size() + added.size(), "added token");
  id_to_token.assign(static_cast<size_t>(max_id + 1), nullptr);
  special.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : model.vocab()) id_to_token[id] = &tok;
  for (size_t i = 0; i < added.size(); ++i) {
    const detail::AddedToken& t = added[i];
    if (t.id < 0) throw std::invalid_argument("added token '" + t.content + "' has a negative id");
    id_to_token[t.id] = &t.content;
    special[t.id] = special[t.id] || t.special;
    added_by_id[t.id] = i;
    added_by_content.emplace(t.content, t.id);
    if (!t.normalized) {
      raw_matcher.add(t.content, static_cast<int>(i));
    } else {
      normalized_matcher.add(normalizer ? normalizer->normalize(t.content) : t.content,
                             static_cast<int>(i));
    }
  }
}

std::optional<int> TokenizerImpl::find_token(std::string_view token) const {
  if (auto it = added_by_content.find(token); it != added_by_content.end()) return it->second;
  if (auto it = model.vocab().find(token); it != model.vocab().end()) return it->second;
  return std::nullopt;
}

void TokenizerImpl::encode_segment(const std::string& text, bool at_start,
                                   std::vector<int>& out) const {
  std::vector<detail::Piece> pieces{{text, at_start}};
  if (pre_tokenizer) pre_tokenizer->split(pieces);
  for (const detail::Piece& p : pieces) model.tokenize(p.text, out);
}

std::vector<int> TokenizerImpl::encode(std::string_view input, bool add_special_tokens) const {
  // Python strings cannot hold invalid UTF-8, so HF never sees it: we replace
  // each bad sequence with U+FFFD, as bytes.decode(errors="replace") would.
  std::string text = utf8::lossy(input);
  std::vector<int> ids;
  for (const Segment& seg : split_added(text, raw_matcher, added)) {
    if (seg.added >= 0) {
      ids.push_back(added[seg.added].id);
      continue;
    }
    std::string part = text.substr(seg.start, seg.end - seg.start);
    if (normalizer) part = normalizer->normalize(std::move(part));
    bool at_start = seg.start == 0;
    for (const Segment& sub : split_added(part, normalized_matcher, added)) {
      if (sub.added >= 0) ids.push_back(added[sub.added].id);
      else encode_segment(part.substr(sub.start, sub.end - sub.start), at_start && sub.start == 0, ids);
    }
  }
  if (add_special_tokens && post_processor) ids = post_processor->process(std::move(ids));
  return ids;
}

std::string TokenizerImpl::decode(std::span<const int> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    // Unknown ids are skipped, as HF does.
    if (id < 0 || static_cast<size_t>(id) >= id_to_token.size() || !id_to_token[id]) continue;
    if (skip_special_tokens && special[id]) continue;
    tokens.push_back(*id_to_token[id]);
  }
  std::string out;
  if (decoder) {
    decoder->decode_chain(tokens);
    for (const std::string& t : tokens) out += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tokenizer

std::vector<int> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_->encode(text, add_special_tokens);
}

std::string Tokenizer::decode(std::span<const int> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_to_token.size()); }

const std::string& Tokenizer::id_to_token(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token.size() || !impl_->id_to_token[id])
    throw std::out_of_range("[tokenizer] no token with id " + std::to_string(id));
  return *impl_->id_to_token[id];
}

std::optional<int> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->find_token(token);
}

std::string Tokenizer::token_bytes(int id) const {
  const std::string& t = id_to_token(id);
  if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
    unsigned v = 0;
    if (std::sscanf(t.c_str() + 3, "%2x", &v) == 1) return std::string(1, static_cast<char>(v));
  }
  std::string bytes;
  for (size_t i = 0; i < t.size();) {
    int b = detail::char_to_byte(utf8::next(t, i));
    if (b < 0) return t;
    bytes += static_cast<char>(b);
  }
  return bytes;
}

bool Tokenizer::is_special(int id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

std::optional<int> Tokenizer::bos_id() const { return impl_->bos_id; }
const std::vector<int>& Tokenizer::eos_ids() const { return impl_->eos_ids; }
std::string Tokenizer::bos_token() const { return impl_->bos_token; }
std::string Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::model_type() const { return impl_->model_type; }

std::vector<std::string> Tokenizer::encode_pieces(std::string_view text,
                                                  bool add_special_tokens) const {
  std::vector<std::string> out;
  for (int id : encode(text, add_special_tokens)) out.push_back(id_to_token(id));
  return out;
}

std::vector<Tokenizer::AddedToken> Tokenizer::added_tokens() const {
  std::vector<AddedToken> out;
  for (const auto& t : impl_->added) out.push_back({t.content, t.id, t.special});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

// ---------------------------------------------------------------------------
// StreamingDetokenizer

StreamingDetokenizer::StreamingDetokenizer(Tokenizer tok, bool skip_special_tokens)
    : tok_(std::move(tok)), skip_special_(skip_special_tokens) {}

namespace {

bool is_byte_token(const std::string& t) {
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>';
}

bool ends_with_replacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, utf8::kReplacement) == 0;
}

}  // namespace

std::string StreamingDetokenizer::add(int id) {
  ids_.push_back(id);
  const TokenizerImpl& impl = *tok_.impl_;
  // A run of <0xXX> tokens decodes as a group, and one bad byte turns the
  // whole group into U+FFFDs: hold it until a regular token closes it.
  if (impl.decoder && impl.decoder->has_byte_fallback()) {
    for (size_t i = ids_.size(); i-- > emitted_;) {
      int last = ids_[i];
      if (skip_special_ && tok_.is_special(last)) continue;
      if (last >= 0 && static_cast<size_t>(last) < impl.id_to_token.size() &&
          impl.id_to_token[last] && is_byte_token(*impl.id_to_token[last]))
        return {};
      break;
    }
  }
  std::span<const int> window(ids_.data() + prefix_, ids_.size() - prefix_);
  std::string full = tok_.decode(window, skip_special_);
  // An unfinished character decodes as a trailing U+FFFD: wait for more ids.
  if (full.size() <= prefix_text_.size() || ends_with_replacement(full) ||
      full.compare(0, prefix_text_.size(), prefix_text_) != 0)
    return {};
  std::string piece = full.substr(prefix_text_.size());
  // The ids just emitted become the context of the next window: decoders
  // such as Strip look at the first token, so the window never starts cold.
  prefix_ = emitted_;
  emitted_ = ids_.size();
  prefix_text_ = tok_.decode(std::span<const int>(ids_.data() + prefix_, emitted_ - prefix_),
                             skip_special_);
  text_ += piece;
  return piece;
}

std::string StreamingDetokenizer::finish() {
  std::string all = tok_.decode(ids_, skip_special_);
  std::string piece;
  if (all.size() >= text_.size() && all.compare(0, text_.size(), text_) == 0)
    piece = all.substr(text_.size());
  text_ += piece;
  prefix_ = emitted_ = ids_.size();
  prefix_text_.clear();
  return piece;
}

}  // namespace lmlab
