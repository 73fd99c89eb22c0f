// A minimal GGUF v3 writer for tests: metadata of every type and tensors given
// as raw block bytes, so loader tests build their own files (and broken ones).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace lmlab::test {

class GgufWriter {
 public:
  void add_u32(const std::string& k, uint32_t v) { kv(k, 4, &v, 4); }
  void add_i32(const std::string& k, int32_t v) { kv(k, 5, &v, 4); }
  void add_f32(const std::string& k, float v) { kv(k, 6, &v, 4); }
  void add_f64(const std::string& k, double v) { kv(k, 12, &v, 8); }
  void add_u64(const std::string& k, uint64_t v) { kv(k, 10, &v, 8); }
  void add_bool(const std::string& k, bool v) {
    uint8_t b = v;
    kv(k, 7, &b, 1);
  }
  void add_str(const std::string& k, const std::string& v) {
    key(k);
    put<uint32_t>(8);
    str(v);
    ++n_kv_;
  }
  void add_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k);
    put<uint32_t>(9);
    put<uint32_t>(8);
    put<uint64_t>(v.size());
    for (auto& s : v) str(s);
    ++n_kv_;
  }
  void add_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k);
    put<uint32_t>(9);
    put<uint32_t>(5);
    put<uint64_t>(v.size());
    for (auto x : v) put(x);
    ++n_kv_;
  }
  // dims in GGML order (dims[0] contiguous); data: raw bytes of the blocks.
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                  const std::vector<uint8_t>& data) {
    tensors_.push_back({name, dims, type, data});
  }
  std::string bytes() const {
    std::string out = "GGUF";
    auto app = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
    uint32_t version = 3;
    uint64_t nt = tensors_.size(), nkv = n_kv_;
    app(&version, 4);
    app(&nt, 8);
    app(&nkv, 8);
    out += meta_;
    uint64_t offset = 0;
    for (auto& t : tensors_) {
      uint64_t n = t.name.size();
      app(&n, 8);
      out += t.name;
      uint32_t nd = t.dims.size();
      app(&nd, 4);
      for (auto d : t.dims) app(&d, 8);
      app(&t.type, 4);
      app(&offset, 8);
      offset += (t.data.size() + 31) / 32 * 32;
    }
    out.resize((out.size() + 31) / 32 * 32, '\0');
    for (auto& t : tensors_) {
      out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
      out.resize((out.size() + 31) / 32 * 32, '\0');
    }
    return out;
  }
  void write(const std::string& path) const {
    std::ofstream(path, std::ios::binary) << bytes();
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  template <typename T>
  void put(T v) {
    meta_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    meta_ += s;
  }
  void key(const std::string& k) { str(k); }
  void kv(const std::string& k, uint32_t type, const void* v, size_t n) {
    key(k);
    put(type);
    meta_.append(static_cast<const char*>(v), n);
    ++n_kv_;
  }
  std::string meta_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace lmlab::test
