// Op family: quantization (fake_quant: quantize-dequantize with the straight-through gradient).
#include <torch/torch.h>

#include "families.hpp"

namespace tailor::ops::detail {
namespace {

// QDQ: a weight becomes an integer initializer behind DequantizeLinear (per channel on axis 0 when the node is);
// an activation becomes QuantizeLinear -> DequantizeLinear with the same scale and zero point. Group-wise weights
// (int4 and friends) are stored as int8 rows of one group each, dequantized per row, reshaped back: ONNX 1.12 has
// no int4. Activation ranges narrower than the integer type (tailor's 7-bit activations on CPUs without VNNI)
// keep their scale and zero point, and saturate at the type's limits instead of qmax: only values above the
// calibrated range differ.
void fake_quant_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  const int64_t qmin = n.i("qmin"), qmax = n.i("qmax"), axis = n.i("axis", -1), group = n.i("group_size", 0);
  if (!a.is_param(1) || !a.is_param(2)) a.refuse("its scale and zero point are computed, not stored");
  const bool unsigned8 = qmin >= 0 && qmax <= 255, signed8 = qmin >= -128 && qmax <= 127;
  if (!unsigned8 && !signed8) a.refuse("its range " + std::to_string(qmin) + ".." + std::to_string(qmax) + " needs more than 8 bits");
  // Weights are stored as int8 wherever their range fits (int4's 0..15 and -8..7 both do), activations as uint8
  // (ONNX Runtime's u8 x s8 kernels).
  const auto int_type = a.is_param(0) ? (signed8 ? torch::kChar : torch::kByte) : (unsigned8 ? torch::kByte : torch::kChar);
  const std::string base = n.name + "/";
  at::Tensor scale = a.tensor(1).to(torch::kFloat).reshape({-1});
  at::Tensor zero = a.tensor(2).to(torch::kLong).reshape({-1});
  const bool per_tensor = axis < 0 && group == 0;
  if (per_tensor && scale.numel() != 1) a.refuse("a per-tensor quantizer with " + std::to_string(scale.numel()) + " scales");
  if (per_tensor) {
    scale = scale.reshape({});
    zero = zero.reshape({});
  }
  const std::string s = a.initializer(scale, base + "scale"), z = a.initializer(zero.to(int_type), base + "zero_point");
  std::map<std::string, AttrValue> dq_attrs;
  if (!per_tensor) dq_attrs["axis"] = group > 0 ? int64_t{0} : axis;

  if (a.is_param(0)) {
    const at::Tensor w = a.tensor(0).to(torch::kFloat);
    at::Tensor rows = group > 0 ? w.reshape({-1, group}) : w;
    std::vector<int64_t> view(static_cast<size_t>(rows.dim()), 1);
    if (!per_tensor) view.at(static_cast<size_t>(group > 0 ? 0 : axis)) = -1;
    const at::Tensor q = (torch::round(rows / scale.reshape(view)) + zero.reshape(view)).clamp(qmin, qmax).to(int_type);
    const std::string stored = a.initializer(q, base + "quantized");
    if (group == 0) {
      a.emit("DequantizeLinear", {stored, s, z}, {a.out(0)}, dq_attrs);
      return;
    }
    const std::string dq = a.fresh(base + "dequantized_rows");
    a.emit("DequantizeLinear", {stored, s, z}, {dq}, dq_attrs);
    a.emit("Reshape", {dq, a.ints(w.sizes().vec())}, {a.out(0)});
    return;
  }
  if (group > 0) a.refuse("group-wise quantization of an activation");
  const std::string q = a.fresh(base + "quantized");
  a.emit("QuantizeLinear", {a.in(0), s, z}, {q}, dq_attrs);
  a.emit("DequantizeLinear", {q, s, z}, {a.out(0)}, dq_attrs);
}

}  // namespace

void add_quantization_ops(std::vector<OpDef>& t) {
  // onednn-cpu turns activation and weight fake_quants into int8 primitives where it can (src/runtime/onednn/
  // int8.cpp, before lowering by family); the rest run on ATen.
  t.push_back({kFakeQuant, Arity{3, 1}, no_cost,
               [](const Graph& g, const Node& n) { return 4 * output_elements(g, n); },  // scale, round, clamp, rescale
               [](const TorchScriptArgs& a) {
                 // Learnable nodes export as the fixed kernels: same forward, and stock PyTorch runs them anywhere.
                 const Node& n = a.node();
                 const std::string range = a.attr("qmin") + ", " + a.attr("qmax") + ")";
                 const int64_t axis = n.i("axis", -1), group = n.i("group_size", 0);
                 if (group > 0)
                   return "torch.reshape(torch.fake_quantize_per_channel_affine(torch.reshape(" + a.in(0) + ", [-1, " +
                          std::to_string(group) + "]), " + a.in(1) + ", " + a.in(2) + ", 0, " + range + ", " + a.in(0) +
                          ".size())";
                 if (axis < 0) return "torch.fake_quantize_per_tensor_affine(" + a.args() + ", " + range;
                 return "torch.fake_quantize_per_channel_affine(" + a.args() + ", " + std::to_string(axis) + ", " + range;
               },
               ChannelRule::Barrier, OnednnLowering::Aten, fake_quant_onnx});
}

}  // namespace tailor::ops::detail
