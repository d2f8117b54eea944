// Op family: pooling and reductions (max/avg/adaptive pooling, mean).
#include <algorithm>

#include "families.hpp"

namespace tailor::ops::detail {
namespace {

// "2d" for a 2-d pooling: the TorchScript function names carry the rank.
std::string rank_suffix(const Node& n) {
  if (!n.has("kernel_size") && !n.has("output_size")) return "";
  return std::to_string(n.ints(n.has("kernel_size") ? "kernel_size" : "output_size").size()) + "d";
}

int64_t window_flops(const Graph& g, const Node& n) { return output_elements(g, n) * numel(n.ints("kernel_size")); }
int64_t input_flops(const Graph& g, const Node& n) { return numel(g.value(n.inputs[0]).shape); }

void max_pool_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  a.emit("MaxPool", {a.in(0)}, {a.out(0)},
         {{"kernel_shape", n.ints("kernel_size")},
          {"strides", n.ints("stride")},
          {"pads", onnx_pads(n.ints("padding"))},
          {"dilations", n.ints("dilation")},
          {"ceil_mode", int64_t{n.b("ceil_mode")}}});
}

void avg_pool_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  a.emit("AveragePool", {a.in(0)}, {a.out(0)},
         {{"kernel_shape", n.ints("kernel_size")},
          {"strides", n.ints("stride")},
          {"pads", onnx_pads(n.ints("padding"))},
          {"ceil_mode", int64_t{n.b("ceil_mode")}},
          {"count_include_pad", int64_t{n.b("count_include_pad")}}});
}

// Global pooling for output size 1; a plain average pooling where the input divides evenly (the windows of
// adaptive pooling are then exactly those); otherwise ONNX has no equivalent.
void adaptive_avg_pool_onnx(OnnxArgs& a) {
  const auto& out = a.node().ints("output_size");
  const auto& x = a.shape(0);
  const size_t spatial = out.size();
  if (x.size() < spatial) a.refuse("its input has fewer dimensions than its output size");
  bool global = true, even = true;
  std::vector<int64_t> kernel;
  for (size_t d = 0; d < spatial; ++d) {
    const int64_t in = x[x.size() - spatial + d];
    global = global && out[d] == 1;
    even = even && out[d] > 0 && in % out[d] == 0;
    kernel.push_back(out[d] > 0 ? in / std::max<int64_t>(out[d], 1) : 0);
  }
  if (global) {
    a.emit("GlobalAveragePool", {a.in(0)}, {a.out(0)});
  } else if (even) {
    a.emit("AveragePool", {a.in(0)}, {a.out(0)}, {{"kernel_shape", kernel}, {"strides", kernel}});
  } else {
    a.refuse("adaptive average pooling to " + to_source(AttrValue(out)) + " from " + to_source(AttrValue(x)) +
             " has uneven windows, which ONNX cannot express");
  }
}

void mean_onnx(OnnxArgs& a) {
  std::vector<int64_t> axes;
  for (int64_t d : a.node().ints("dims")) axes.push_back(onnx_axis(d, a.shape(0).size()));
  std::map<std::string, AttrValue> attrs{{"keepdims", int64_t{a.node().b("keepdim")}}};
  if (!axes.empty()) attrs["axes"] = axes;  // no axes: every dimension, as torch.mean(x, []) does
  a.emit("ReduceMean", {a.in(0)}, {a.out(0)}, attrs);
}

}  // namespace

void add_pooling_ops(std::vector<OpDef>& t) {
  t.push_back({kMaxPool, Arity{1, 1}, no_cost, window_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.max_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("kernel_size") + ", " +
                        a.attr("stride") + ", " + a.attr("padding") + ", " + a.attr("dilation") + ", " +
                        a.attr("ceil_mode") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool, max_pool_onnx});
  t.push_back({kAvgPool, Arity{1, 1}, no_cost, window_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.avg_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("kernel_size") + ", " +
                        a.attr("stride") + ", " + a.attr("padding") + ", " + a.attr("ceil_mode") + ", " +
                        a.attr("count_include_pad") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool, avg_pool_onnx});
  t.push_back({kAdaptiveAvgPool, Arity{1, 1}, no_cost, input_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.adaptive_avg_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("output_size") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool, adaptive_avg_pool_onnx});
  t.push_back({kMean, Arity{1, 1}, no_cost, input_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.mean(" + a.in(0) + ", " + a.attr("dims") + ", " + a.attr("keepdim") + ")";
               },
               ChannelRule::Mean, OnednnLowering::Mean, mean_onnx});
}

}  // namespace tailor::ops::detail
