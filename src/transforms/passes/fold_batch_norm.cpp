// Pass fold-batch-norm: eval-mode batch norm folded into the conv or linear layer before it.
#include "tailor/pass/pass.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {
namespace {
class FoldBatchNormPass : public Pass {
 public:
  PassInfo info() const override {
    return {"fold-batch-norm", "fold eval-mode batch norm into the preceding conv or linear layer"};
  }
  bool run(GraphModuleImpl& module, PassContext&) override { return fold_batch_norm(module); }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(fold_batch_norm, tailor::FoldBatchNormPass);
