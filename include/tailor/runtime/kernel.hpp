// tailor/runtime/kernel.hpp: what one step of a compiled executable runs, described by what decides its time
// (primitive, implementation, data types, shapes, post-ops, layout). Executables list their kernels in the order
// of run_timed()'s steps; the latency model (tailor/latency) keys its tables and regressors on them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tailor {

struct Kernel {
  std::string node;                ///< the graph node (or value, for conversions) the step belongs to
  std::string kind;                ///< the step's kind as run_timed() names it ("conv", "reorder", "aten::size")
  std::vector<std::string> fused;  ///< other graph nodes the step computes
  std::string op;       ///< primitive family: conv, linear, pool, mean, eltwise, binary, concat, softmax, norm,
                        ///< reorder, quantize, convert (to or from ATen), aten (anything run by ATen)
  std::string impl;     ///< the implementation that runs ("jit:avx2", "brg:avx2", "gemm:jit", "aten")
  std::string dtype;    ///< source:weight:destination data types, or one type ("f32", "u8:s8:u8")
  std::string post_ops; ///< kinds of the fused nodes, in order, joined by '+' ("add+relu")
  std::string layout;   ///< destination memory layout ("plain", "8c" for channel blocks of 8)
  std::vector<std::vector<int64_t>> inputs;  ///< activation input shapes
  std::vector<int64_t> output;               ///< first output shape
  std::vector<int64_t> weight;               ///< weight shape (conv: OC x IC/groups x KH x KW), when there is one
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  double macs = 0;   ///< multiply-accumulates (the op table's count, fused nodes excluded)
  double bytes = 0;  ///< activation and weight bytes read and written once

  /// A canonical text of everything above that decides the time (node names excluded): equal keys, equal work.
  std::string key() const;
  /// Appends key() to `out` (search loops reuse one buffer).
  void append_key(std::string& out) const;
  /// The numeric configuration a regressor reads, in the order of kernel_feature_names().
  std::vector<float> features() const;
};

/// Names of Kernel::features(), for tables and docs.
const std::vector<std::string>& kernel_feature_names();

}  // namespace tailor
