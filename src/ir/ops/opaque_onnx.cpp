// ONNX spellings of the LibTorch operators the IR keeps opaque, by schema name: the ones torchvision models use
// (attention, indexing, expand) and common elementwise ones. Anything else is refused with the node and schema named.
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include <torch/torch.h>

#include "families.hpp"

namespace tailor::ops::detail {
namespace {

int64_t int_value(OnnxArgs& a, size_t k, int64_t if_none) {
  const AttrValue v = a.value(k);
  if (std::holds_alternative<std::monostate>(v)) return if_none;
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  a.refuse("argument " + std::to_string(k) + " is not an int");
  return 0;  // not reached: refuse throws
}

double number_value(OnnxArgs& a, size_t k) {
  const AttrValue v = a.value(k);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  a.refuse("argument " + std::to_string(k) + " is not a number");
  return 0;  // not reached: refuse throws
}

bool is_tensor_input(OnnxArgs& a, size_t k) { return !a.shape(k).empty() || !a.dtype(k).empty(); }

// x[..., index, ...] along dim: Gather with a scalar index drops the dimension, as select does.
void select_onnx(OnnxArgs& a) {
  const size_t rank = a.shape(0).size();
  const int64_t dim = onnx_axis(int_value(a, 1, 0), rank);
  int64_t index = int_value(a, 2, 0);
  if (index < 0) index += a.shape(0).at(static_cast<size_t>(dim));
  const std::string i = a.initializer(torch::tensor(index, torch::kLong), a.node().name + "/index");
  a.emit("Gather", {a.in(0), i}, {a.out(0)}, {{"axis", dim}});
}

void slice_onnx(OnnxArgs& a) {
  const size_t rank = a.shape(0).size();
  const int64_t dim = onnx_axis(int_value(a, 1, 0), rank);
  const int64_t start = int_value(a, 2, 0), end = int_value(a, 3, std::numeric_limits<int64_t>::max()),
                step = int_value(a, 4, 1);
  a.emit("Slice", {a.in(0), a.ints({start}), a.ints({end}), a.ints({dim}), a.ints({step})}, {a.out(0)});
}

void expand_onnx(OnnxArgs& a) { a.emit("Expand", {a.in(0), a.shape_tensor(1, /*minus_one_keeps=*/true)}, {a.out(0)}); }

void clamp_onnx(OnnxArgs& a) {
  std::vector<std::string> inputs = {a.in(0)};
  for (size_t k : {size_t{1}, size_t{2}}) {
    const AttrValue v = a.value(k);
    inputs.push_back(std::holds_alternative<std::monostate>(v) ? std::string() : a.floats({number_value(a, k)}, a.dtype(0)));
  }
  while (inputs.back().empty()) inputs.pop_back();
  a.emit("Clip", inputs, {a.out(0)});
}

void unsqueeze_onnx(OnnxArgs& a) {
  const int64_t dim = onnx_axis(int_value(a, 1, 0), a.shape(0).size() + 1);
  a.emit("Unsqueeze", {a.in(0), a.ints({dim})}, {a.out(0)});
}

void squeeze_onnx(OnnxArgs& a) {
  const int64_t dim = onnx_axis(int_value(a, 1, 0), a.shape(0).size());
  if (a.shape(0).at(static_cast<size_t>(dim)) != 1) {  // torch leaves a dimension that is not 1 alone
    a.emit("Identity", {a.in(0)}, {a.out(0)});
    return;
  }
  a.emit("Squeeze", {a.in(0), a.ints({dim})}, {a.out(0)});
}

void pow_onnx(OnnxArgs& a) {
  a.emit("Pow", {a.in(0), is_tensor_input(a, 1) ? a.in(1) : a.floats({number_value(a, 1)}, a.dtype(0))}, {a.out(0)});
}

void leaky_relu_onnx(OnnxArgs& a) {
  a.emit("LeakyRelu", {a.in(0)}, {a.out(0)}, {{"alpha", a.node().inputs.size() > 1 ? number_value(a, 1) : 0.01}});
}

void sum_onnx(OnnxArgs& a) {
  const AttrValue dims = a.value(1);
  std::vector<std::string> inputs = {a.in(0)};
  if (const auto* d = std::get_if<std::vector<int64_t>>(&dims); d && !d->empty()) {
    std::vector<int64_t> axes;
    for (int64_t x : *d) axes.push_back(onnx_axis(x, a.shape(0).size()));
    inputs.push_back(a.ints(axes));
  }
  a.emit("ReduceSum", inputs, {a.out(0)}, {{"keepdims", int_value(a, 2, 0)}});
}

// (query, key, value, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, mask, need_weights,
// average_attn_weights, mask_type) with batch-first [B, L, E] inputs, written out as the projections, per-head
// scaled dot products and the output projection. Weights are split and transposed into initializers here.
void multi_head_attention_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  const std::string base = n.name + "/";
  const auto& q_shape = a.shape(0);
  if (q_shape.size() != 3) a.refuse("attention on inputs of rank " + std::to_string(q_shape.size()) + " (3 expected)");
  if (!std::holds_alternative<std::monostate>(a.value(9))) a.refuse("attention with a mask");
  if (!a.is_param(5) || !a.is_param(7)) a.refuse("attention whose projection weights are computed, not stored");
  const int64_t e = int_value(a, 3, 0), heads = int_value(a, 4, 1), d = e / heads;
  const at::Tensor w = a.tensor(5), b = a.is_none(6) ? at::Tensor() : a.tensor(6);
  auto project = [&](size_t input, int64_t part, const char* name) {
    const std::string wt = a.initializer(w.slice(0, part * e, (part + 1) * e).t().contiguous(), base + name + "_weight_t");
    const std::string product = a.fresh(base + name + "_matmul"), out = a.fresh(base + name);
    a.emit("MatMul", {a.in(input), wt}, {b.defined() ? product : out});
    if (b.defined())
      a.emit("Add", {product, a.initializer(b.slice(0, part * e, (part + 1) * e).contiguous(), base + name + "_bias")}, {out});
    const std::string heads_view = a.fresh(base + name + "_heads"), moved = a.fresh(base + name + "_by_head");
    a.emit("Reshape", {out, a.ints({0, 0, heads, d})}, {heads_view});
    // q and v: [B, H, L, D]; k: [B, H, D, S] so that q x k is the score matrix.
    a.emit("Transpose", {heads_view}, {moved},
           {{"perm", part == 1 ? std::vector<int64_t>{0, 2, 3, 1} : std::vector<int64_t>{0, 2, 1, 3}}});
    return moved;
  };
  const std::string q = project(0, 0, "q"), k = project(1, 1, "k"), v = project(2, 2, "v");
  const std::string scaled_q = a.fresh(base + "q_scaled"), scores = a.fresh(base + "scores"),
                    weights = a.fresh(base + "attention"), context = a.fresh(base + "context"),
                    context_t = a.fresh(base + "context_t"), merged = a.fresh(base + "merged"),
                    projected = a.fresh(base + "out_matmul");
  a.emit("Mul", {q, a.floats({1.0 / std::sqrt(static_cast<double>(d))}, a.dtype(0))}, {scaled_q});
  a.emit("MatMul", {scaled_q, k}, {scores});
  a.emit("Softmax", {scores}, {weights}, {{"axis", int64_t{-1}}});
  a.emit("MatMul", {weights, v}, {context});
  a.emit("Transpose", {context}, {context_t}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  a.emit("Reshape", {context_t, a.ints({0, 0, e})}, {merged});
  const std::string wo = a.initializer(a.tensor(7).t().contiguous(), base + "out_weight_t");
  if (a.is_none(8)) {
    a.emit("MatMul", {merged, wo}, {a.out(0)});
  } else {
    a.emit("MatMul", {merged, wo}, {projected});
    a.emit("Add", {projected, a.in(8)}, {a.out(0)});
  }
  if (a.num_outputs() < 2) return;
  const bool need_weights = int_value(a, 10, 1) != 0, average = int_value(a, 11, 1) != 0;
  if (!need_weights) {
    a.emit("Identity", {a.initializer(torch::zeros({0}, torch::kFloat), base + "no_weights")}, {a.out(1)});
  } else if (average) {
    a.emit("ReduceMean", {weights}, {a.out(1)}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{0}}});
  } else {
    a.emit("Identity", {weights}, {a.out(1)});
  }
}

const std::map<std::string, std::function<void(OnnxArgs&)>>& spellings() {
  static const std::map<std::string, std::function<void(OnnxArgs&)>> table = [] {
    std::map<std::string, std::function<void(OnnxArgs&)>> t;
    t["aten::select"] = select_onnx;
    t["aten::slice"] = slice_onnx;
    t["aten::expand"] = expand_onnx;
    t["aten::clamp"] = clamp_onnx;
    t["aten::clamp_"] = clamp_onnx;
    t["aten::unsqueeze"] = unsqueeze_onnx;
    t["aten::squeeze"] = squeeze_onnx;
    t["aten::pow"] = pow_onnx;
    t["aten::leaky_relu"] = leaky_relu_onnx;
    t["aten::leaky_relu_"] = leaky_relu_onnx;
    t["aten::sum"] = sum_onnx;
    t["aten::_native_multi_head_attention"] = multi_head_attention_onnx;
    for (const char* id : {"aten::clone", "aten::detach", "aten::alias"})
      t[id] = onnx_unary("Identity");
    const std::map<std::string, const char*> unary = {
        {"aten::sqrt", "Sqrt"}, {"aten::exp", "Exp"},   {"aten::log", "Log"},     {"aten::neg", "Neg"},
        {"aten::abs", "Abs"},   {"aten::erf", "Erf"},   {"aten::floor", "Floor"}, {"aten::ceil", "Ceil"},
        {"aten::reciprocal", "Reciprocal"}, {"aten::mish", "Mish"}, {"aten::sin", "Sin"}, {"aten::cos", "Cos"}};
    for (const auto& [name, op] : unary) t[name] = onnx_unary(op);
    return t;
  }();
  return table;
}

}  // namespace

void opaque_onnx(OnnxArgs& a) {
  std::string name = a.node().s("schema");
  name = name.substr(0, name.find('.'));  // the overload does not change the spelling
  const auto& table = spellings();
  auto it = table.find(name);
  if (it == table.end()) a.refuse("ONNX export has no spelling of this LibTorch operator");
  it->second(a);
}

}  // namespace tailor::ops::detail
