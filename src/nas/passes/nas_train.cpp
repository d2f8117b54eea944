// Pass nas-train: trains a weight-sharing supernet of a search space and writes it; the model becomes the
// supernet's largest subnet (tailor::nas::train_supernet).
#include "../../train/passes/training_pass.hpp"
#include "nas_pass.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor::nas {
namespace {

class NasTrainPass : public train::detail::TrainingPass {
 public:
  // A supernet trains every subnet on shared weights and needs more epochs than one network (docs/nas.md: 8
  // epochs took the Fashion-MNIST subnets from 73-75% to 82-83%).
  NasTrainPass() { epochs.set_default(8); }
  Option<std::string> space{this, "space", "fashion-resnet",
                            "search space: fashion-resnet, fashion-mobilenet, resnet, mobilenet, or a JSON file of one"};
  Option<std::string> out{this, "out", "", "supernet file to write (default supernet-<space>.pt)"};
  Option<int64_t> random_subnets{this, "random_subnets", SupernetTrainOptions{}.random_subnets,
                                 "sandwich rule: random subnets per step besides the largest and the smallest"};
  Option<double> temperature{this, "temperature", SupernetTrainOptions{}.temperature,
                             "in-place distillation temperature"};
  Option<int64_t> validation{this, "validation", 5000,
                             "images held out of the training split; subnets are judged on them, never trained on"};
  Option<int64_t> calibration_batches{this, "calibration_batches", 8,
                                      "training batches that re-estimate a subnet's batch-norm statistics"};

  PassInfo info() const override {
    PassInfo i{"nas-train", "train a weight-sharing supernet (sandwich rule, in-place distillation); the model becomes "
                            "its largest subnet"};
    i.needs.training_data = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    const models::SearchSpace sp = load_space(space);
    const std::string file = out->empty() ? "supernet-" + sp.name + ".pt" : *out;
    const Split split = detail::training_split(limit, validation);
    Supernet net(sp, static_cast<uint64_t>(*seed));
    SupernetTrainOptions so;
    so.train = train_options(context);
    so.random_subnets = static_cast<int>(*random_subnets);
    so.temperature = temperature;
    const data::Dataset evaluation = eval_set();
    const train::TrainResult r = train_supernet(net, split.train, *eval_limit != 0 ? &evaluation : nullptr, so);
    report(r, so.train, context);
    if (so.train.distributed && so.train.distributed->rank() != 0) return true;
    net->save(file);
    auto judge = [&](const models::ArchConfig& a) {
      GraphModule m = subnet(net, a, split.train, calibration_batches, file);
      train::Model model = train::as_model(m, a.str());
      return std::make_pair(m, train::accuracy(model, split.validation));
    };
    const auto [largest, largest_top1] = judge(sp.largest());
    const double smallest_top1 = judge(sp.smallest()).second;
    assign_module(module, *largest);
    module.eval();
    context.stat("supernet", file);
    context.stat("space", sp.name);
    context.stat("config", sp.largest().str());
    context.stat("validation_top1", largest_top1);
    context.stat("smallest_validation_top1", smallest_top1);
    return true;
  }
};

}  // namespace
}  // namespace tailor::nas

TAILOR_REGISTER_PASS(nas_train, tailor::nas::NasTrainPass);
