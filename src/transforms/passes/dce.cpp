// Pass dce: nodes whose results nobody reads, and the tensors only they named, are removed.
#include "tailor/pass/pass.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {
namespace {
class DeadCodePass : public Pass {
 public:
  PassInfo info() const override { return {"dce", "remove nodes whose results are never used"}; }
  bool run(GraphModuleImpl& module, PassContext&) override {
    const bool changed = eliminate_dead_code(module.mutable_graph());
    if (changed) module.drop_unused_tensors();
    return changed;
  }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(dce, tailor::DeadCodePass);
