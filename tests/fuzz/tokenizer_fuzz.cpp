// libFuzzer target for the tokenizer.json loader: any input must either load
// or throw std::invalid_argument; a loaded tokenizer must then encode, decode
// and stream without crashing. Build: cmake -DLMLAB_BUILD_FUZZERS=ON with
// CXX=clang++-14, then ./tokenizer_fuzz [corpus dir].
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "lmlab/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    lmlab::Tokenizer tok = lmlab::Tokenizer::from_json(text);
    // Feed the input itself (often invalid UTF-8) through the pipeline too.
    for (std::string_view s : {std::string_view("Hello, world! 123 <s>\xff\n"), text.substr(0, 256)}) {
      auto ids = tok.encode(s, true);
      tok.decode(ids, false);
      lmlab::StreamingDetokenizer stream(tok, true);
      for (int id : ids) stream.add(id);
      stream.finish();
    }
  } catch (const std::invalid_argument&) {
    // Rejected cleanly: the expected outcome for malformed files.
  }
  return 0;
}
