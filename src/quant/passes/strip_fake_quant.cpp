// Pass strip-fake-quant: a quantized graph back to float (its fake_quant nodes removed).
#include "tailor/pass/pass.hpp"
#include "tailor/quant/quant.hpp"

namespace tailor::quant {
namespace {
class StripFakeQuantPass : public Pass {
 public:
  PassInfo info() const override { return {"strip-fake-quant", "remove fake_quant nodes (back to float)"}; }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    const int64_t removed = strip_fake_quant(module);
    context.stat("removed", removed);
    return removed > 0;
  }
};
}  // namespace
}  // namespace tailor::quant

TAILOR_REGISTER_PASS(strip_fake_quant, tailor::quant::StripFakeQuantPass);
