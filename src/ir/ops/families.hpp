// The op families that fill the op table (private to src/ir): one function per family file.
#pragma once

#include <vector>

#include "tailor/ir/op_table.hpp"

namespace tailor::ops::detail {
void add_structure_ops(std::vector<OpDef>& table);
void add_matmul_ops(std::vector<OpDef>& table);
void add_normalization_ops(std::vector<OpDef>& table);
void add_activation_ops(std::vector<OpDef>& table);
void add_arithmetic_ops(std::vector<OpDef>& table);
void add_shape_ops(std::vector<OpDef>& table);
void add_pooling_ops(std::vector<OpDef>& table);
void add_quantization_ops(std::vector<OpDef>& table);
}  // namespace tailor::ops::detail
