// Pass netadapt: shrinks a trained model channel group by channel group to a latency budget on a target, with
// short fine-tuning of every proposal and a longer one at the end (tailor::nas::netadapt).
#include <filesystem>
#include <unistd.h>

#include "../../train/passes/training_pass.hpp"
#include "nas_pass.hpp"
#include "tailor/export/export.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor::nas {
namespace {

class NetAdaptPass : public train::detail::TrainingPass {
 public:
  Option<double> latency_ms{this, "latency_ms", 0, "latency budget in ms on the target (required)"};
  Option<std::string> target{this, "target", "onednn-cpu", "backend[:threads[:isa][:int8]], e.g. onednn-cpu:2"};
  Option<std::string> table{this, "table", "", "latency table of the target; none: built here from pruned copies"};
  Option<double> table_minutes{this, "table_minutes", 2.0, "time to build the latency table when none is given"};
  Option<double> step{this, "step", NetAdaptOptions{}.step, "latency cut per iteration, as a fraction of the start"};
  Option<int64_t> round_to{this, "round_to", NetAdaptOptions{}.round_to, "kept channel counts are multiples of this"};
  Option<double> max_ratio{this, "max_ratio", NetAdaptOptions{}.max_ratio, "no group loses more than this fraction"};
  Option<int64_t> max_iterations{this, "max_iterations", NetAdaptOptions{}.max_iterations, "iterations at most"};
  Option<int64_t> short_term_images{this, "short_term_images", NetAdaptOptions{}.short_term_images,
                                    "training images each proposal is fine-tuned on"};
  Option<bool> fine_tune_every_proposal{this, "fine_tune_every_proposal", NetAdaptOptions{}.fine_tune_every_proposal,
                                        "fine-tune every proposal before judging it (false: judge as cut, fine-tune "
                                        "the one kept)"};
  Option<double> proposal_seconds{this, "proposal_seconds", NetAdaptOptions{}.proposal_seconds,
                                  "time each proposal beside the current model this long (0: trust the table)"};
  Option<int64_t> validation{this, "validation", 5000,
                             "images held out of the training split that proposals are judged on"};

  PassInfo info() const override {
    PassInfo i{"netadapt", "shrink a trained model to a latency budget one channel group at a time (NetAdapt)"};
    i.needs.input_shapes = true;
    i.needs.training_data = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    TAILOR_CHECK(*latency_ms > 0, "netadapt needs latency_ms > 0 (the budget on ", *target, ")");
    const std::vector<int64_t> shape = context.input_shapes.at(0);
    std::shared_ptr<const latency::Model> predictor;
    if (table->empty()) {
      // No table: measure channel-pruned copies of this very model on the target.
      const std::string tmp = (std::filesystem::temp_directory_path() /
                               ("tailor-netadapt-" + std::to_string(::getpid()) + "-" +
                                std::to_string(reinterpret_cast<uintptr_t>(&module)) + ".pt"))
                                  .string();
      save(module, tmp);
      latency::Workload w;
      w.models = {tmp};
      w.model_input = shape;
      try {
        predictor = latency_table(target, "", w, table_minutes, !context.quiet);
      } catch (...) {
        std::filesystem::remove(tmp);
        throw;
      }
      std::filesystem::remove(tmp);
    } else {
      predictor = latency_table(target, table, {}, table_minutes, !context.quiet);
    }
    const Split split = detail::training_split(limit, validation);
    NetAdaptOptions o;
    o.budget_ms = latency_ms;
    o.table = predictor;
    o.input_shape = shape;
    o.step = step;
    o.round_to = round_to;
    o.max_ratio = max_ratio;
    o.max_iterations = static_cast<int>(*max_iterations);
    o.short_term = train_options(context);
    o.short_term.epochs = 1;
    o.short_term.checkpoint.clear();
    o.short_term.restore_best = false;
    o.short_term_images = std::min<int64_t>(short_term_images, split.train.size());
    o.fine_tune_every_proposal = fine_tune_every_proposal;
    o.proposal_seconds = proposal_seconds;
    o.long_term = train_options(context);
    if (!context.quiet)
      o.progress = [](int it, double ms, double acc, const std::string& group) {
        std::fprintf(stderr, "  netadapt %d: %s -> %.3f ms predicted, validation %.2f%%\n", it, group.c_str(), ms,
                     100 * acc);
      };
    const NetAdaptResult r = netadapt(module, split.train, split.validation, o);
    context.stat("target", predictor->target().str());
    context.stat("start_ms", r.start_ms);
    context.stat("predicted_ms", r.predicted_ms);
    context.stat("measured_ms", r.measured_ms);
    context.stat("machine_slowdown", r.machine_slowdown);
    context.stat("start_validation_top1", r.start_accuracy);
    context.stat("short_term_validation_top1", r.short_term_accuracy);
    context.stat("validation_top1", r.accuracy);
    context.stat("iterations", static_cast<int64_t>(r.iterations.size()));
    context.stat("netadapt", r.json());
    return true;
  }
};

}  // namespace
}  // namespace tailor::nas

TAILOR_REGISTER_PASS(netadapt, tailor::nas::NetAdaptPass);
