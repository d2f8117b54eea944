#include "tailor/ir/ops.hpp"

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

Arity arity(const std::string& kind) {
  if (kind == kConstant || kind == kParam) return {0, 1};
  if (kind == kConv || kind == kLinear || kind == kLayerNorm || kind == kGroupNorm || kind == kFakeQuant) return {3, 1};
  if (kind == kBatchNorm) return {5, 1};
  if (kind == kMatmul || kind == kReshape || is_binary(kind)) return {2, 1};
  if (kind == kList || kind == kTuple) return {-1, 1, 0};
  if (kind == kCat) return {-1, 1, 1};
  if (kind == kListUnpack || kind == kTupleUnpack || kind == kChunk) return {1, -1};
  if (kind == kOpaque) return {-1, -1, 0};
  return {1, 1};  // unary: activations, softmax, shape ops, pooling, mean, dropout, channel_shuffle
}

}  // namespace tailor::ops
