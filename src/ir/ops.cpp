#include "tailor/ir/ops.hpp"

#include "tailor/ir/op_table.hpp"

#include <set>

namespace tailor::ops {

bool is_elementwise_unary(const std::string& kind) {
  static const std::set<std::string> kinds = {kRelu,        kHardtanh,  kGelu, kSilu,    kSigmoid,
                                              kHardsigmoid, kHardswish, kTanh, kDropout, kContiguous};
  return kinds.count(kind) != 0;
}

bool is_binary(const std::string& kind) { return kind == kAdd || kind == kSub || kind == kMul || kind == kDiv; }

bool is_known(const std::string& kind) {
  static const std::set<std::string> kinds = {
      kConstant, kParam,   kList,       kListUnpack, kTuple,   kTupleUnpack, kConv,      kLinear,    kMatmul,
      kBatchNorm, kLayerNorm, kGroupNorm, kRelu,    kHardtanh, kGelu,       kSilu,      kSigmoid,   kHardsigmoid,
      kHardswish, kTanh,   kSoftmax,    kLogSoftmax, kAdd,     kSub,        kMul,       kDiv,       kCat,
      kChunk,    kFlatten, kReshape,    kPermute,    kTranspose, kContiguous, kMaxPool, kAvgPool,  kAdaptiveAvgPool,
      kMean,     kDropout, kChannelShuffle, kFakeQuant};
  return kinds.count(kind) != 0;
}

Arity arity(const std::string& kind) { return op_def(kind).arity; }

}  // namespace tailor::ops
