// tailor/export/export.hpp: writes a GraphModule back out as TorchScript that stock LibTorch and PyTorch
// load and run, with the tailor graph embedded (extra file "tailor/graph.json") so tailor::load restores
// it losslessly. Parameter names are kept, so the archive's state_dict matches the source model's.
#pragma once

#include <string>

#include <torch/csrc/jit/api/module.h>

#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// The TorchScript source generated for the graph's forward (useful to read, and to debug export).
std::string to_torchscript_source(const GraphModuleImpl& module);

/// Builds a scripted module equivalent to `module` (tensors are copied, eval mode).
torch::jit::Module to_torchscript(const GraphModuleImpl& module);

/// The bytes `save` writes: the TorchScript archive with the embedded graph and provenance.
std::string to_archive(const GraphModuleImpl& module);

/// Saves `to_torchscript(module)` with the embedded graph. The file is written under a temporary name
/// and renamed when complete, so a failure never leaves a partial archive at `path`.
void save(const GraphModuleImpl& module, const std::string& path);

/// Writes `contents` to `path` atomically (temporary file in the same folder, then rename).
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace tailor
