// tailor/capture/capture.hpp: turns a model into a GraphModule, once.
// Sources: a TorchScript file or torch::jit::Module (traced or scripted, from Python or C++), and a C++
// torch::nn::Module traced with example inputs. Ops the IR does not model become opaque nodes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/csrc/jit/api/module.h>

#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// Name of the extra file in which exported archives carry the tailor graph.
inline constexpr const char* kEmbeddedGraphFile = "tailor/graph.json";
/// Extra file with the module's provenance (the passes that made it), as a JSON array of PassRecords.
inline constexpr const char* kProvenanceFile = "tailor/provenance.json";

/// Loads a TorchScript archive. If it was written by tailor, the embedded graph is restored losslessly;
/// otherwise the module is captured. Errors name the file.
GraphModule load(const std::string& path);

/// Captures a TorchScript module's `forward` (the module is put in eval mode on a copy).
GraphModule capture(const torch::jit::Module& module);

/// Captures a C++ module by tracing `forward` on `example_inputs`. Parameters and buffers keep their
/// dotted names. Python-free and LibTorch-only.
GraphModule capture(torch::nn::Module& module,
                    const std::function<c10::IValue(const std::vector<c10::IValue>&)>& forward,
                    const std::vector<c10::IValue>& example_inputs);

/// Convenience for modules whose forward takes one Tensor: `capture(net, torch::randn({1, 1, 28, 28}))`.
template <typename ModuleHolder>
GraphModule capture(ModuleHolder& holder, const torch::Tensor& example_input) {
  return capture(
      *holder, [&](const std::vector<c10::IValue>& in) -> c10::IValue { return holder->forward(in[0].toTensor()); },
      {example_input});
}

}  // namespace tailor
