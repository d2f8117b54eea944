// Op family: normalization (batch, layer and group norm).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {
int64_t two_per_element(const Graph& g, const Node& n) { return 2 * output_elements(g, n); }

// ONNX's normalizations take a scale and a bias always; absent ones are ones and zeros.
std::string affine_or(OnnxArgs& a, size_t k, int64_t channels, double fill) {
  if (!a.is_none(k)) return a.in(k);
  return a.floats(std::vector<double>(static_cast<size_t>(channels), fill), a.dtype(0));
}

void batch_norm_onnx(OnnxArgs& a) {
  const int64_t c = a.shape(0).at(1);
  a.emit("BatchNormalization", {a.in(0), affine_or(a, 1, c, 1.0), affine_or(a, 2, c, 0.0), a.in(3), a.in(4)},
         {a.out(0)}, {{"epsilon", a.node().f("eps")}, {"momentum", 1.0 - a.node().f("momentum", 0.1)}});
}

void layer_norm_onnx(OnnxArgs& a) {
  const auto& normalized = a.node().ints("normalized_shape");
  if (a.is_none(1) && normalized.size() != 1) a.refuse("a layer norm without weight over several dimensions");
  const std::string scale = a.is_none(1) ? affine_or(a, 1, normalized.at(0), 1.0) : a.in(1);
  std::vector<std::string> inputs = {a.in(0), scale};
  if (!a.is_none(2)) inputs.push_back(a.in(2));
  a.emit("LayerNormalization", inputs, {a.out(0)},
         {{"axis", -static_cast<int64_t>(normalized.size())}, {"epsilon", a.node().f("eps")}});
}

// Opset 17 has no GroupNormalization (18 has): normalize [N, G, rest] over its last axis, then the affine part
// per channel.
void group_norm_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  const std::string base = n.name + "/";
  const auto& x = a.shape(0);
  const std::string grouped = a.fresh(base + "grouped"), mean = a.fresh(base + "mean"), centred = a.fresh(base + "centred"),
                    squared = a.fresh(base + "squared"), var = a.fresh(base + "var"), shifted = a.fresh(base + "var_eps"),
                    stdev = a.fresh(base + "std"), normalized = a.fresh(base + "normalized"),
                    shape = a.fresh(base + "shape");
  a.emit("Reshape", {a.in(0), a.ints({0, n.i("num_groups"), -1})}, {grouped});
  const std::map<std::string, AttrValue> last{{"axes", std::vector<int64_t>{2}}, {"keepdims", int64_t{1}}};
  a.emit("ReduceMean", {grouped}, {mean}, last);
  a.emit("Sub", {grouped, mean}, {centred});
  a.emit("Mul", {centred, centred}, {squared});
  a.emit("ReduceMean", {squared}, {var}, last);
  a.emit("Add", {var, a.floats({n.f("eps")}, a.dtype(0))}, {shifted});
  a.emit("Sqrt", {shifted}, {stdev});
  a.emit("Div", {centred, stdev}, {normalized});
  a.emit("Shape", {a.in(0)}, {shape});
  std::vector<int64_t> per_channel(x.size() - 1, 1);
  per_channel[0] = x.at(1);
  std::string y = a.fresh(base + "unaffine");
  const bool weight = !a.is_none(1), bias = !a.is_none(2);
  a.emit("Reshape", {normalized, shape}, {weight || bias ? y : a.out(0)});
  if (weight) {
    const std::string w = a.fresh(base + "weight"), scaled = bias ? a.fresh(base + "scaled") : a.out(0);
    a.emit("Reshape", {a.in(1), a.ints(per_channel)}, {w});
    a.emit("Mul", {y, w}, {scaled});
    y = scaled;
  }
  if (bias) {
    const std::string b = a.fresh(base + "bias");
    a.emit("Reshape", {a.in(2), a.ints(per_channel)}, {b});
    a.emit("Add", {y, b}, {a.out(0)});
  }
}
}  // namespace

void add_normalization_ops(std::vector<OpDef>& t) {
  t.push_back({kBatchNorm, Arity{5, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.batch_norm(" + a.args() + ", self.training, " + a.attr("momentum") + ", " + a.attr("eps") +
                        ", True)";
               },
               ChannelRule::BatchNorm, OnednnLowering::Norm, batch_norm_onnx});
  t.push_back({kLayerNorm, Arity{3, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.layer_norm(" + a.in(0) + ", " + a.attr("normalized_shape") + ", " + a.in(1) + ", " +
                        a.in(2) + ", " + a.attr("eps") + ", True)";
               },
               ChannelRule::LayerNorm, OnednnLowering::Norm, layer_norm_onnx});
  t.push_back({kGroupNorm, Arity{3, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.group_norm(" + a.in(0) + ", " + a.attr("num_groups") + ", " + a.in(1) + ", " + a.in(2) +
                        ", " + a.attr("eps") + ", True)";
               },
               ChannelRule::PinAndPassThrough, OnednnLowering::Aten, group_norm_onnx});
}

}  // namespace tailor::ops::detail
