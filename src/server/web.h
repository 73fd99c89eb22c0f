// The web lab's files, built into the binary from web/ (cmake/embed_web.cmake).
#pragma once

#include <cstddef>
#include <span>

namespace lmlab::server {

struct WebAsset {
  const char* path;  // "/index.html", "/panels/chat.js", "/vendor/chart.min.js"
  const char* mime;
  const unsigned char* data;
  size_t size;
};

std::span<const WebAsset> web_assets();

}  // namespace lmlab::server
