// Pass canonicalize: traced idioms rewritten into the native ops the backends and analyses know.
#include "tailor/pass/pass.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {
namespace {
class CanonicalizePass : public Pass {
 public:
  PassInfo info() const override {
    return {"canonicalize", "rewrite traced idioms (addmm with a transposed weight) into native ops"};
  }
  bool run(GraphModuleImpl& module, PassContext&) override { return canonicalize(module.mutable_graph()); }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(canonicalize, tailor::CanonicalizePass);
