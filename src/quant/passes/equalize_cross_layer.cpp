// Pass equalize-cross-layer: cross-layer equalization of conv pairs (batch norm folded first).
#include "tailor/pass/pass.hpp"
#include "tailor/quant/quant.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor::quant {
namespace {
class EqualizePass : public Pass {
 public:
  Option<bool> relu6_to_relu{this, "relu6_to_relu", true, "turn ReLU6 between pairs into ReLU (as AIMET does)"};

  PassInfo info() const override {
    return {"equalize-cross-layer", "cross-layer equalization of conv pairs (folds batch norm first)"};
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    const bool folded = fold_batch_norm(module);
    if (folded) module.recompile();
    const int64_t pairs = equalize_cross_layer(module, relu6_to_relu);
    context.stat("pairs", pairs);
    return pairs > 0 || folded;
  }
};
}  // namespace
}  // namespace tailor::quant

TAILOR_REGISTER_PASS(equalize_cross_layer, tailor::quant::EqualizePass);
