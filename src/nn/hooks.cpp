// nn::Hooks: opt-in capture and editing of named activations.
#include <algorithm>

#include "lmlab/nn.h"

namespace lmlab::nn {

bool Hooks::wants(int layer) const {
  return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}

void Hooks::capture(const std::string& name, const array& value) {
  captured.insert_or_assign(name, value);
}

array Hooks::apply(const std::string& name, const array& value) const {
  return edit ? edit(name, value) : value;
}

}  // namespace lmlab::nn
