// libFuzzer target for the safetensors header check that runs before MLX
// reads a file: the input is a whole .safetensors file. It must be accepted
// or throw std::runtime_error (lmlab::Unsupported included); an accepted
// header must describe only bytes inside the file, without overlaps.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "lmlab/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lmlab::io::SafetensorsHeader h;
  try {
    h = lmlab::io::parse_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const std::runtime_error&) {
    return 0;
  }
  const uint64_t data_size = size - 8 - h.header_bytes;
  for (const auto& t : h.tensors)
    if (t.begin > t.end || t.end > data_size) __builtin_trap();
  return 0;
}
