// Internal: the ATen interpreter behind GraphModule, exposed to tailor's backends so that they run the nodes
// they do not lower exactly as GraphModule would (same decoding, same kernels). Not installed.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/types.h>

#include "tailor/ir/graph.hpp"

namespace tailor::detail {

enum class Code {
  Constant, Param, List, ListUnpack, Tuple, TupleUnpack, Opaque, Conv, Linear, Matmul, BatchNorm, LayerNorm,
  GroupNorm, Relu, Hardtanh, Gelu, Silu, Sigmoid, Hardsigmoid, Hardswish, Tanh, Softmax, LogSoftmax, Add, Sub,
  Mul, Div, Cat, Chunk, Flatten, Reshape, Permute, Transpose, Contiguous, MaxPool, AvgPool, AdaptiveAvgPool, Mean,
  Dropout, ChannelShuffle, FakeQuant
};

Code code_of(const std::string& kind);
c10::IValue to_ivalue(const AttrValue& v);

// One node, resolved for execution: attributes decoded once, slots indexed directly.
struct Instr {
  Code code;
  int node = -1;
  std::vector<int> in;
  std::vector<int> out;
  std::vector<int> release;  // values whose last reader is this instruction
  std::vector<int64_t> i0, i1, i2, i3;
  int64_t n0 = 0;
  double d0 = 0, d1 = 0;
  bool b0 = false, b1 = false;
  std::string s0;
  c10::IValue constant;
  torch::Tensor tensor;
  std::shared_ptr<torch::jit::Operator> op;
};

struct Program {
  std::vector<Instr> instrs;
  std::vector<int> inputs;
  std::vector<int> outputs;
  int num_values = 0;
};


using TensorLookup = std::function<torch::Tensor(const std::string&)>;

/// Quantize-dequantize as a `fake_quant` node does; `qp` is {qmin, qmax, axis, group_size}. Learnable nodes
/// use LSQ's kernels (gradients reach scale and zero point, scaled by 1/sqrt(numel * qmax)).
torch::Tensor fake_quant(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                         const std::vector<int64_t>& qp, bool learnable);

/// Decodes one node's attributes for execution; `tensor_of` resolves `param` names.
Instr make_instr(const Graph& graph, int node_id, const TensorLookup& tensor_of);
/// Builds the whole program, with each intermediate released after its last reader.
std::unique_ptr<Program> build_program(const Graph& graph, const TensorLookup& tensor_of);
/// Runs one instruction: reads slots[in], writes slots[out]. Does not release anything.
void execute_instr(const Instr& ins, std::vector<c10::IValue>& slots, bool training, torch::jit::Stack& stack);

/// Called after each instruction when profiling: node id and the seconds it took.
using InstrClock = std::function<void(const Instr&, double seconds)>;
/// Runs the program; values in `keep` are not released; `clock` (optional) times each instruction.
void execute(const Program& prog, std::vector<c10::IValue>& slots, bool training, const std::set<int>* keep,
             const InstrClock* clock = nullptr);

}  // namespace tailor::detail
