// Internal: factories of the backends that live in their own translation units. Not installed.
#pragma once

#include <memory>

#include <torch/types.h>

#include "tailor/runtime/backend.hpp"

namespace tailor::detail {
/// The onednn-cpu backend; when tailor was built without oneDNN it exists but reports itself unavailable.
std::unique_ptr<Backend> make_onednn_backend();
int64_t storage_bytes(const torch::Tensor& t);
}  // namespace tailor::detail
