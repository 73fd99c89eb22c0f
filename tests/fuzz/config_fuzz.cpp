// libFuzzer target for config.json: the fields every family shares
// (ModelConfig::from_json, with its range checks) and the quantization block.
// Any JSON must be accepted or refused with std::invalid_argument; an
// accepted config has sizes in range (the checks the model builders rely on).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "lmlab/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    lmlab::ModelConfig c = lmlab::ModelConfig::from_json(j);
    if (c.hidden_size < 1 || c.num_hidden_layers < 1 || c.head_dim < 1 || c.vocab_size < 1 ||
        c.num_key_value_heads < 1 || c.num_attention_heads % c.num_key_value_heads != 0)
      __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  std::vector<std::string> prefixes = {"model.layers.0.mlp.down_proj", "lm_head"};
  if (j.is_object())
    for (const char* block : {"quantization", "quantization_config"})
      if (auto it = j.find(block); it != j.end() && it->is_object())
        for (const auto& [k, v] : it->items()) prefixes.push_back(k);
  try {
    for (const auto& [p, s] : lmlab::io::quantization_from_config(j, prefixes, "config.json"))
      if (s.bits < 2 || s.bits > 8 || s.group_size < 16) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
