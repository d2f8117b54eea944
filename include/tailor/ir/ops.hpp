// tailor/ir/ops.hpp: the op kinds the IR models, and what passes may assume about each.
// Kinds not listed here do not exist in a Graph except as `opaque`, which runs any LibTorch operator by
// its schema name (attribute `schema`) and which passes must treat as a barrier.
#pragma once

#include <string>

namespace tailor::ops {

// Structure.
inline constexpr const char* kConstant = "constant";  ///< attrs: value
inline constexpr const char* kParam = "param";        ///< attrs: name (dotted path), buffer (bool)
inline constexpr const char* kList = "list";          ///< inputs: elements
inline constexpr const char* kListUnpack = "list_unpack";
inline constexpr const char* kTuple = "tuple";
inline constexpr const char* kTupleUnpack = "tuple_unpack";
inline constexpr const char* kOpaque = "opaque";  ///< attrs: schema ("aten::name.overload"); inputs as the schema's

// Compute. Optional tensor inputs are always present and read a `constant` None when absent.
inline constexpr const char* kConv = "conv";  ///< (x, weight, bias) stride, padding, dilation, groups; 1d or 2d
inline constexpr const char* kLinear = "linear";          ///< (x, weight, bias)
inline constexpr const char* kMatmul = "matmul";          ///< (a, b) as torch.matmul
inline constexpr const char* kBatchNorm = "batch_norm";   ///< (x, weight, bias, mean, var) momentum, eps
inline constexpr const char* kLayerNorm = "layer_norm";   ///< (x, weight, bias) normalized_shape, eps
inline constexpr const char* kGroupNorm = "group_norm";   ///< (x, weight, bias) num_groups, eps
inline constexpr const char* kRelu = "relu";
inline constexpr const char* kHardtanh = "hardtanh";  ///< min_val, max_val (ReLU6 is hardtanh 0..6)
inline constexpr const char* kGelu = "gelu";          ///< approximate ('none' or 'tanh')
inline constexpr const char* kSilu = "silu";
inline constexpr const char* kSigmoid = "sigmoid";
inline constexpr const char* kHardsigmoid = "hardsigmoid";
inline constexpr const char* kHardswish = "hardswish";
inline constexpr const char* kTanh = "tanh";
inline constexpr const char* kSoftmax = "softmax";        ///< dim
inline constexpr const char* kLogSoftmax = "log_softmax";  ///< dim
inline constexpr const char* kAdd = "add";  ///< (a, b) alpha; b may be a scalar value
inline constexpr const char* kSub = "sub";  ///< (a, b) alpha
inline constexpr const char* kMul = "mul";
inline constexpr const char* kDiv = "div";
inline constexpr const char* kCat = "cat";      ///< (tensors...) dim
inline constexpr const char* kChunk = "chunk";  ///< (x) chunks, dim; one output per chunk
inline constexpr const char* kFlatten = "flatten";  ///< start_dim, end_dim
inline constexpr const char* kReshape = "reshape";  ///< (x, shape) shape is an int[] value
inline constexpr const char* kPermute = "permute";  ///< dims
inline constexpr const char* kTranspose = "transpose";  ///< dim0, dim1
inline constexpr const char* kContiguous = "contiguous";
inline constexpr const char* kMaxPool = "max_pool";  ///< kernel_size, stride, padding, dilation, ceil_mode
inline constexpr const char* kAvgPool = "avg_pool";  ///< kernel_size, stride, padding, ceil_mode, count_include_pad
inline constexpr const char* kAdaptiveAvgPool = "adaptive_avg_pool";  ///< output_size
inline constexpr const char* kMean = "mean";                          ///< dims, keepdim
inline constexpr const char* kDropout = "dropout";                    ///< p; identity in eval mode
inline constexpr const char* kChannelShuffle = "channel_shuffle";     ///< groups
/// (x, scale, zero_point) quantize-dequantize with the straight-through gradient: qmin, qmax, axis (-1 for
/// per-tensor, else the channel axis of scale/zero_point), group_size (0, or k: x is viewed as rows of k
/// elements, one scale per row, for group-wise weights), learnable (scale and zero point learn as in LSQ).
/// scale is float32 and zero_point int32 tensors; both are `param` buffers (parameters when learnable).
inline constexpr const char* kFakeQuant = "fake_quant";

/// True for ops that act on each element alone (a channel's output depends on that channel only).
bool is_elementwise_unary(const std::string& kind);
/// True for add/sub/mul/div.
bool is_binary(const std::string& kind);
/// True for kinds this version of the IR models natively (everything above but opaque).
bool is_known(const std::string& kind);

/// How many value inputs and outputs a node of `kind` has; -1 where the count varies (lists, tuples, chunk,
/// opaque). `min_inputs` is the least a variable-input kind accepts. Loaders check every node against it.
struct Arity {
  int inputs = -1;
  int outputs = 1;
  int min_inputs = 0;
};
Arity arity(const std::string& kind);

}  // namespace tailor::ops
