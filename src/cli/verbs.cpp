// The verbs that measure, report and orchestrate (inspect, profile, eval, compress, launch, passes); the
// transforming verbs are in transform_verbs.cpp.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "cli.hpp"

namespace tailor::cli {
namespace {

int inspect(const std::string& model, const std::string& input, bool json) {
  GraphModule gm = models::load_model(model);
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  torch::NoGradGuard no_grad;
  const CostReport report = analyze(*gm, {shape});
  if (json) {
    auto j = nlohmann::json::parse(report.to_json());
    j["model"] = model;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<40} {:<20} {:>18} {:>10} {:>10}\n", "node", "op", "output", "params", "MACs");
  for (const NodeCost& c : report.nodes) {
    std::string name = c.name.size() > 40 ? "..." + c.name.substr(c.name.size() - 37) : c.name;
    std::string kind = c.kind.size() > 20 ? c.kind.substr(0, 20) : c.kind;
    std::cout << fmt::format("{:<40} {:<20} {:>18} {:>10} {:>10}\n", name, kind, shape_to_string(c.output_shape),
                             c.params ? human_count(static_cast<double>(c.params)) : "-",
                             c.macs ? human_count(static_cast<double>(c.macs)) : "-");
  }
  std::cout << fmt::format(
      "\n{}: input {}  nodes {}  params {} ({})  MACs {}  FLOPs {}  weights {}B  activations {}B (peak {}B)\n", model,
      shape_to_string(shape), report.nodes.size(), human_count(static_cast<double>(report.params)), report.params,
      human_count(static_cast<double>(report.macs)), human_count(static_cast<double>(report.flops)),
      human_count(static_cast<double>(report.weight_bytes)), human_count(static_cast<double>(report.activation_bytes)),
      human_count(static_cast<double>(report.peak_activation_bytes)));
  return 0;
}

struct ProfileArgs {
  std::string backends = "libtorch-cpu,onednn-cpu";
  std::string batches = "1";
  std::string card, name;
  int threads = 1;
  int nodes = 10;
  bool check = false;
  bool no_fold = false;
  double tolerance = 1e-4;
  std::string isa;
  ProfileOptions options;
};

// Largest absolute difference over all output tensors, and that over the largest reference magnitude.
std::pair<double, double> compare_outputs(const c10::IValue& a, const c10::IValue& ref) {
  std::vector<torch::Tensor> xs, rs;
  auto collect = [](const c10::IValue& v, std::vector<torch::Tensor>& out) {
    if (v.isTensor()) out.push_back(v.toTensor());
    else if (v.isTuple())
      for (const auto& e : v.toTupleRef().elements())
        if (e.isTensor()) out.push_back(e.toTensor());
  };
  collect(a, xs);
  collect(ref, rs);
  TAILOR_CHECK(xs.size() == rs.size(), "backends returned different numbers of outputs");
  double max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const auto x = xs[i].cpu().to(torch::kDouble), r = rs[i].cpu().to(torch::kDouble);
    TAILOR_CHECK(x.sizes() == r.sizes(), "backends returned outputs of different shapes");
    max_abs = std::max(max_abs, (x - r).abs().max().item<double>());
    max_ref = std::max(max_ref, r.abs().max().item<double>());
  }
  return {max_abs, max_ref > 0 ? max_abs / max_ref : max_abs};
}

// Adds a card's profiles to a manifest (created when missing). A card of the same name keeps its other profiles: a
// profile replaces the one of the same backend, threads and ISA, and is added beside those of other threads or ISAs
// (the placement planner picks the one that matches a device).
void add_to_manifest(const std::string& path, VariantCard card, const std::string& model, const std::string& name) {
  namespace fs = std::filesystem;
  Manifest m = fs::exists(path) ? Manifest::load(path) : Manifest{};
  const fs::path dir = fs::absolute(path).parent_path();
  if (!name.empty()) card.name = name;
  // Files are relative to the manifest's folder, as a recipe writes them.
  if (fs::exists(model)) card.file = fs::relative(fs::absolute(model), dir).string();
  if (const VariantCard* old = m.find(card.name)) {
    VariantCard merged = *old;
    for (auto& [backend, p] : card.profiles) merged.add_profile(std::move(p));
    if (merged.input_shapes.empty()) merged.input_shapes = card.input_shapes;
    card = std::move(merged);
  }
  fs::create_directories(dir);
  m.upsert(std::move(card));
  m.save(path);
}

int profile_cmd(const std::string& model, const std::string& input, ProfileArgs args, bool json) {
  // First, before any kernel exists: oneDNN fixes its ISA when it makes the first one.
  if (!args.isa.empty()) set_isa_cap(args.isa);
  args.options.isa = args.isa;
  GraphModule gm = models::load_model(model);
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  const auto backends = split(args.backends);
  TAILOR_CHECK(!backends.empty(), "--backends is empty");
  for (const auto& b : backends) make_backend(b);  // unknown names fail before any work
  args.options.threads = args.threads;
  args.options.fold = !args.no_fold;
  args.options.batches.clear();
  for (const auto& b : split(args.batches)) {
    try {
      args.options.batches.push_back(std::stoll(b));
    } catch (const std::exception&) {
      TAILOR_FAIL("--batch: '", b, "' is not a number (expected e.g. 1,8)");
    }
  }
  TAILOR_CHECK(!args.options.batches.empty(), "--batch is empty");
  nlohmann::json out = {{"model", model}, {"input", shape_to_string(shape)}};

  if (args.check) {
    // Every backend on the same input; the first one is the reference.
    std::vector<int64_t> s = shape;
    s[0] = args.options.batches[0];
    const auto x = torch::randn(s, at::detail::createCPUGenerator(args.options.seed));
    c10::IValue ref;
    nlohmann::json rows = nlohmann::json::array();
    bool ok = true;
    for (size_t i = 0; i < backends.size(); ++i) {
      CompileOptions co;
      co.input_shapes = {s};
      co.threads = args.threads;
      co.fold = !args.no_fold;
      co.dtype = args.options.dtype;
      co.isa = args.isa;
      auto exe = compile(backends[i], *gm, co);
      c10::IValue y = exe->run({x});
      if (i == 0) {
        ref = y;
        rows.push_back({{"backend", backends[i]}, {"reference", true}, {"executable", exe->summary()}});
        if (!json) std::cout << fmt::format("{:<14} reference   {}\n", backends[i], exe->summary());
        continue;
      }
      const auto [abs_diff, rel_diff] = compare_outputs(y, ref);
      const bool pass = rel_diff <= args.tolerance;
      ok = ok && pass;
      rows.push_back({{"backend", backends[i]}, {"max_abs_diff", abs_diff}, {"max_rel_diff", rel_diff},
                      {"within_tolerance", pass}, {"executable", exe->summary()}});
      if (!json)
        std::cout << fmt::format("{:<14} max |diff| {:.3g} (relative {:.3g}) {}   {}\n", backends[i], abs_diff, rel_diff,
                                 pass ? "ok" : "EXCEEDS " + fmt::format("{:g}", args.tolerance), exe->summary());
    }
    out["check"] = rows;
    out["tolerance"] = args.tolerance;
    if (json) std::cout << out.dump(2) << "\n";
    return ok ? 0 : 2;
  }

  VariantCard card;
  card.name = std::filesystem::path(model).stem().string();
  card.file = model;
  {
    torch::NoGradGuard no_grad;
    card.set_costs(analyze(*gm, {shape}));
  }
  nlohmann::json profiles = nlohmann::json::array();
  for (const auto& b : backends) {
    const LatencyProfile p = profile(*gm, b, shape, args.options);
    card.profiles[b] = p;
    profiles.push_back(nlohmann::json::parse(p.to_json()));
    if (json) continue;
    std::cout << fmt::format("{} on {} {} ({} thread{}, batch {}): p50 {:.3f} ms  p90 {:.3f} ms  p99 {:.3f} ms  "
                             "mean {:.3f} +- {:.3f} ms  ({} runs{})\n",
                             model, b, p.dtype, p.threads, p.threads == 1 ? "" : "s", p.batch, p.latency.p50_ms,
                             p.latency.p90_ms, p.latency.p99_ms, p.latency.mean_ms, p.latency.std_ms, p.latency.runs,
                             p.stable ? ", stable" : ", NOT stable: raise --max-seconds");
    for (const auto& t : p.throughput)
      std::cout << fmt::format("  batch {:>4}: p50 {:>9.3f} ms  {:>10.1f} samples/s\n", t.batch, t.p50_ms,
                               t.samples_per_s);
    std::cout << fmt::format("  memory: activations peak {}B, weights {}B\n  {}\n",
                             human_count(static_cast<double>(p.peak_activation_bytes)),
                             human_count(static_cast<double>(p.weight_bytes)), p.executable);
    std::vector<NodeTime> top = p.nodes;
    std::sort(top.begin(), top.end(), [](const NodeTime& a, const NodeTime& c) { return a.ms > c.ms; });
    if (top.size() > static_cast<size_t>(args.nodes)) top.resize(args.nodes);
    for (const auto& n : top)
      std::cout << fmt::format("    {:>8.3f} ms {:>5.1f}%  {:<14} {}{}\n", n.ms, 100 * n.share, n.kind.substr(0, 14),
                               n.node, n.fused.empty() ? "" : " (+" + std::to_string(n.fused.size()) + " fused)");
  }
  if (!args.card.empty()) {
    const bool existed = std::filesystem::exists(args.card);
    add_to_manifest(args.card, card, model, args.name);  // a copy: the JSON report below reads the card too
    if (!json) std::cout << (existed ? "added to " : "wrote ") << args.card << "\n";
  }
  if (json) {
    out["params"] = card.params;
    out["macs"] = card.macs;
    out["profiles"] = profiles;
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

double backend_top1(GraphModuleImpl& gm, const std::string& backend, const std::string& isa, int64_t limit) {
  const data::Dataset test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), limit);
  std::map<int64_t, std::unique_ptr<Executable>> exes;
  return data::top1_accuracy(
      [&](const at::Tensor& x) {
        auto& exe = exes[x.size(0)];
        if (!exe) {
          CompileOptions co;
          co.input_shapes = {x.sizes().vec()};
          co.isa = isa;
          exe = compile(backend, gm, co);
        }
        const c10::IValue out = exe->run({x});
        return (out.isTuple() ? out.toTupleRef().elements().at(0).toTensor() : out.toTensor()).cpu();
      },
      test, 500);
}

int eval_cmd(const std::string& model, const std::string& source, int64_t limit, const std::string& backend,
             const std::string& isa, bool json) {
  TAILOR_CHECK(source == "fashion-mnist", "--data must be fashion-mnist (the 10,000 test images), got '", source, "'");
  if (!isa.empty()) set_isa_cap(isa);  // before any kernel exists
  GraphModule gm = models::load_model(model);
  const double top1 = backend.empty() ? fashion_top1(*gm, limit) : backend_top1(*gm, backend, isa, limit);
  const std::string ran = backend.empty() ? "graph" : backend + " (" + effective_isa() + ")";
  if (json)
    std::cout << nlohmann::json{{"model", model}, {"data", source}, {"top1", top1}, {"ran_on", ran}}.dump(2) << "\n";
  else
    std::cout << fmt::format("{}: top-1 {:.2f}% on {} ({})\n", model, 100 * top1, source, ran);
  return 0;
}

int compress_cmd(const std::string& recipe_path, const std::string& out, bool no_resume, bool json) {
  const recipe::Recipe r = recipe::parse_recipe(recipe_path);
  recipe::RunOptions o;
  o.output = out;
  o.resume = !no_resume;
  o.quiet = json;
  const recipe::RunResult res = recipe::run_recipe(r, o);
  if (json) {
    nlohmann::json j = nlohmann::json::parse(res.manifest.to_json());
    j["kept"] = res.kept;
    j["report"] = res.report;
    j["reused_steps"] = res.reused;
    j["failed"] = nlohmann::json::object();
    for (const auto& [name, why] : res.failed) j["failed"][name] = why;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << res.summary;
    std::cout << "report: " << res.report << "\n";
  }
  // The report and the other variants are written; the exit status still tells scripts that not all ran.
  for (const auto& [name, why] : res.failed)
    std::cerr << "tailor: error: variant '" << name << "' (" << recipe_path << ") failed: " << why << "\n";
  return res.failed.empty() ? 0 : 1;
}


int passes(bool json) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& info : registered_passes()) {
    const auto pass = make_pass(info.name);
    nlohmann::json options = nlohmann::json::array();
    for (const OptionBase* o : pass->options().all())
      options.push_back({{"key", o->key()}, {"type", o->type()}, {"default", o->print_default()}, {"help", o->help()}});
    std::vector<std::string> needs;
    if (info.needs.input_shapes) needs.push_back("input shapes");
    if (info.needs.calibration) needs.push_back("calibration data");
    if (info.needs.labels) needs.push_back("labels");
    if (info.needs.training_data) needs.push_back("training data");
    if (info.needs.teacher) needs.push_back("a teacher");
    if (json) {
      list.push_back({{"name", info.name}, {"description", info.description}, {"options", options}, {"needs", needs}});
      continue;
    }
    std::cout << fmt::format("{:<22} {}{}\n", info.name, info.description,
                             needs.empty() ? "" : " (needs: " + join(needs) + ")");
    for (const OptionBase* o : pass->options().all())
      std::cout << fmt::format("    {:<18} {} = {}: {}\n", o->key(), o->type(), o->print_default(), o->help());
  }
  if (json) std::cout << list.dump(2) << "\n";
  return 0;
}

}  // namespace

void add_measure_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto model = std::make_shared<std::string>();
  auto input = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* inspect_cmd = app.add_subcommand("inspect", "per-node table of a model: op, output shape, params, MACs");
  inspect_cmd->add_option("model", *model, "TorchScript file or zoo model name")->required();
  inspect_cmd->add_option("--input", *input, "input shape, e.g. 1x3x224x224 (zoo models have a default)");
  inspect_cmd->add_flag("--json", *json, "print JSON (params, macs, flops, nodes, ...)");

  auto pargs = std::make_shared<ProfileArgs>();
  auto* profile_sub = app.add_subcommand("profile", "measure latency on backends (or --check that they agree)");
  profile_sub->add_option("model", *model, "TorchScript file or zoo model name")->required();
  profile_sub->add_option("--input", *input, "input shape, e.g. 1x3x224x224 (the batch is replaced by --batch)");
  profile_sub->add_option("--backends", (*pargs).backends, "comma-separated: onednn-cpu, libtorch-cpu, libtorch-cuda")
      ->capture_default_str();
  profile_sub->add_option("--threads", (*pargs).threads, "intra-op threads")->capture_default_str();
  profile_sub->add_option("--batch", (*pargs).batches, "batch sizes, e.g. 1,8 (the first is the profile's batch)")
      ->capture_default_str();
  profile_sub->add_option("--warmup", (*pargs).options.warmup, "untimed runs first")->capture_default_str();
  profile_sub->add_option("--min-runs", (*pargs).options.min_runs, "timed runs at least")->capture_default_str();
  profile_sub->add_option("--max-runs", (*pargs).options.max_runs, "timed runs at most")->capture_default_str();
  profile_sub->add_option("--max-seconds", (*pargs).options.max_seconds, "time cap per batch size")->capture_default_str();
  profile_sub->add_option("--node-runs", (*pargs).options.node_runs, "runs timed node by node (0: none)")
      ->capture_default_str();
  profile_sub->add_option("--nodes", (*pargs).nodes, "slowest nodes to list")->capture_default_str();
  profile_sub->add_option("--dtype", (*pargs).options.dtype, "float32, or bfloat16 (onednn-cpu on avx512_core CPUs)")
      ->capture_default_str();
  profile_sub->add_option("--isa", (*pargs).isa, "cap the x86 ISA of CPU kernels: sse41, avx, avx2, avx2_vnni, avx512_core, "
                          "avx512_core_vnni, ... (to profile for a smaller x86 CPU)");
  profile_sub->add_flag("--no-fold", (*pargs).no_fold, "keep batch norms and dropouts (default: fold for inference)");
  profile_sub->add_flag("--check", (*pargs).check, "run every backend on one input and report the largest difference");
  profile_sub->add_option("--tolerance", (*pargs).tolerance, "--check: largest relative difference allowed")
      ->capture_default_str();
  profile_sub->add_option("--card", (*pargs).card, "add this model's card to a manifest.json (created if missing); "
                          "profiles of other threads or ISAs stay beside the new ones");
  profile_sub->add_option("--name", (*pargs).name, "--card: the variant's name (default: the file's stem)");
  profile_sub->add_flag("--json", *json, "print JSON");

  auto data_source = std::make_shared<std::string>("fashion-mnist");
  auto limit = std::make_shared<int64_t>(-1);
  auto* eval_sub = app.add_subcommand("eval", "top-1 accuracy on a dataset's test split");
  eval_sub->add_option("model", *model, "TorchScript file or zoo model name")->required();
  eval_sub->add_option("--data", *data_source, "fashion-mnist")->capture_default_str();
  eval_sub->add_option("--limit", *limit, "evaluate the first N test images only");
  auto eval_backend = std::make_shared<std::string>();
  auto eval_isa = std::make_shared<std::string>();
  eval_sub->add_option("--backend", *eval_backend, "run on this backend (onednn-cpu runs int8 kernels) instead of the "
                       "graph (fake-quant for quantized models)");
  eval_sub->add_option("--isa", *eval_isa, "with --backend: cap the x86 ISA (avx2, sse41, ...)");
  eval_sub->add_flag("--json", *json, "print JSON");

  auto largs = std::make_shared<train::LaunchOptions>();
  auto launch_argv = std::make_shared<std::vector<std::string>>();
  auto* launch_sub = app.add_subcommand("launch", "start N ranks of a command on this machine (c10d/Gloo, torchrun's variables)");
  launch_sub->add_option("-n,--nproc", largs->nproc, "ranks on this machine")->capture_default_str();
  launch_sub->add_option("--nnodes", largs->nnodes, "machines")->capture_default_str();
  launch_sub->add_option("--node-rank", largs->node_rank, "this machine's index")->capture_default_str();
  launch_sub->add_option("--master-addr", largs->master_addr, "address of rank 0's machine")->capture_default_str();
  launch_sub->add_option("--master-port", largs->master_port, "port of rank 0's store")->capture_default_str();
  launch_sub->add_option("command", *launch_argv, "the command and its arguments (after --)")->required();

  auto recipe_path = std::make_shared<std::string>();
  auto no_resume = std::make_shared<bool>(false);
  auto* compress_sub = app.add_subcommand("compress", "run a compression recipe: variants, manifest.json and report.html");
  compress_sub->add_option("recipe", *recipe_path, "recipe file (YAML)")->required();
  compress_sub->add_option("-o,--output", *out, "output folder (default: the recipe's 'output')");
  compress_sub->add_flag("--no-resume", *no_resume, "recompute every step even if an earlier run finished it");
  compress_sub->add_flag("--json", *json, "print the manifest as JSON (plus kept variants and the report's path)");

  auto* passes_cmd = app.add_subcommand("passes", "list the registered passes with their options");
  passes_cmd->add_flag("--json", *json, "print JSON");

  actions.push_back([=] { return inspect_cmd->parsed() ? inspect(*model, *input, *json) : -1; });
  actions.push_back([=] { return profile_sub->parsed() ? profile_cmd(*model, *input, *pargs, *json) : -1; });
  actions.push_back([=] {
    return eval_sub->parsed() ? eval_cmd(*model, *data_source, *limit, *eval_backend, *eval_isa, *json) : -1;
  });
  actions.push_back([=] { return compress_sub->parsed() ? compress_cmd(*recipe_path, *out, *no_resume, *json) : -1; });
  actions.push_back([=] {
    if (!launch_sub->parsed()) return -1;
    // `tailor launch -n 2 -- tailor train ...` runs this very binary, wherever it is installed.
    auto argv = *launch_argv;
    if (!argv.empty() && argv[0] == "tailor") argv[0] = std::filesystem::read_symlink("/proc/self/exe");
    return train::launch(argv, *largs);
  });
  actions.push_back([=] { return passes_cmd->parsed() ? passes(*json) : -1; });
}

}  // namespace tailor::cli
