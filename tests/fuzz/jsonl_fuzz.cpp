// libFuzzer target for fine-tuning data (lmlab lora, lmlab data): the input is
// one JSONL file, read by train::load_dataset as a single file split into
// train/valid/test, leniently (malformed records become issues) and strictly
// (the first one throws std::invalid_argument "file:line: reason"). Records are
// tokenized with a byte-level BPE over all 256 bytes (every string encodes)
// and chat records rendered with a ChatML template. Any other exception, a
// crash, a sanitizer report or a hang is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "lmlab/data.h"

namespace {

const char* kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n'}}{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the
// others for the code points from U+0100 up.
std::string byte_char(int b) {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string byte_level_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["<|im_end|>"] = 256;
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 256}, {"content", "<|im_end|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", false}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  return j.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lmlab::Tokenizer tok =
      lmlab::Tokenizer::from_json(byte_level_tokenizer(), R"({"eos_token": "<|im_end|>"})");
  static const lmlab::ChatTemplate tpl(kChatML);
  static const std::string path = [] {
    static std::string p = "/tmp/lmlab-jsonl-fuzz-" + std::to_string(getpid()) + ".jsonl";
    std::atexit([] { unlink(p.c_str()); });
    return p;
  }();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  lmlab::train::DataOptions o;
  o.path = path;
  o.valid_fraction = 0.25;
  o.test_fraction = 0.25;
  o.mask_prompt = size % 2 == 0;
  o.max_seq_length = 64;
  for (bool strict : {false, true}) {
    try {
      lmlab::train::Dataset d = lmlab::train::load_dataset(o, tok, &tpl, strict);
      for (const auto* s : {&d.train, &d.valid, &d.test})
        for (const auto& e : s->examples) lmlab::train::loss_targets(e, o.max_seq_length, o.mask_prompt);
    } catch (const std::invalid_argument&) {
      // Rejected cleanly, with the file and line.
    }
  }
  return 0;
}
