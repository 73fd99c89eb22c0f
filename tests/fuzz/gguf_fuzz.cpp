// libFuzzer target for the GGUF reader: the input is a whole GGUF file. The
// header, metadata and tensor table must parse or throw std::runtime_error
// (lmlab::Unsupported included); parsed metadata then goes through the GGUF
// vocabulary loader, which must build a tokenizer or throw
// std::invalid_argument / lmlab::Unsupported, and a built one must encode and
// decode. Anything else (a crash, a sanitizer report, another exception, an
// allocation past -malloc_limit_mb) is a bug.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "lmlab/io.h"
#include "lmlab/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lmlab::io::GgufFile g;
  try {
    g = lmlab::io::parse_gguf(data, size, "fuzz.gguf");
  } catch (const std::runtime_error&) {
    return 0;  // rejected cleanly
  }
  for (const auto& t : g.tensors)  // the table promises only bytes that exist
    if (t.nbytes && (g.data_offset > size || t.offset > size - g.data_offset ||
                     t.nbytes > size - g.data_offset - t.offset))
      __builtin_trap();
  try {
    lmlab::Tokenizer tok = lmlab::Tokenizer::from_gguf(g.meta);
    auto ids = tok.encode("Hello, world! 123 \xff", true);
    tok.decode(ids, false);
    lmlab::gguf_tokenizer_files(g.meta);
  } catch (const std::invalid_argument&) {
  } catch (const lmlab::Unsupported&) {
  }
  return 0;
}
