// Helpers for lmlab's CPU primitives (internal).
#pragma once

#include <vector>

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn::detail {

// A row-contiguous copy of an evaluated array's elements (a transposed view, a
// slice, a broadcast), copied a row at a time when the last axis is dense.
std::vector<char> gather(const mlx::core::array& a);

// Whether s (a stream, a device, a device type, or {} for the default device) is the CPU.
bool on_cpu(const mlx::core::StreamOrDevice& s);

}  // namespace lmlab::nn::detail
