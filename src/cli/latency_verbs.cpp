// `tailor latency build|predict|validate`: the latency model of a target from the command line.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "cli.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/export/export.hpp"
#include "tailor/runtime/isa.hpp"

namespace tailor::cli {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct WorkloadArgs {
  std::vector<std::string> spaces;
  std::vector<std::string> models;
  std::string models_input = "1x3x224x224";
  latency::Workload workload() const {
    latency::Workload w;
    w.spaces = spaces;
    w.models = models;
    w.model_input = parse_shape(models_input);
    if (w.spaces.empty() && w.models.empty()) w.spaces = {"resnet", "mobilenet"};
    for (const auto& s : w.spaces) models::SearchSpace::named(s);  // unknown names fail before any work
    return w;
  }
};

void add_workload_flags(CLI::App* verb, WorkloadArgs& w) {
  verb->add_option("--space", w.spaces, "search spaces to sample: resnet, mobilenet (default: both, unless --models)")
      ->delimiter(',');
  verb->add_option("--models", w.models, "model files or zoo names whose channel-pruned variants are sampled too")
      ->delimiter(',');
  verb->add_option("--models-input", w.models_input, "input shape of --models")->capture_default_str();
}

// The target here that a table's target would match: the same backend, threads and dtype, with the table's
// ISA level as the cap when this CPU can run it (a table built with a cap is used with the same cap).
latency::Target here_for(const latency::Target& table) {
  std::string cap;
  const auto levels = cpu_isas();
  if (!table.isa.empty() && std::find(levels.begin(), levels.end(), table.isa) != levels.end()) cap = table.isa;
  return latency::Target::here(table.backend, table.threads, table.dtype, cap);
}

std::string eta(double elapsed, int done, int goal, double max_seconds) {
  if (done <= 0) return "?";
  const double left = std::min(elapsed / done * (goal - done), std::max(0.0, max_seconds - elapsed));
  return fmt::format("{:.0f} s", left);
}

struct BuildArgs {
  std::string backend = "onednn-cpu";
  int threads = 1;
  std::string dtype = "float32";
  std::string isa;
  WorkloadArgs workload;
  int count = 300;
  double minutes = 10;
  int round = 25;
  uint64_t seed = 1;
  bool fresh = false;
  std::string output;
  bool json = false;
};

int build_cmd(const BuildArgs& a) {
  TAILOR_CHECK(!a.output.empty(), "latency build: -o table.json is required");
  latency::BuildOptions o;
  o.target = latency::Target::here(a.backend, a.threads, a.dtype, a.isa);
  o.workload = a.workload.workload();
  o.models = a.count;
  o.max_minutes = a.minutes;
  o.round_size = a.round;
  o.seed = a.seed;
  latency::Model model(o.target);
  if (fs::exists(a.output) && !a.fresh) {
    // Resume: the file must be a table of this very target; anything else is left alone.
    model = latency::Model::load(a.output, &o.target);
    if (!a.json)
      std::cerr << fmt::format("resuming {} ({} models measured)\n", a.output, model.models().size());
  }
  const double max_seconds = a.minutes * 60;
  const bool quiet = a.json;
  o.progress = [&](int done, int goal, double elapsed, const latency::ModelSample& s) {
    if (quiet) return;
    std::string predicted = s.predicted_ms > 0 ? fmt::format(" (predicted {:.3f}, {:+.1f}%)", s.predicted_ms,
                                                             100 * (s.predicted_ms - s.p50_ms) / s.p50_ms)
                                               : "";
    std::cerr << fmt::format("[{:>4}/{}] {:6.1f} s, ~{} left  {:8.3f} ms{}  {}\n", done, goal, elapsed,
                             eta(elapsed, done, goal, max_seconds), s.p50_ms, predicted, s.name);
  };
  o.checkpoint = [&](const latency::Model& m) { m.save(a.output); };
  const auto start = std::chrono::steady_clock::now();
  latency::build(model, o);
  model.save(a.output);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  json regs = json::object();
  for (const auto& [op, n] : model.regressor_types()) regs[op] = n;
  json out = {{"table", a.output},          {"target", o.target.str()},          {"models", model.models().size()},
              {"kernels", model.sample_count()}, {"table_entries", model.table_size()}, {"overhead_ms", model.overhead_ms()},
              {"scale", model.scale()},     {"seconds", seconds},                {"regressors", regs}};
  if (a.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{}: {} models, {} kernel samples, {} distinct kernels, {} regressors; total = {:.3f} x "
                             "kernels + {:.3f} ms; {:.0f} s\n",
                             a.output, model.models().size(), model.sample_count(), model.table_size(), regs.size(),
                             model.scale(), model.overhead_ms(), seconds);
  }
  return 0;
}

struct PredictArgs {
  std::string model, table, input;
  int nodes = 10;
  bool json = false;
  bool calibrate = false;
};

// The table in `file`, checked to be of this machine (under the table's ISA cap) and fitted.
std::pair<latency::Model, latency::Target> table_here(const std::string& file) {
  latency::Model table = latency::Model::load(file);
  latency::Target here = here_for(table.target());
  const std::string diff = table.target().differences(here);
  TAILOR_CHECK(diff.empty(), "latency table '", file, "' was built for ", table.target().str(), ", not for this machine (",
               diff, "); build one here with `tailor latency build`");
  TAILOR_CHECK(table.fitted(), "latency table '", file, "' holds no fitted model (the build was interrupted before "
               "its first round ended; run the same build again to resume it)");
  return {std::move(table), std::move(here)};
}

int predict_cmd(const PredictArgs& a) {
  auto [table, here] = table_here(a.table);
  if (a.calibrate) {
    TAILOR_CHECK(table.reference_ms() > 0, "latency predict --calibrate: table '", a.table,
                 "' holds no usable reference time (measured without one, or its times spread too widely on this "
                 "target to tell the machine's state)");
    table.calibrate(latency::Reference::compile_for(here, table.reference_architecture()).time_ms(21));
  }
  const std::vector<int64_t> shape = a.input.empty() ? default_shape(a.model) : parse_shape(a.input);
  GraphModule m = latency::prepare_for_target(models::load_model(a.model), shape, here);
  const latency::Prediction p = table.predict(latency::detect_kernels(*m, shape, here));
  if (a.json) {
    json j = json::parse(p.to_json());
    j["model"] = a.model;
    j["input"] = shape_to_string(shape);
    j["target"] = here.str();
    j["calibration"] = table.calibration();
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} on {}: {:.3f} ms predicted ({} kernels: {} from the table, {} by regressor, {} uncovered; "
                           "overhead {:.3f} ms){}\n",
                           a.model, here.str(), p.total_ms, p.kernels.size(), p.from_table, p.from_regressor, p.uncovered,
                           p.overhead_ms,
                           a.calibrate ? fmt::format("; calibrated: the machine runs at {:.2f}x the table's usual time",
                                                     table.calibration())
                                       : "");
  std::vector<const latency::KernelPrediction*> order;
  for (const auto& k : p.kernels) order.push_back(&k);
  std::sort(order.begin(), order.end(), [](auto* x, auto* y) { return x->ms > y->ms; });
  for (size_t i = 0; i < order.size() && static_cast<int>(i) < a.nodes; ++i)
    std::cout << fmt::format("  {:9.4f} ms  {:<10} {:<14} {}{}\n", order[i]->ms, to_string(order[i]->source), order[i]->op,
                             order[i]->node, order[i]->fused.empty() ? "" : " + " + join(order[i]->fused, " + "));
  for (const auto& k : p.kernels)
    if (k.source == latency::Source::Uncovered)
      std::cout << fmt::format("  warning: node '{}' runs a {} kernel the table has no type for (predicted from every "
                               "kernel type)\n", k.node, k.op);
  return 0;
}

struct ValidateArgs {
  std::string table, output;
  WorkloadArgs workload;
  int count = 200;
  uint64_t seed = 1000;
  double seconds = 1.0;
  int group = 10;
  bool json = false;
};

int validate_cmd(const ValidateArgs& a) {
  const auto [table, here] = table_here(a.table);
  latency::ValidateOptions o;
  o.workload = a.workload.workload();
  o.count = a.count;
  o.group = a.group;
  o.seed = a.seed;
  o.seconds_per_model = a.seconds;
  const bool quiet = a.json;
  o.progress = [&](int done, int goal, double elapsed) {
    if (!quiet) std::cerr << fmt::format("[{:>4}/{}] {:6.1f} s, ~{} left\n", done, goal, elapsed, eta(elapsed, done, goal, 1e9));
  };
  const latency::ValidationReport r = latency::validate(table, o);
  if (!a.output.empty()) write_file_atomically(a.output, r.to_json() + "\n");
  if (a.json) {
    std::cout << r.to_json() << "\n";
    return 0;
  }
  std::cout << fmt::format("{} models on {} (table: {} models)\n", r.rows.size(), here.str(), table.models().size());
  std::cout << fmt::format("  {:<40} {:>9} {:>9} {:>10} {:>8} {:>8}\n", "prediction", "+-10%", "+-5%", "RMSE ms", "RMSE %",
                           "Kendall");
  auto line = [](const char* name, const latency::Accuracy& x) {
    std::cout << fmt::format("  {:<40} {:>8.1f}% {:>8.1f}% {:>10.3f} {:>8.1f} {:>8.3f}\n", name, 100 * x.within_10,
                             100 * x.within_5, x.rmse_ms, x.rmse_pct, x.kendall_tau);
  };
  line("latency model (kernels + overhead)", r.model);
  if (table.reference_ms() > 0) line("  calibrated by the reference's time", r.calibrated);
  line("per-node sum, no kernel detection", r.op_sum);
  line("MACs-proportional", r.macs);
  line("noise floor: a second measurement", r.noise);
  std::cout << fmt::format("  {:.0f} predictions per second from kernel lists ({:.0f} on the first pass); compiling to list "
                           "kernels: {:.1f} ms per model\n", r.predict_per_second, r.predict_cold_per_second, r.detect_ms);
  if (r.detect_mismatches > 0)
    std::cout << fmt::format("  warning: for {} architectures the kernels listed without compiling in full differ from "
                             "those the compiled executable runs (a tailor bug: please report it)\n", r.detect_mismatches);
  return 0;
}

}  // namespace

void add_latency_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto* latency_cmd = app.add_subcommand("latency", "latency model of a target: build a kernel table, predict, validate");
  latency_cmd->require_subcommand(1);

  auto b = std::make_shared<BuildArgs>();
  auto* build_sub = latency_cmd->add_subcommand("build", "measure models on this machine into a kernel table (resumable)");
  build_sub->add_option("--backend", b->backend, "onednn-cpu, libtorch-cpu, libtorch-cuda")->capture_default_str();
  build_sub->add_option("--threads", b->threads, "intra-op threads")->capture_default_str();
  build_sub->add_option("--dtype", b->dtype, "float32, or int8 (variants quantized by quantize-static, onednn-cpu)")
      ->capture_default_str();
  build_sub->add_option("--isa", b->isa, "cap the x86 ISA (avx2, sse41, ...) to build the table of a smaller CPU");
  add_workload_flags(build_sub, b->workload);
  build_sub->add_option("--count", b->count, "models to measure")->capture_default_str();
  build_sub->add_option("--minutes", b->minutes, "stop after this long (the table is saved after every round)")
      ->capture_default_str();
  build_sub->add_option("--round", b->round, "models per adaptive-sampling round")->capture_default_str();
  build_sub->add_option("--seed", b->seed, "sampling seed")->capture_default_str();
  build_sub->add_flag("--fresh", b->fresh, "start over instead of resuming an existing -o file");
  build_sub->add_option("-o,--output", b->output, "table file (JSON)")->required();
  build_sub->add_flag("--json", b->json, "print a JSON summary (no progress lines)");

  auto p = std::make_shared<PredictArgs>();
  auto* predict_sub = latency_cmd->add_subcommand("predict", "predict a model's latency from a table: total and per kernel");
  predict_sub->add_option("model", p->model, "TorchScript file, zoo name or architecture (resnet@128:...)")->required();
  predict_sub->add_option("--table", p->table, "table file from tailor latency build")->required();
  predict_sub->add_option("--input", p->input, "input shape (zoo models and architectures have a default)");
  predict_sub->add_option("--nodes", p->nodes, "slowest kernels to list")->capture_default_str();
  predict_sub->add_flag("--json", p->json, "print JSON (every kernel with its cumulative latency)");
  predict_sub->add_flag("--calibrate", p->calibrate,
                        "time the table's reference model now and scale the prediction to the machine's present speed");

  auto v = std::make_shared<ValidateArgs>();
  auto* validate_sub = latency_cmd->add_subcommand("validate", "predicted against measured (interleaved) on new models");
  validate_sub->add_option("--table", v->table, "table file from tailor latency build")->required();
  add_workload_flags(validate_sub, v->workload);
  validate_sub->add_option("--count", v->count, "models to validate on")->capture_default_str();
  validate_sub->add_option("--seed", v->seed, "sampling seed (differs from the build's)")->capture_default_str();
  validate_sub->add_option("--seconds", v->seconds, "timing per model and measurement")->capture_default_str();
  validate_sub->add_option("--group", v->group, "models compiled and timed interleaved with each other (0: all; "
                           "larger groups measured slower here)")->capture_default_str();
  validate_sub->add_option("-o,--output", v->output, "also write the report (JSON) here");
  validate_sub->add_flag("--json", v->json, "print JSON (every model)");

  actions.push_back([=] { return build_sub->parsed() ? build_cmd(*b) : -1; });
  actions.push_back([=] { return predict_sub->parsed() ? predict_cmd(*p) : -1; });
  actions.push_back([=] { return validate_sub->parsed() ? validate_cmd(*v) : -1; });
}

}  // namespace tailor::cli
