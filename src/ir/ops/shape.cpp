// Op family: shape and layout (cat, chunk, flatten, reshape, permute, transpose, channel shuffle).
#include "families.hpp"

namespace tailor::ops::detail {

void add_shape_ops(std::vector<OpDef>& t) {
  t.push_back({kCat, Arity{-1, 1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.cat([" + a.args() + "], " + a.attr("dim") + ")"; },
               ChannelRule::Concat, OnednnLowering::Concat});
  t.push_back({kChunk, Arity{1, -1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 const std::string call = "torch.chunk(" + a.in(0) + ", " + a.attr("chunks") + ", " + a.attr("dim") + ")";
                 return a.node().outputs.size() == 1 ? call + "[0]" : call;
               },
               ChannelRule::Barrier, OnednnLowering::Aten});
  t.push_back({kFlatten, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 return "torch.flatten(" + a.in(0) + ", " + a.attr("start_dim") + ", " + a.attr("end_dim") + ")";
               },
               ChannelRule::Flatten, OnednnLowering::Aten});
  t.push_back({kReshape, Arity{2, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.reshape(" + a.args() + ")"; }, ChannelRule::Barrier,
               OnednnLowering::Aten});
  t.push_back({kPermute, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.permute(" + a.in(0) + ", " + a.attr("dims") + ")"; },
               ChannelRule::Permute, OnednnLowering::Aten});
  t.push_back({kTranspose, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 return "torch.transpose(" + a.in(0) + ", " + a.attr("dim0") + ", " + a.attr("dim1") + ")";
               },
               ChannelRule::Transpose, OnednnLowering::Aten});
  t.push_back({kChannelShuffle, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.channel_shuffle(" + a.in(0) + ", " + a.attr("groups") + ")"; },
               ChannelRule::Barrier, OnednnLowering::Aten});
}

}  // namespace tailor::ops::detail
