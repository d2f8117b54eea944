// Op family: quantization (fake_quant: quantize-dequantize with the straight-through gradient).
#include "families.hpp"

namespace tailor::ops::detail {

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
               ChannelRule::Barrier, OnednnLowering::Aten});
}

}  // namespace tailor::ops::detail
