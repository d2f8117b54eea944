// Pass prune-magnitude: unstructured L1-magnitude sparsity. The zeros are written into the weights (a model
// loaded from a file has no training loop to keep masks in; SparsityMasks does that inside one).
#include "tailor/pass/pass.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor {
namespace {
class MagnitudePrunePass : public Pass {
 public:
  Option<double> ratio{this, "ratio", 0.5, "fraction of conv/linear weights set to zero"};
  Option<bool> global{this, "global", false, "one threshold over all layers instead of one per layer"};

  PassInfo info() const override {
    return {"prune-magnitude", "unstructured L1-magnitude sparsity of conv/linear weights"};
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    std::map<std::string, torch::Tensor> weights;
    for (const auto& name : prunable_weights(module)) weights[name] = module.tensor(name);
    const Masks masks = magnitude_masks(weights, ratio, global);
    torch::NoGradGuard no_grad;
    for (const auto& [name, m] : masks) module.tensor(name).mul_(m);
    context.stat("sparsity", mask_sparsity(masks));
    context.stat("layers_pruned", static_cast<int64_t>(masks.size()));
    return *ratio > 0;
  }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(prune_magnitude, tailor::MagnitudePrunePass);
