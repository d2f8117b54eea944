// tailor/ir/op_table.hpp: the one table of what tailor knows about each op kind. Every kind the IR models has
// one OpDef, written in its op family's file (src/ir/ops/*.cpp): arity, cost, TorchScript and ONNX spellings, how
// channel pruning follows it, and how onednn-cpu lowers it. Analysis, export, pruning and the oneDNN backend read it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tailor/ir/graph.hpp"
#include "tailor/ir/ops.hpp"

namespace at {
class Tensor;
}

namespace tailor::ops {

/// What a TorchScript spelling reads of its node: inputs as expressions, attributes as literals.
class TorchScriptArgs {
 public:
  virtual ~TorchScriptArgs() = default;
  virtual const Node& node() const = 0;
  virtual std::string in(size_t k) const = 0;           ///< input k as an expression
  virtual std::string args(size_t from = 0) const = 0;  ///< inputs from `from` on, comma-separated
  virtual std::string attr(const char* key) const = 0;  ///< an attribute as a Python literal
  virtual std::string output_type() const = 0;          ///< TorchScript type of the first output ("List[int]", ...)
  virtual std::string attribute_path(const std::string& dotted) const = 0;  ///< a parameter's `self.` path
};

/// What an ONNX spelling reads of its node and writes into the model being built (src/export/onnx.cpp). Values
/// are named by strings; non-tensor inputs (attributes, shape arithmetic) are known statically at the export
/// shape. A spelling either emits nodes producing every `out(k)` or calls `refuse`.
class OnnxArgs {
 public:
  virtual ~OnnxArgs() = default;
  virtual const Node& node() const = 0;
  /// Tensor input k by name; a scalar constant becomes an initializer of the node's tensor dtype.
  virtual std::string in(size_t k) = 0;
  virtual bool is_none(size_t k) const = 0;  ///< an optional input that reads None
  virtual bool is_param(size_t k) const = 0;  ///< input k is a parameter or buffer (a constant tensor)
  virtual std::string out(size_t k) const = 0;
  virtual size_t num_outputs() const = 0;
  /// Tensor input k's shape and dtype ("float32", ...) at the export shape.
  virtual const std::vector<int64_t>& shape(size_t k) const = 0;
  virtual std::string dtype(size_t k) const = 0;
  /// Output k's shape at the export shape.
  virtual const std::vector<int64_t>& out_shape(size_t k) const = 0;
  /// A non-tensor input's value (a constant, or shape arithmetic folded at the export shape).
  virtual AttrValue value(size_t k) const = 0;
  /// An int[] input as an int64 tensor. With a dynamic batch, entries that grow with the batch are computed
  /// from the model input's batch dimension; `minus_one_keeps` writes -1 entries as `keep` (Expand wants 1).
  virtual std::string shape_tensor(size_t k, bool minus_one_keeps = false) = 0;
  /// A parameter input's tensor.
  virtual at::Tensor tensor(size_t k) const = 0;
  virtual std::string ints(const std::vector<int64_t>& values) = 0;  ///< an int64 1-d initializer
  /// A floating initializer of `dtype` (as Value::dtype spells it, "Float" when empty): 0-d for one value, else 1-d.
  virtual std::string floats(const std::vector<double>& values, const std::string& dtype) = 0;
  /// A tensor initializer (int8, uint8, int32, int64, float32 and float64 tensors); `hint` names it.
  virtual std::string initializer(const at::Tensor& t, const std::string& hint) = 0;
  virtual std::string fresh(const std::string& hint) = 0;  ///< a new value name
  virtual void emit(const std::string& op_type, const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs, const std::map<std::string, AttrValue>& attrs = {}) = 0;
  /// Fails naming the node and its op: nothing is written.
  [[noreturn]] virtual void refuse(const std::string& why) const = 0;
};

/// How channel pruning's dependency analysis follows a node (the rules live in src/prune/channels.cpp).
enum class ChannelRule {
  NoChannels,        ///< constants and parameters: nothing flows
  Conv,              ///< consumes input channels, creates output channels; depthwise passes them; grouped pins
  Linear,            ///< the same over the last dimension
  BatchNorm,         ///< per-channel parameters follow the channels
  LayerNorm,         ///< per-channel parameters when it normalizes the channel dimension alone
  PassThrough,       ///< channel c of the output is channel c of the input
  PinAndPassThrough, ///< keeps channels but cannot be pruned through (group norm)
  Softmax,           ///< passes through unless it runs over the channels
  Binary,            ///< unifies the channels of its operands (residual adds, SE multiplies)
  Concat,            ///< concatenates its inputs' channels
  Mean,              ///< reduces other dimensions (pins when it reduces the channels)
  Flatten,           ///< repeats each channel over the flattened block
  Permute,
  Transpose,
  Barrier,           ///< pins every channel it reads (reshape, chunk, matmul, opaque, lists)
};

/// How onednn-cpu runs a node (src/runtime/onednn/); Aten: the ATen interpreter runs it.
enum class OnednnLowering { CompileTime, Conv, Linear, Pool, Mean, Eltwise, Binary, Concat, Softmax, Norm, Aten };

struct OpDef {
  std::string kind;
  Arity arity;
  /// Multiply-accumulates of a node whose value shapes are inferred (0 for ops that do none).
  std::function<int64_t(const Graph&, const Node&)> macs;
  /// Floating-point operations besides 2 x MACs (elementwise work, biases).
  std::function<int64_t(const Graph&, const Node&)> flops;
  /// The TorchScript expression computing the node's outputs; an empty result writes no statement
  /// (constants are spelled where they are read).
  std::function<std::string(const TorchScriptArgs&)> torchscript;
  ChannelRule channels = ChannelRule::Barrier;
  OnednnLowering onednn = OnednnLowering::Aten;
  /// Emits the ONNX nodes computing the node's outputs (opset 17); never called for nodes whose outputs are
  /// all known statically (constants, shape arithmetic) or for lists and tuples of tensors.
  std::function<void(OnnxArgs&)> onnx;
  /// Output shapes are not computed by rule: GraphModule::infer_shapes runs the node on zeros (ATen's own
  /// shape logic), so no kind needs a hand-written shape function.
};

/// The definition of `kind` ("opaque" included); an unknown kind fails naming it.
const OpDef& op_def(const std::string& kind);
/// Every kind the table defines, in op-family order.
std::vector<std::string> defined_kinds();

// Helpers the op families share.
int64_t numel(const std::vector<int64_t>& shape);
/// Elements of the node's first output (0 when it is not a tensor).
int64_t output_elements(const Graph& g, const Node& n);
int64_t no_cost(const Graph&, const Node&);

}  // namespace tailor::ops
