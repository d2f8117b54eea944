// tailor/prune/prune.hpp: pruning on the graph IR. Unstructured and N:M sparsity keep weights' shapes and
// zero them through masks that survive training; structured channel pruning finds which channels are tied
// together (residual adds, concatenations, depthwise convolutions, norms, flatten into linear layers) and
// removes them physically, so the model gets smaller and faster on every backend.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "tailor/ir/graph_module.hpp"

namespace tailor {

// --- masks: unstructured and N:M ---------------------------------------------------------------------------

/// Masks by parameter name (dotted, as named_parameters() reports it): 1 keeps a weight, 0 prunes it.
using Masks = std::map<std::string, torch::Tensor>;

/// The weights pruning considers by default: conv and linear weights of a GraphModule, or every parameter of
/// dimension >= 2 of a plain module (biases and norms are left dense, as torch.nn.utils.prune users do).
std::vector<std::string> prunable_weights(const GraphModuleImpl& module);
std::vector<std::string> prunable_weights(const torch::nn::Module& module);

/// L1-magnitude masks that zero `ratio` of the weights: per layer (each tensor loses `ratio` of its own
/// weights, as torch.nn.utils.prune.l1_unstructured) or globally (one threshold over all of them, as
/// global_unstructured). Ties at the threshold are broken by position, as torch.topk does. ratio in [0, 1).
Masks magnitude_masks(const std::map<std::string, torch::Tensor>& weights, double ratio, bool global);

/// N:M semi-structured masks: in every group of M consecutive weights along the input dimension (dimension 1;
/// for convolutions the input channels at each kernel position), the N largest in magnitude are kept.
Masks nm_masks(const std::map<std::string, torch::Tensor>& weights, int n, int m);

/// Fraction of zeros over the masked tensors.
double mask_sparsity(const Masks& masks);

/// Keeps masked weights at zero inside any training loop: attach() zeroes them, registers each mask as a buffer
/// next to its weight (`<leaf>_mask`, so it is saved with the model) and a gradient hook that zeroes masked
/// gradients; call apply() after each optimizer step (momentum and weight decay could otherwise revive them).
class SparsityMasks {
 public:
  SparsityMasks() = default;
  void attach(torch::nn::Module& module, const Masks& masks);
  /// Re-applies the masks to the weights (after optimizer.step()).
  void apply();
  /// Replaces the masks (gradual schedules); same names as attached.
  void update(const Masks& masks);
  const Masks& masks() const { return masks_; }
  double sparsity() const { return mask_sparsity(masks_); }

 private:
  struct Entry {
    torch::Tensor weight;
    torch::Tensor mask;  // the registered buffer; updated in place so hooks and buffers see new masks
  };
  std::map<std::string, Entry> entries_;
  Masks masks_;
};

/// Gradual magnitude pruning (Zhu & Gupta 2017): sparsity rises from `initial` to `final` along a cubic
/// curve between steps `begin` and `end`, updated every `every` steps.
struct GradualSchedule {
  double initial = 0, final = 0.9;
  int64_t begin = 0, end = 1000, every = 100;
  double sparsity_at(int64_t step) const;
  /// Whether masks are recomputed at this step.
  bool updates_at(int64_t step) const;
};

// --- structured channel pruning ----------------------------------------------------------------------------

enum class Criterion { L1, L2, BnScale, Taylor, Random };
Criterion criterion_from_string(const std::string& name);  ///< l1, l2, bn, taylor, random
std::string to_string(Criterion c);

/// A set of channels that must be removed together, and the layers it touches.
struct ChannelGroup {
  int id = 0;
  std::vector<std::string> producers;  ///< conv/linear nodes whose output channels the group holds
  std::vector<std::string> consumers;  ///< nodes that read the channels (inputs of convs/linears, norms, ...)
  int64_t channels = 0;                ///< prunable units in the group (a unit may span several positions)
  bool prunable = true;
  std::string reason;  ///< why not prunable (reaches the model output, an opaque op, a grouped conv, ...)
};

struct ChannelPruneOptions {
  double ratio = 0.5;  ///< fraction of each group's channels to remove (layer-wise) or of all channels (global)
  Criterion criterion = Criterion::L1;
  bool global = false;
  double max_ratio = 0.9;  ///< no group loses more than this fraction
  int64_t round_to = 1;    ///< kept channel counts are multiples of this (8 suits SIMD widths)
  std::vector<std::string> ignore;  ///< producer node names whose groups are left alone
  uint64_t seed = 0;               ///< for Criterion::Random
  /// Per-group ratios by producer name (overrides `ratio` for the groups those producers are in).
  std::map<std::string, double> layer_ratios;
};

struct ChannelPruneResult {
  int64_t params_before = 0, params_after = 0;
  int64_t channels_removed = 0;
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> layers;  ///< producer: channels before, after
};

/// Channel dependency analysis on a module whose shapes are inferred for `input_shapes`.
std::vector<ChannelGroup> channel_groups(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes);

/// Computes the Taylor criterion's gradients: call with a function that runs a few batches forward and
/// backward on `module` (accumulating .grad); the importance is |w * dL/dw| summed per channel.
using GradientFn = std::function<void(GraphModuleImpl&)>;

/// The Taylor criterion's gradients from data: cross-entropy of the model's [N, classes] output against `labels`
/// (one tensor per input batch) or, without labels, against the model's own predictions; any other output shape
/// uses its mean square. Runs in eval mode with gradients on, so batch-norm statistics do not move.
GradientFn gradients_from_batches(std::vector<torch::Tensor> inputs, std::vector<torch::Tensor> labels = {});

/// Removes channels in place. The module keeps working at the same input shapes and exports as usual; ratio 0
/// changes nothing. Throws (leaving the module untouched) on a ratio outside [0, 1) or when a group would lose
/// every channel.
ChannelPruneResult prune_channels(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes,
                                  const ChannelPruneOptions& options, const GradientFn& gradients = nullptr);

/// Iterative pruning: `steps` rounds that each remove the same fraction of the remaining channels, so that
/// `options.ratio` of them are gone after the last; `between(round)` runs after each round (fine-tune there, in
/// the caller's own loop). Returns one result per round.
std::vector<ChannelPruneResult> prune_channels_iteratively(GraphModuleImpl& module,
                                                           const std::vector<std::vector<int64_t>>& input_shapes,
                                                           const ChannelPruneOptions& options, int steps,
                                                           const std::function<void(int round)>& between,
                                                           const GradientFn& gradients = nullptr);

/// Sensitivity analysis: each prunable group pruned alone at each ratio, on a copy; `evaluate` returns the
/// metric (e.g. accuracy) of a pruned copy. Result: group producers joined by '+', then one value per ratio.
std::vector<std::pair<std::string, std::vector<double>>> channel_sensitivity(
    const GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes,
    const std::vector<double>& ratios, const std::function<double(GraphModuleImpl&)>& evaluate,
    Criterion criterion = Criterion::L1);

/// A deep copy (tensors cloned) of a GraphModule: what sensitivity analysis and sweeps prune.
GraphModule clone_module(const GraphModuleImpl& module);

/// Makes `dst` a copy of `src` (graph and tensors cloned; dst's provenance kept): transformations that work on a
/// clone copy it back only when they succeed, and passes that emit a new model (search) replace the one given.
void assign_module(GraphModuleImpl& dst, const GraphModuleImpl& src);

}  // namespace tailor
