#include <atomic>
#include <stdexcept>

#include <fmt/format.h>

#include "lmlab/ggml.h"
#include "lmlab/weights.h"

namespace lmlab {

int64_t QuantSpec::unpacked_columns(int64_t stored) const {
  if (io::is_ggml_mode(mode)) {
    const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(io::ggml_mode_type(mode)));
    return stored / b.bytes * b.elements;
  }
  return stored * 32 / bits;
}

uint64_t Weights::next_stamp() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

void Weights::set(const std::string& name, const mlx::core::array& a) {
  touch();
  if (auto it = index_.find(name); it != index_.end()) {
    items_[it->second].second = a;
    return;
  }
  index_.emplace(name, items_.size());
  items_.emplace_back(name, a);
}

const mlx::core::array& Weights::at(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw std::invalid_argument(fmt::format("[weights] missing tensor '{}'", name));
  return items_[it->second].second;
}

const mlx::core::array* Weights::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void Weights::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  touch();
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
}

void Weights::rename(const std::string& from, const std::string& to) {
  auto it = index_.find(from);
  if (it == index_.end())
    throw std::invalid_argument(fmt::format("[weights] cannot rename missing tensor '{}'", from));
  if (index_.count(to))
    throw std::invalid_argument(fmt::format("[weights] cannot rename '{}': '{}' exists", from, to));
  touch();
  size_t i = it->second;
  index_.erase(it);
  items_[i].first = to;
  index_.emplace(to, i);
}

const QuantSpec* Weights::quant(const std::string& prefix) const {
  auto it = quant_.find(prefix);
  return it == quant_.end() ? nullptr : &it->second;
}

const AdapterSpec* Weights::adapter(const std::string& prefix) const {
  auto it = adapters_.find(prefix);
  return it == adapters_.end() ? nullptr : &it->second;
}

void Weights::clear_adapter(const std::string& prefix) {
  for (const char* leaf : {".lora_a", ".lora_b", ".m"}) erase(prefix + leaf);
  adapters_.erase(prefix);
  touch();
}

std::vector<mlx::core::array> Weights::arrays() const {
  std::vector<mlx::core::array> out;
  out.reserve(items_.size());
  for (auto& [_, a] : items_) out.push_back(a);
  return out;
}

size_t Weights::nbytes() const {
  size_t n = 0;
  for (auto& [_, a] : items_) n += a.nbytes();
  return n;
}

}  // namespace lmlab
