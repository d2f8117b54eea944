// tailor/ir/graph_module.hpp: a torch::nn::Module that runs a tailor Graph with ATen ops.
// Parameters and buffers are registered under their original dotted names, so autograd, optimizers,
// train()/eval(), torch::save/load and named_parameters() behave as on the source model.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/operator_name.h>

#include "tailor/ir/graph.hpp"
#include "tailor/ir/provenance.hpp"

namespace tailor {

namespace detail {
struct Program;
/// Splits an opaque node's `schema` attribute ("aten::add.Tensor") into LibTorch's operator name.
c10::OperatorName parse_operator_name(const std::string& schema);
}  // namespace detail

class GraphModuleImpl : public torch::nn::Module {
 public:
  /// `tensors` holds every tensor a `param` node names; names listed in `buffers` are registered as
  /// buffers, the rest as parameters.
  GraphModuleImpl(Graph graph, const std::map<std::string, torch::Tensor>& tensors,
                  const std::vector<std::string>& buffers = {});
  ~GraphModuleImpl() override;

  /// Runs the graph; one Tensor in, one Tensor out.
  torch::Tensor forward(const torch::Tensor& input);
  /// Runs the graph on any inputs; returns the single output, or a tuple for several.
  c10::IValue run(const std::vector<c10::IValue>& inputs);
  /// Runs the graph and also returns the first output of each named node (taps), for distillation and
  /// calibration. Unknown names are an error listing some valid ones.
  std::pair<c10::IValue, std::map<std::string, torch::Tensor>> run_with_taps(
      const std::vector<c10::IValue>& inputs, const std::vector<std::string>& taps);

  /// Like run_with_taps, by value id (any tensor edge, graph inputs included): for passes that observe
  /// the inputs of layers (calibration, GPTQ, bias correction).
  std::pair<c10::IValue, std::map<int, torch::Tensor>> run_with_value_taps(const std::vector<c10::IValue>& inputs,
                                                                          const std::vector<int>& values);
  /// Runs the graph and returns every value it computed, by value id (None for values never computed): for
  /// exporters that fold shape arithmetic at a given input shape.
  std::vector<c10::IValue> run_all_values(const std::vector<c10::IValue>& inputs);
  const Graph& graph() const { return graph_; }
  /// Edits the graph in place; call `recompile()` afterwards (passes do this through PassContext).
  Graph& mutable_graph() { return graph_; }
  /// Rebuilds the execution plan after the graph or the set of tensors changed.
  void recompile();

  /// The tensor a `param` node names (a registered parameter or buffer).
  torch::Tensor tensor(const std::string& name) const;
  bool has_tensor(const std::string& name) const;
  bool is_buffer(const std::string& name) const;
  /// Replaces a tensor's value, shape included (pruning), keeping its registration.
  void set_tensor(const std::string& name, const torch::Tensor& value);
  /// Registers a new parameter or buffer under a dotted name (for passes that add tensors).
  void add_tensor(const std::string& name, const torch::Tensor& value, bool buffer);
  /// All tensors by dotted name, parameters and buffers.
  std::map<std::string, torch::Tensor> tensors() const;
  std::vector<std::string> buffer_names() const;
  /// Unregisters the tensors that no `param` node names any more (after a pass removed layers).
  void drop_unused_tensors();

  /// The passes that made this module, oldest first (pipelines append; saved inside the archive).
  const std::vector<PassRecord>& provenance() const { return provenance_; }
  std::vector<PassRecord>& mutable_provenance() { return provenance_; }

  /// Runs the graph once on zeros of the given input shapes (batch included) and records each tensor
  /// value's shape and dtype in the graph.
  void infer_shapes(const std::vector<std::vector<int64_t>>& input_shapes);

 private:
  torch::nn::Module& owner_of(const std::string& dotted, std::string& leaf, bool create);
  struct TensorEntry {
    torch::Tensor tensor;  ///< the registered tensor itself (LibTorch updates it in place on to()/load)
    bool buffer = false;
  };
  Graph graph_;
  std::map<std::string, TensorEntry> tensors_;
  std::unique_ptr<detail::Program> program_;
  std::vector<PassRecord> provenance_;
};

TORCH_MODULE(GraphModule);

/// Parses "1x3x224x224" (or "1,3,224,224") into a shape; throws naming the text when it is not one.
std::vector<int64_t> parse_shape(const std::string& text);
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace tailor
