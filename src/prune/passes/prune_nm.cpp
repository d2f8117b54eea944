// Pass prune-nm: N:M semi-structured sparsity along the input dimension (2:4, 4:8); layers whose input count
// M does not divide are left dense and reported.
#include "tailor/pass/pass.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor {
namespace {
class NMPrunePass : public Pass {
 public:
  Option<int64_t> n{this, "n", 2, "weights kept in each group"};
  Option<int64_t> m{this, "m", 4, "group size along inputs"};

  PassInfo info() const override { return {"prune-nm", "N:M semi-structured sparsity (2:4, 4:8) of conv/linear weights"}; }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    std::map<std::string, torch::Tensor> weights;
    int64_t skipped = 0;
    for (const auto& name : prunable_weights(module)) {
      if (module.tensor(name).size(1) % *m == 0) weights[name] = module.tensor(name);
      else ++skipped;  // e.g. a first conv with 3 input channels for 2:4
    }
    const Masks masks = nm_masks(weights, static_cast<int>(*n), static_cast<int>(*m));
    torch::NoGradGuard no_grad;
    for (const auto& [name, mk] : masks) module.tensor(name).mul_(mk);
    context.stat("sparsity", mask_sparsity(masks));
    context.stat("layers_pruned", static_cast<int64_t>(masks.size()));
    context.stat("layers_skipped", skipped);
    return !masks.empty();
  }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(prune_nm, tailor::NMPrunePass);
