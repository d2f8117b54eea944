// Pass distill: trains the model from a frozen teacher: soft targets and labels, optionally FitNets hints
// and attention transfer between named nodes.
#include "tailor/models/zoo.hpp"
#include "training_pass.hpp"

namespace tailor::train {
namespace {

std::vector<TapPair> tap_pairs(const std::vector<std::string>& specs, const char* option) {
  std::vector<TapPair> out;
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    TAILOR_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "distill: ", option, " '", spec,
                 "' must be STUDENT_NODE=TEACHER_NODE");
    out.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
  }
  return out;
}

class DistillPass : public detail::TrainingPass {
 public:
  Option<std::string> teacher{this, "teacher", "",
                              "teacher: a model file or zoo name (empty: the context's teacher, a recipe's baseline)"};
  Option<double> temperature{this, "temperature", DistillOptions{}.temperature, "soft-target temperature"};
  Option<double> alpha{this, "alpha", DistillOptions{}.alpha, "weight of the soft-target loss (1 - alpha: labels)"};
  ListOption<std::string> hints{this, "hints", {}, "FitNets hints STUDENT_NODE=TEACHER_NODE"};
  Option<double> hint_weight{this, "hint_weight", DistillOptions{}.hint_weight, "weight of the hint losses"};
  ListOption<std::string> attention{this, "attention", {}, "attention transfer STUDENT_NODE=TEACHER_NODE"};
  Option<double> attention_weight{this, "attention_weight", DistillOptions{}.attention_weight,
                                  "weight of the attention losses"};

  PassInfo info() const override {
    PassInfo i{"distill", "train the model from a frozen teacher (soft targets + labels, hints, attention)"};
    i.needs.training_data = true;
    i.needs.teacher = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    const std::string file = teacher->empty() ? context.teacher : *teacher;
    TAILOR_CHECK(!file.empty(), "distill: give the teacher, e.g. distill{teacher=baseline.pt}");
    DistillOptions d;
    d.temperature = temperature;
    d.alpha = alpha;
    d.hints = tap_pairs(hints, "hint");
    d.attention = tap_pairs(attention, "attention");
    d.hint_weight = hint_weight;
    d.attention_weight = attention_weight;
    GraphModule t = models::load_model(file);
    context.stat("teacher", file);
    Model m = as_model(t, "teacher '" + file + "'");
    train_module(module, &m, d, context);
    return true;
  }
};
}  // namespace
}  // namespace tailor::train

TAILOR_REGISTER_PASS(distill, tailor::train::DistillPass);
