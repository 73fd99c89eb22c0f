// Fine-tuning datasets, after mlx-lm's tuner/datasets.py (TextDataset,
// CompletionsDataset, ChatDataset, create_dataset, load_local_dataset), with
// every record validated and located (file:line) instead of failing later.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "lmlab/data.h"
#include "lmlab/messages.h"
#include "train/numpy_random.h"

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace lmlab::train {

const char* format_name(DataFormat f) {
  switch (f) {
    case DataFormat::text: return "text";
    case DataFormat::completions: return "completions";
    case DataFormat::chat: return "chat";
  }
  return "?";
}

namespace {

struct Line {
  int number = 0;
  std::string text{};
};

std::vector<Line> read_lines(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw std::runtime_error(fmt::format("[data] cannot read {}", file.string()));
  std::vector<Line> lines;
  std::string s;
  for (int n = 1; std::getline(f, s); ++n) {
    if (!s.empty() && s.back() == '\r') s.pop_back();
    lines.push_back({n, std::move(s)});
  }
  return lines;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

const std::string& string_field(const ojson& r, const std::string& key) {
  auto it = r.find(key);
  if (it == r.end()) throw std::invalid_argument(fmt::format("missing field '{}'", key));
  if (!it->is_string()) throw std::invalid_argument(fmt::format("field '{}' is not a string", key));
  return it->get_ref<const std::string&>();
}

ojson tools_of(const ojson& r) {
  auto it = r.find("tools");
  if (it == r.end() || it->is_null()) return nullptr;
  if (!it->is_array()) throw std::invalid_argument("field 'tools' is not a list");
  return *it;
}

std::vector<int> render(const ojson& messages, const ojson& tools, bool add_generation_prompt,
                        const Tokenizer& tok, const ChatTemplate& tmpl) {
  Conversation c = make_conversation(messages, tools);
  try {
    return render_conversation(tok, tmpl, c, add_generation_prompt).ids;
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("the chat template rejects this record: {}", e.what()));
  }
}

const ChatTemplate& need_template(const ChatTemplate* t, DataFormat f) {
  if (!t)
    throw std::invalid_argument(fmt::format(
        "{} records need the model's chat template and this tokenizer has none; use text records", format_name(f)));
  return *t;
}

// The format of a record by its keys, as mlx-lm's create_dataset decides.
std::optional<DataFormat> detect(const ojson& r, const DataOptions& o) {
  if (!r.is_object()) return std::nullopt;
  if (r.contains(o.prompt_feature) && r.contains(o.completion_feature)) return DataFormat::completions;
  if (r.contains(o.chat_feature)) return DataFormat::chat;
  if (r.contains(o.text_feature)) return DataFormat::text;
  return std::nullopt;
}

std::string expected_keys(const DataOptions& o) {
  return fmt::format("'{}' + '{}', '{}' or '{}'", o.prompt_feature, o.completion_feature, o.chat_feature,
                     o.text_feature);
}

struct ParsedFile {
  std::string file{};
  std::vector<std::pair<int, ojson>> records{};  // (line, record)
  std::vector<DataIssue> issues{};
  int blank_lines = 0;
  std::optional<DataFormat> format{};
};

ParsedFile parse_file(const fs::path& path, const DataOptions& o, bool strict) {
  ParsedFile p{.file = path.string()};
  auto fail = [&](int line, std::string reason) {
    DataIssue issue{p.file, line, std::move(reason)};
    if (strict)
      throw std::invalid_argument(fmt::format("[data] {}: {} (lmlab data lists every problem)", issue.where(),
                                              issue.reason));
    p.issues.push_back(std::move(issue));
  };
  for (Line& l : read_lines(path)) {
    if (blank(l.text)) {
      ++p.blank_lines;
      continue;
    }
    ojson r;
    try {
      r = ojson::parse(l.text);
    } catch (const nlohmann::json::exception& e) {
      std::string what = e.what();
      auto colon = what.find(": ");
      fail(l.number, "bad JSON: " + (colon == std::string::npos ? what : what.substr(colon + 2)));
      continue;
    }
    if (!r.is_object()) {
      fail(l.number, fmt::format("a record must be a JSON object, not {}", r.type_name()));
      continue;
    }
    if (!p.format) {
      p.format = detect(r, o);
      if (!p.format) {
        fail(l.number, fmt::format("no known format: expected the fields {}", expected_keys(o)));
        continue;
      }
    }
    p.records.emplace_back(l.number, std::move(r));
  }
  return p;
}

Split tokenize(std::string name, ParsedFile&& p, DataFormat format, const DataOptions& o, const Tokenizer& tok,
               const ChatTemplate* tmpl, bool strict) {
  Split s{.name = std::move(name), .file = p.file, .format = format};
  s.issues = std::move(p.issues);
  s.blank_lines = p.blank_lines;
  for (auto& [line, r] : p.records) {
    try {
      Example e = encode_record(r, format, o, tok, tmpl);
      e.line = line;
      s.examples.push_back(std::move(e));
    } catch (const std::invalid_argument& e) {
      DataIssue issue{p.file, line, e.what()};
      if (strict)
        throw std::invalid_argument(fmt::format("[data] {}: {} (the file's format is {}, set by its first record)",
                                                issue.where(), issue.reason, format_name(format)));
      s.issues.push_back(std::move(issue));
    }
  }
  std::sort(s.issues.begin(), s.issues.end(), [](const DataIssue& a, const DataIssue& b) { return a.line < b.line; });
  return s;
}

// Splits the records of one file by a seeded permutation; each part keeps file order.
std::vector<ParsedFile> split_file(ParsedFile&& all, const DataOptions& o) {
  if (o.valid_fraction < 0 || o.test_fraction < 0 || o.valid_fraction + o.test_fraction >= 1)
    throw std::invalid_argument(fmt::format(
        "[data] the held-out shares must be ≥ 0 and leave some training data (valid {}, test {})", o.valid_fraction,
        o.test_fraction));
  const int n = static_cast<int>(all.records.size());
  const int n_valid = static_cast<int>(n * o.valid_fraction + 0.5);
  const int n_test = static_cast<int>(n * o.test_fraction + 0.5);
  std::vector<int> part(n, 0);
  NumpyRandom rng(static_cast<uint32_t>(o.seed));
  std::vector<int> perm = rng.permutation(n);
  for (int i = 0; i < n_valid + n_test && i < n; ++i) part[perm[i]] = i < n_valid ? 1 : 2;
  std::vector<ParsedFile> parts(3);
  for (auto& p : parts) {
    p.file = all.file;
    p.format = all.format;
  }
  for (int i = 0; i < n; ++i) parts[part[i]].records.push_back(std::move(all.records[i]));
  parts[0].issues = std::move(all.issues);
  parts[0].blank_lines = all.blank_lines;
  return parts;
}

}  // namespace

Example encode_record(const ojson& r, DataFormat format, const DataOptions& o, const Tokenizer& tok,
                      const ChatTemplate* tmpl) {
  Example e;
  e.keys = static_cast<int>(r.size());
  if (format == DataFormat::text) {
    const std::string& text = string_field(r, o.text_feature);
    if (text.empty()) throw std::invalid_argument(fmt::format("field '{}' is empty", o.text_feature));
    e.tokens = tok.encode(text, /*add_special_tokens=*/true);
    auto eos = tok.token_to_id(tok.eos_token());
    if (!eos) throw std::invalid_argument("the tokenizer has no EOS token to end text records");
    if (e.tokens.empty() || e.tokens.back() != *eos) e.tokens.push_back(*eos);
    return e;
  }
  const ChatTemplate& t = need_template(tmpl, format);
  ojson tools = tools_of(r);
  ojson messages;
  if (format == DataFormat::completions) {
    messages = ojson::array({ojson{{"role", "user"}, {"content", string_field(r, o.prompt_feature)}},
                             ojson{{"role", "assistant"}, {"content", string_field(r, o.completion_feature)}}});
  } else {
    auto it = r.find(o.chat_feature);
    if (it == r.end()) throw std::invalid_argument(fmt::format("missing field '{}'", o.chat_feature));
    messages = *it;
    if (!messages.is_array() || messages.empty())
      throw std::invalid_argument(fmt::format("field '{}' is not a non-empty list", o.chat_feature));
  }
  e.tokens = render(messages, tools, /*add_generation_prompt=*/false, tok, t);
  // The prompt is every message but the last, ending with the generation prompt
  // when the last message is the assistant's (mlx-lm's offset).
  ojson prompt = messages;
  prompt.erase(prompt.size() - 1);
  const bool last_is_assistant = messages.back().value("role", "") == "assistant";
  try {
    e.offset = static_cast<int>(render(prompt, tools, last_is_assistant, tok, t).size());
  } catch (const std::invalid_argument&) {
    if (o.mask_prompt) throw;
    e.offset = 0;  // only the report reads it without masking
  }
  if (o.mask_prompt && e.offset >= static_cast<int>(e.tokens.size()))
    throw std::invalid_argument("the last message adds no tokens after the prompt: nothing to train on");
  return e;
}

Dataset load_dataset(const DataOptions& o, const Tokenizer& tok, const ChatTemplate* tmpl, bool strict) {
  const fs::path path = o.path;
  if (!fs::exists(path)) throw std::invalid_argument(fmt::format("[data] {} does not exist", path.string()));
  std::vector<ParsedFile> parsed;
  const char* names[3] = {"train", "valid", "test"};
  if (fs::is_directory(path)) {
    bool any = false;
    for (const char* n : names) {
      fs::path f = path / (std::string(n) + ".jsonl");
      any = any || fs::exists(f);
      parsed.push_back(fs::exists(f) ? parse_file(f, o, strict) : ParsedFile{});
    }
    if (!any)
      throw std::invalid_argument(
          fmt::format("[data] {} holds none of train.jsonl, valid.jsonl, test.jsonl", path.string()));
  } else {
    parsed = split_file(parse_file(path, o, strict), o);
  }
  // One format for all splits: the first record decides (train's, else valid's, test's).
  std::optional<DataFormat> format;
  for (const auto& p : parsed)
    if (!format) format = p.format;
  Dataset d;
  Split* splits[3] = {&d.train, &d.valid, &d.test};
  for (int i = 0; i < 3; ++i) {
    if (parsed[i].format && format && *parsed[i].format != *format)
      throw std::invalid_argument(fmt::format("[data] {} holds {} records but {} holds {}", parsed[i].file,
                                              format_name(*parsed[i].format), parsed[0].file,
                                              format_name(*format)));
    *splits[i] = tokenize(names[i], std::move(parsed[i]), format.value_or(DataFormat::text), o, tok, tmpl, strict);
  }
  if (o.mask_prompt && format == DataFormat::text)
    throw std::invalid_argument("[data] prompt masking needs prompt/completion or chat records, not text");
  return d;
}

int64_t loss_targets(const Example& e, int max_seq_length, bool mask_prompt) {
  const int len = std::min<int>(static_cast<int>(e.tokens.size()), max_seq_length);
  return std::max(0, len - std::max(mask_prompt ? e.offset : 0, 1));
}

}  // namespace lmlab::train
