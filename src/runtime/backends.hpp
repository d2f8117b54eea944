// Internal: factories of the backends that live in their own translation units. Not installed.
#pragma once

#include <memory>

#include <torch/types.h>

#include "tailor/runtime/backend.hpp"

namespace tailor::detail {
/// The onednn-cpu backend; when tailor was built without oneDNN it exists but reports itself unavailable.
std::unique_ptr<Backend> make_onednn_backend();
int64_t storage_bytes(const torch::Tensor& t);
/// The kernel of graph node `n` as the graph describes it (shapes, weight, stride/padding/dilation/groups, MACs,
/// bytes); a backend adds what it alone knows (primitive, implementation, data types, layout, fusion).
Kernel graph_kernel(const Graph& g, const Node& n);
}  // namespace tailor::detail
