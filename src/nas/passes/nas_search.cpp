// Pass nas-search: searches a trained supernet for the most accurate subnet within latency (and cost) budgets on
// one or several targets; the model becomes that subnet (tailor::nas::search).
#include "nas_pass.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor::nas {
namespace {

class NasSearchPass : public Pass {
 public:
  Option<std::string> supernet{this, "supernet", "",
                               "supernet file (default: the one the model's last nas-train wrote)"};
  ListOption<double> latency_ms{this, "latency_ms", {}, "latency budget in ms per target (one value: every target)"};
  ListOption<std::string> target{this, "target", {"onednn-cpu"},
                                 "targets: backend[:threads[:isa][:int8]], e.g. onednn-cpu, onednn-cpu:2"};
  ListOption<std::string> table{this, "table", {},
                                "latency table per target (tailor latency build); none: built here"};
  Option<double> table_minutes{this, "table_minutes", 2.0, "time to build each missing latency table"};
  Option<double> macs{this, "macs", 0, "at most this many MACs (0: no limit)"};
  Option<double> params{this, "params", 0, "at most this many parameters (0: no limit)"};
  Option<double> weight_bytes{this, "weight_bytes", 0, "at most this many weight bytes (0: no limit)"};
  EnumOption algorithm{this, "algorithm", SearchOptions{}.algorithm, {"evolution", "random"},
                       "regularized evolution or random search"};
  Option<int64_t> evaluations{this, "evaluations", SearchOptions{}.evaluations, "subnets evaluated"};
  Option<int64_t> population{this, "population", SearchOptions{}.population, "evolution: population size"};
  Option<int64_t> tournament{this, "tournament", SearchOptions{}.tournament, "evolution: tournament size"};
  Option<double> mutation{this, "mutation", SearchOptions{}.mutation, "evolution: probability each choice changes"};
  Option<int64_t> screen{this, "screen", SearchOptions{}.screen,
                         "evolution: mutants ranked by an accuracy predictor for each one evaluated (0: none)"};
  Option<int64_t> seed{this, "seed", 0, "search seed"};
  Option<std::string> state{this, "state", "", "file of the evaluations so far; a rerun resumes from it"};
  Option<bool> remeasure{this, "remeasure", true, "time the front on each target and drop members over budget"};
  Option<double> seconds{this, "seconds", SearchOptions{}.seconds_per_model, "re-measurement time per member"};
  EnumOption data{this, "data", "fashion-mnist", {"fashion-mnist"}, "training data (its training split)"};
  Option<int64_t> limit{this, "limit", -1, "use the first N training images (-1: all)"};
  Option<int64_t> validation{this, "validation", 5000, "images held out of the training split to judge subnets by"};
  Option<int64_t> calibration_batches{this, "calibration_batches", 8,
                                      "training batches that re-estimate a subnet's batch-norm statistics"};

  PassInfo info() const override {
    PassInfo i{"nas-search", "search a supernet for the most accurate subnet within latency budgets per target"};
    i.needs.training_data = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    const std::string file = supernet->empty() ? detail::supernet_from_provenance(module) : *supernet;
    TAILOR_CHECK(!file.empty(), "nas-search needs a supernet: give supernet=FILE or run nas-train before it");
    Supernet net(SupernetImpl::load(file));
    const models::SearchSpace& sp = net->space();
    latency::Workload workload;
    workload.spaces = {sp.name};
    Constraints constraints;
    constraints.latency = latency_budgets(latency_ms, target, table, workload, table_minutes, !context.quiet);
    constraints.max_macs = macs;
    constraints.max_params = params;
    constraints.max_weight_bytes = weight_bytes;
    const Split split = detail::training_split(limit, validation);
    SearchOptions o;
    o.algorithm = algorithm;
    o.evaluations = static_cast<int>(*evaluations);
    o.population = static_cast<int>(*population);
    o.tournament = static_cast<int>(*tournament);
    o.mutation = mutation;
    o.screen = static_cast<int>(*screen);
    o.seed = static_cast<uint64_t>(*seed);
    o.state = state;
    o.remeasure = remeasure;
    o.seconds_per_model = seconds;
    double best = 0;
    if (!context.quiet)
      o.progress = [&best](int done, int total, double left, const Candidate& c) {
        best = std::max(best, c.accuracy);
        detail::print_search_progress(done, total, left, c, best);
      };
    const SearchResult r =
        search(sp, constraints, supernet_evaluator(net, split.train, split.validation, calibration_batches), o);
    const Candidate& chosen = r.best();
    GraphModule m = subnet(net, chosen.config, split.train, calibration_batches, file);
    assign_module(module, *m);
    module.eval();
    context.stat("supernet", file);
    context.stat("config", chosen.config.str());
    context.stat("validation_top1", chosen.accuracy);
    context.stat("predicted_ms", chosen.predicted_ms);
    context.stat("measured_ms", chosen.measured_ms);
    context.stat("constraints", constraints.str());
    context.stat("evaluations", static_cast<int64_t>(r.evaluated.size()));
    context.stat("resumed", static_cast<int64_t>(r.resumed));
    context.stat("front_size", static_cast<int64_t>(r.front.size()));
    context.stat("over_budget", static_cast<int64_t>(r.over_budget.size()));
    context.stat("max_measured_over_predicted", r.max_measured_over_predicted);
    context.stat("search_seconds", r.seconds);
    context.stat("search", r.json());
    return true;
  }
};

}  // namespace
}  // namespace tailor::nas

TAILOR_REGISTER_PASS(nas_search, tailor::nas::NasSearchPass);
