// Op family: shape and layout (cat, chunk, flatten, reshape, permute, transpose, channel shuffle).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

void cat_onnx(OnnxArgs& a) {
  std::vector<std::string> inputs;
  for (size_t k = 0; k < a.node().inputs.size(); ++k) inputs.push_back(a.in(k));
  a.emit("Concat", inputs, {a.out(0)}, {{"axis", onnx_axis(a.node().i("dim"), a.shape(0).size())}});
}

// torch.chunk's pieces are ceil(size / chunks) long, the last one shorter, and there may be fewer than `chunks`.
void chunk_onnx(OnnxArgs& a) {
  const int64_t axis = onnx_axis(a.node().i("dim"), a.shape(0).size());
  std::vector<int64_t> sizes;
  std::vector<std::string> outs;
  for (size_t k = 0; k < a.num_outputs(); ++k) {
    sizes.push_back(a.out_shape(k).at(static_cast<size_t>(axis)));
    outs.push_back(a.out(k));
  }
  a.emit("Split", {a.in(0), a.ints(sizes)}, outs, {{"axis", axis}});
}

// Leading dimensions are copied (0), the flattened block is inferred (-1), trailing ones are kept: the same
// model then runs at any batch.
void flatten_onnx(OnnxArgs& a) {
  const auto& x = a.shape(0);
  const int64_t start = onnx_axis(a.node().i("start_dim"), x.size()), end = onnx_axis(a.node().i("end_dim"), x.size());
  if (x.empty()) {
    a.emit("Reshape", {a.in(0), a.ints({1})}, {a.out(0)});
    return;
  }
  std::vector<int64_t> shape(static_cast<size_t>(start), 0);
  shape.push_back(-1);
  for (size_t d = static_cast<size_t>(end) + 1; d < x.size(); ++d) shape.push_back(x[d]);
  a.emit("Reshape", {a.in(0), a.ints(shape)}, {a.out(0)});
}

std::vector<int64_t> normalized_dims(const std::vector<int64_t>& dims, size_t rank) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(onnx_axis(d, rank));
  return out;
}

void transpose_onnx(OnnxArgs& a) {
  const size_t rank = a.shape(0).size();
  std::vector<int64_t> perm(rank);
  for (size_t d = 0; d < rank; ++d) perm[d] = static_cast<int64_t>(d);
  std::swap(perm.at(static_cast<size_t>(onnx_axis(a.node().i("dim0"), rank))),
            perm.at(static_cast<size_t>(onnx_axis(a.node().i("dim1"), rank))));
  a.emit("Transpose", {a.in(0)}, {a.out(0)}, {{"perm", perm}});
}

// [N, C, ...] -> [N, g, C/g, ...] -> swap the two group axes -> [N, C, ...]
void channel_shuffle_onnx(OnnxArgs& a) {
  const auto& x = a.shape(0);
  const int64_t groups = a.node().i("groups");
  std::vector<int64_t> split = {0, groups, x.at(1) / groups}, merged = {0, x.at(1)};
  std::vector<int64_t> perm = {0, 2, 1};
  for (size_t d = 2; d < x.size(); ++d) {
    split.push_back(x[d]);
    merged.push_back(x[d]);
    perm.push_back(static_cast<int64_t>(d) + 1);
  }
  const std::string grouped = a.fresh(a.node().name + "/grouped"), swapped = a.fresh(a.node().name + "/swapped");
  a.emit("Reshape", {a.in(0), a.ints(split)}, {grouped});
  a.emit("Transpose", {grouped}, {swapped}, {{"perm", perm}});
  a.emit("Reshape", {swapped, a.ints(merged)}, {a.out(0)});
}

}  // namespace

void add_shape_ops(std::vector<OpDef>& t) {
  t.push_back({kCat, Arity{-1, 1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.cat([" + a.args() + "], " + a.attr("dim") + ")"; },
               ChannelRule::Concat, OnednnLowering::Concat, cat_onnx});
  t.push_back({kChunk, Arity{1, -1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 const std::string call = "torch.chunk(" + a.in(0) + ", " + a.attr("chunks") + ", " + a.attr("dim") + ")";
                 return a.node().outputs.size() == 1 ? call + "[0]" : call;
               },
               ChannelRule::Barrier, OnednnLowering::Aten, chunk_onnx});
  t.push_back({kFlatten, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 return "torch.flatten(" + a.in(0) + ", " + a.attr("start_dim") + ", " + a.attr("end_dim") + ")";
               },
               ChannelRule::Flatten, OnednnLowering::Aten, flatten_onnx});
  t.push_back({kReshape, Arity{2, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.reshape(" + a.args() + ")"; }, ChannelRule::Barrier,
               OnednnLowering::Aten,
               [](OnnxArgs& a) { a.emit("Reshape", {a.in(0), a.shape_tensor(1)}, {a.out(0)}); }});
  t.push_back({kPermute, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.permute(" + a.in(0) + ", " + a.attr("dims") + ")"; },
               ChannelRule::Permute, OnednnLowering::Aten,
               [](OnnxArgs& a) {
                 a.emit("Transpose", {a.in(0)}, {a.out(0)},
                        {{"perm", normalized_dims(a.node().ints("dims"), a.shape(0).size())}});
               }});
  t.push_back({kTranspose, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 return "torch.transpose(" + a.in(0) + ", " + a.attr("dim0") + ", " + a.attr("dim1") + ")";
               },
               ChannelRule::Transpose, OnednnLowering::Aten, transpose_onnx});
  t.push_back({kChannelShuffle, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.channel_shuffle(" + a.in(0) + ", " + a.attr("groups") + ")"; },
               ChannelRule::Barrier, OnednnLowering::Aten, channel_shuffle_onnx});
}

}  // namespace tailor::ops::detail
