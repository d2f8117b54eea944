// Pass early-exit: adds a classifier head after chosen nodes, trains the heads (distilled from the model's own head,
// with the backbone frozen or jointly) and calibrates per-exit confidence thresholds on a validation split, so that
// the placement planner can answer confident requests on the edge and send only the rest to the cloud.
#include <torch/torch.h>

#include "tailor/core/text.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/place/place.hpp"

namespace tailor::place {
namespace {

std::vector<torch::Tensor> outputs_of(const c10::IValue& v) {
  if (v.isTensor()) return {v.toTensor()};
  std::vector<torch::Tensor> out;
  for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
  return out;
}

class EarlyExitPass : public Pass {
 public:
  ListOption<std::string> at{this, "at", {}, "nodes after which an exit head is added (their output: N x C x H x W or N x C)"};
  Option<int64_t> epochs{this, "epochs", 2, "epochs of head training"};
  Option<double> lr{this, "lr", 0.01, "Adam learning rate"};
  Option<int64_t> batch_size{this, "batch_size", 128, "batch size"};
  Option<int64_t> limit{this, "limit", -1, "train on the first N training images (-1: all but the validation split)"};
  Option<int64_t> validation{this, "validation", 5000, "the last N training images, held out to calibrate thresholds"};
  EnumOption mode{this, "mode", "frozen", {"frozen", "joint"}, "frozen: train the heads only; joint: the backbone too"};
  Option<double> temperature{this, "temperature", 2.0, "distillation temperature (the model's own head teaches)"};
  Option<double> max_drop{this, "max_drop", 1.0, "points of top-1 the model with its exits may lose against its own "
                          "head on the validation split (sets the thresholds)"};
  Option<int64_t> seed{this, "seed", 0, "data order and head initialization"};

  PassInfo info() const override {
    PassInfo i{"early-exit", "add exit heads after nodes, train them by distillation and calibrate their thresholds"};
    i.needs.training_data = true;
    i.needs.input_shapes = true;
    return i;
  }

  bool run(GraphModuleImpl& module, PassContext& context) override {
    TAILOR_CHECK(!at->empty(), "early-exit: give the nodes to exit after, e.g. at=[layer2]");
    TAILOR_CHECK(*validation > 0, "early-exit: validation must be at least 1 image");
    module.infer_shapes(context.input_shapes);
    Graph& g = module.mutable_graph();
    TAILOR_CHECK(!g.outputs().empty() && g.value(g.outputs()[0]).shape.size() == 2, "early-exit: the model's first "
                 "output must be N x classes logits");
    const int64_t classes = g.value(g.outputs()[0]).shape[1];
    torch::manual_seed(static_cast<uint64_t>(*seed));
    std::vector<std::string> head_params, names, outputs;
    std::vector<int> new_outputs = g.outputs();
    for (size_t k = 0; k < at->size(); ++k) {
      const std::string& name = (*at)[k];
      const int id = g.find_id(name);
      TAILOR_CHECK(id >= 0, "early-exit: no node '", name, "' in the graph");
      const int v = g.node(id).outputs.at(0);
      const auto shape = g.value(v).shape;
      TAILOR_CHECK(g.value(v).type == ValueType::Tensor && (shape.size() == 4 || shape.size() == 2), "early-exit: node '",
                   name, "' does not output an N x C x H x W or N x C tensor");
      outputs.push_back(add_head(module, id, v, shape[1], classes, "exits." + std::to_string(k), head_params));
      new_outputs.push_back(g.find(outputs.back())->outputs[0]);
      names.push_back(name);
    }
    g.set_outputs(new_outputs);
    g.verify();
    module.recompile();
    train_heads(module, head_params, context);
    calibrate(module, names, outputs, context);
    return true;
  }

 private:
  // pool -> flatten -> linear, inserted right after the node it reads so that a topological prefix that reaches
  // the exit includes its head. Returns the name of the head's last node.
  static std::string add_head(GraphModuleImpl& m, int after, int value, int64_t channels, int64_t classes,
                              const std::string& prefix, std::vector<std::string>& params) {
    Graph& g = m.mutable_graph();
    const auto& order = g.order();
    auto pos = std::find(order.begin(), order.end(), after);
    std::optional<int> before;
    if (++pos != order.end()) before = *pos;
    int x = value;
    if (g.value(value).shape.size() == 4) {
      Node pool;
      pool.kind = ops::kAdaptiveAvgPool;
      pool.name = g.unique_name(prefix + ".pool");
      pool.inputs = {x};
      pool.attrs["output_size"] = std::vector<int64_t>{1, 1};
      x = g.node(g.add_node(pool, {ValueType::Tensor}, before)).outputs[0];
      Node flat;
      flat.kind = ops::kFlatten;
      flat.name = g.unique_name(prefix + ".flatten");
      flat.inputs = {x};
      flat.attrs["start_dim"] = int64_t{1};
      flat.attrs["end_dim"] = int64_t{-1};
      x = g.node(g.add_node(flat, {ValueType::Tensor}, before)).outputs[0];
    }
    auto linear = torch::nn::Linear(channels, classes);
    auto param = [&](const std::string& name, const torch::Tensor& t) {
      m.add_tensor(name, t.detach().clone(), false);
      params.push_back(name);
      Node p;
      p.kind = ops::kParam;
      p.name = g.unique_name(name);
      p.attrs["name"] = name;
      p.attrs["buffer"] = false;
      return g.node(g.add_node(p, {ValueType::Tensor}, before)).outputs[0];
    };
    const int w = param(prefix + ".weight", linear->weight), b = param(prefix + ".bias", linear->bias);
    Node fc;
    fc.kind = ops::kLinear;
    fc.name = g.unique_name(prefix + ".fc");
    fc.inputs = {x, w, b};
    const int id = g.add_node(fc, {ValueType::Tensor}, before);
    return g.node(id).name;
  }

  data::Dataset split(bool train) const {
    const auto all = data::load_fashion_mnist(data::Split::Train);
    const int64_t n = all.size(), val = std::min<int64_t>(*validation, n - 1);
    if (!train) return {all.images.slice(0, n - val), all.labels.slice(0, n - val)};
    const int64_t end = *limit > 0 ? std::min(*limit, n - val) : n - val;
    return {all.images.slice(0, 0, end), all.labels.slice(0, 0, end)};
  }

  void train_heads(GraphModuleImpl& module, const std::vector<std::string>& heads, PassContext& context) {
    const bool joint = *mode == "joint";
    std::vector<torch::Tensor> trained;
    std::map<std::string, bool> saved;
    for (auto& p : module.named_parameters()) {
      saved[p.key()] = p.value().requires_grad();
      const bool head = std::find(heads.begin(), heads.end(), p.key()) != heads.end();
      p.value().set_requires_grad(head || joint);
      if (head || joint) trained.push_back(p.value());
    }
    torch::optim::Adam opt(trained, torch::optim::AdamOptions(lr));
    const auto train = split(true);
    const double t = temperature;
    module.train(joint);  // a frozen backbone keeps its batch-norm statistics
    double last = 0;
    for (int64_t e = 0; e < *epochs; ++e) {
      double sum = 0;
      int64_t steps = 0;
      for (const auto& b : data::batches(train, batch_size, true, static_cast<uint64_t>(*seed + e))) {
        const auto outs = outputs_of(module.run({b.images}));
        const auto teacher = torch::softmax(outs[0].detach() / t, 1);
        torch::Tensor loss = joint ? torch::cross_entropy_loss(outs[0], b.labels) : torch::zeros({});
        const double batch = static_cast<double>(b.labels.size(0));
        for (size_t k = 1; k < outs.size(); ++k)
          loss = loss +
                 t * t * torch::kl_div(torch::log_softmax(outs[k] / t, 1), teacher, at::Reduction::Sum) / batch +
                 torch::cross_entropy_loss(outs[k], b.labels);
        opt.zero_grad();
        loss.backward();
        opt.step();
        sum += loss.item<double>();
        ++steps;
      }
      last = steps ? sum / static_cast<double>(steps) : 0;
      if (!context.quiet) std::fprintf(stderr, "early-exit: epoch %lld/%lld loss %.4f\n", static_cast<long long>(e + 1),
                                       static_cast<long long>(*epochs), last);
    }
    module.eval();
    for (auto& p : module.named_parameters()) p.value().set_requires_grad(saved[p.key()]);
    context.stat("final_loss", last);
  }

  void calibrate(GraphModuleImpl& module, const std::vector<std::string>& nodes, const std::vector<std::string>& heads,
                 PassContext& context) {
    torch::NoGradGuard no_grad;
    const auto val = split(false);
    std::vector<std::vector<torch::Tensor>> parts;
    for (const auto& b : data::batches(val, 500, false)) parts.push_back(outputs_of(module.run({b.images})));
    std::vector<torch::Tensor> exits;
    for (size_t k = 1; k < parts.at(0).size(); ++k) {
      std::vector<torch::Tensor> xs;
      for (const auto& p : parts) xs.push_back(p[k]);
      exits.push_back(torch::cat(xs));
    }
    std::vector<torch::Tensor> finals;
    for (const auto& p : parts) finals.push_back(p[0]);
    const auto final_logits = torch::cat(finals);
    const double own = (final_logits.argmax(1) == val.labels).to(torch::kDouble).mean().item<double>();
    const auto c = calibrate_exits(exits, final_logits, val.labels, own - *max_drop / 100);
    context.stat("exit_nodes", join(nodes, ","));
    context.stat("exit_outputs", join(heads, ","));
    context.stat("thresholds", c.thresholds);
    context.stat("exit_rates", c.rates);
    context.stat("exit_accuracy", c.accuracy);
    context.stat("final_accuracy", c.final_accuracy);
    context.stat("accuracy_with_exits", c.overall_accuracy);
    context.stat("validation_images", val.size());
  }
};

}  // namespace
}  // namespace tailor::place

TAILOR_REGISTER_PASS(early_exit, tailor::place::EarlyExitPass);
