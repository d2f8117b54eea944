// Pass finetune: trains the model on labelled data (recovers pruned and quantized models).
#include "training_pass.hpp"

namespace tailor::train {
namespace {
class FinetunePass : public detail::TrainingPass {
 public:
  PassInfo info() const override {
    PassInfo i{"finetune", "train the model on labelled data (recovers pruned/quantized models)"};
    i.needs.training_data = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    train_module(module, nullptr, {}, context);
    return true;
  }
};
}  // namespace
}  // namespace tailor::train

TAILOR_REGISTER_PASS(finetune, tailor::train::FinetunePass);
