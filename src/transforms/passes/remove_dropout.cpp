// Pass remove-dropout: dropout is the identity at inference.
#include "tailor/pass/pass.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {
namespace {
class RemoveDropoutPass : public Pass {
 public:
  PassInfo info() const override { return {"remove-dropout", "remove dropout (identity at inference)"}; }
  bool run(GraphModuleImpl& module, PassContext&) override { return remove_dropout(module); }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(remove_dropout, tailor::RemoveDropoutPass);
