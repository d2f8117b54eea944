// tailor/transforms/transforms.hpp: general graph rewrites that keep a model's function: dead-code
// elimination, canonical forms for traced idioms, batch-norm folding and dropout removal.
// Each returns true when it changed the graph. Passes wrapping them live in pass/builtin.
#pragma once

#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// Removes nodes whose outputs nobody reads (all tailor ops are free of side effects).
bool eliminate_dead_code(Graph& graph);

/// Rewrites traced idioms into native ops: addmm(b, x, t(W)) and matmul(x, t(W)) into linear.
bool canonicalize(Graph& graph);

/// Folds an eval-mode batch norm into the convolution or linear layer that feeds only it. The folded
/// weights replace the layer's own; the batch-norm node and its tensors disappear.
bool fold_batch_norm(GraphModuleImpl& module);

/// Removes dropout nodes (identity at inference).
bool remove_dropout(GraphModuleImpl& module);

}  // namespace tailor
