// The op families that fill the op table (private to src/ir): one function per family file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tailor/ir/op_table.hpp"

namespace tailor::ops::detail {
/// ONNX writes a pad per side: [begin..., end...].
inline std::vector<int64_t> onnx_pads(const std::vector<int64_t>& padding) {
  std::vector<int64_t> out(padding);
  out.insert(out.end(), padding.begin(), padding.end());
  return out;
}
/// A dimension index made non-negative for a tensor of `rank` dimensions.
inline int64_t onnx_axis(int64_t dim, size_t rank) { return dim < 0 ? dim + static_cast<int64_t>(rank) : dim; }
/// Spellings of the op that ONNX writes under the same single-input name (Relu, Sigmoid, ...).
inline std::function<void(OnnxArgs&)> onnx_unary(const char* op_type) {
  return [op_type](OnnxArgs& a) { a.emit(op_type, {a.in(0)}, {a.out(0)}); };
}
/// Two-input ONNX ops (MatMul, Add, ...).
inline std::function<void(OnnxArgs&)> onnx_binary(const char* op_type) {
  return [op_type](OnnxArgs& a) { a.emit(op_type, {a.in(0), a.in(1)}, {a.out(0)}); };
}

/// The ONNX spelling of an opaque node, chosen by its schema (src/ir/ops/opaque_onnx.cpp).
void opaque_onnx(OnnxArgs& a);

void add_structure_ops(std::vector<OpDef>& table);
void add_matmul_ops(std::vector<OpDef>& table);
void add_normalization_ops(std::vector<OpDef>& table);
void add_activation_ops(std::vector<OpDef>& table);
void add_arithmetic_ops(std::vector<OpDef>& table);
void add_shape_ops(std::vector<OpDef>& table);
void add_pooling_ops(std::vector<OpDef>& table);
void add_quantization_ops(std::vector<OpDef>& table);
}  // namespace tailor::ops::detail
