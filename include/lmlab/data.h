// Fine-tuning data: JSONL records in the formats mlx_lm.lora accepts, turned
// into token sequences with the model's chat template, and the preflight report
// of `lmlab data`. MLX-free, so frontends may include it.
//
// Formats (chosen by the first record, as mlx-lm does; keys configurable):
//   text         {"text": "..."}                         encoded, EOS appended if missing
//   completions  {"prompt": "...", "completion": "..."}  a user/assistant chat (optional "tools")
//   chat         {"messages": [...]}                     the template over all messages (optional "tools")
// With prompt masking only the last message counts in the loss: the offset is
// the token count of the template applied to the messages before it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/chat.h"
#include "lmlab/tokenizer.h"

namespace lmlab::train {

enum class DataFormat { text, completions, chat };
const char* format_name(DataFormat f);

struct DataOptions {
  std::string path{};  // folder with train/valid/test.jsonl, or one .jsonl file to split
  // One file only: shares of the records held out for validation and test,
  // drawn with `seed` (the rest trains).
  double valid_fraction = 0.1;
  double test_fraction = 0.0;
  uint64_t seed = 0;
  bool mask_prompt = false;
  int max_seq_length = 2048;  // for the report's truncation count
  std::string prompt_feature = "prompt";
  std::string completion_feature = "completion";
  std::string chat_feature = "messages";
  std::string text_feature = "text";
};

// One tokenized record.
struct Example {
  std::vector<int> tokens{};
  int offset = 0;  // prompt tokens: outside the loss with mask_prompt (0 for text records)
  int line = 0;    // 1-based line in its file
  int keys = 0;    // top-level fields of the record (mlx-lm orders batches by this count)
};

struct DataIssue {
  std::string file{};
  int line = 0;
  std::string reason{};
  std::string where() const { return file + ":" + std::to_string(line); }
};

struct Split {
  std::string name{};  // "train", "valid", "test"
  std::string file{};  // the file it came from ("" when absent)
  DataFormat format = DataFormat::text;
  std::vector<Example> examples{};
  std::vector<DataIssue> issues{};  // malformed records, skipped
  int blank_lines = 0;            // skipped
};

struct Dataset {
  Split train{}, valid{}, test{};
};

// Reads, validates and tokenizes every split. `chat_template` may be null for
// text data. With strict, the first malformed record throws
// std::invalid_argument "file:line: reason"; otherwise each is recorded in its
// split's issues and skipped. Missing files give empty splits; a path that does
// not exist, or a folder without train.jsonl, valid.jsonl or test.jsonl, throws.
Dataset load_dataset(const DataOptions& o, const Tokenizer& tok, const ChatTemplate* chat_template,
                     bool strict);

// The token sequence and prompt offset of one parsed record in `format`
// (throws std::invalid_argument naming the field that is wrong).
Example encode_record(const nlohmann::ordered_json& record, DataFormat format, const DataOptions& o,
                      const Tokenizer& tok, const ChatTemplate* chat_template);

// ---------------------------------------------------------------- preflight

struct LengthStats {
  int min = 0, max = 0, p50 = 0, p95 = 0;
  double mean = 0;
};

struct SplitReport {
  std::string name{}, file{}, format{};
  int records = 0;       // usable records
  int malformed = 0;
  int blank_lines = 0;
  LengthStats tokens{};    // sequence lengths
  int truncated = 0;     // records longer than max_seq_length
  int64_t total_tokens = 0;
  int64_t loss_tokens = 0;  // targets that count in the loss (after masking and truncation)
  int duplicates = 0;       // records also in an earlier split (train, then valid)
  std::vector<DataIssue> issues{};
};

struct DataReport {
  std::vector<SplitReport> splits{};
  int max_seq_length = 0;
  bool mask_prompt = false;
  std::vector<std::string> warnings{};  // what will go wrong in training, with the fix
  nlohmann::json to_json() const;
};

// batch_size: for the warning that a split has fewer records than one batch.
DataReport data_report(const Dataset& d, const DataOptions& o, int batch_size = 4);

// Targets of one example that count in the loss: the tokens at positions
// p ≥ 1 (and p ≥ offset when masking) of the sequence cut to max_seq_length.
int64_t loss_targets(const Example& e, int max_seq_length, bool mask_prompt);

}  // namespace lmlab::train
