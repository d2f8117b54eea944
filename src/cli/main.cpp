// The `tailor` command-line tool: verbs over the library (inspect, convert, profile, prune, quantize, eval,
// train, distill, launch, passes, version).
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/tailor.hpp"
#include "tailor/recipe/recipe.hpp"
#include "tailor/train/distributed.hpp"
#include "tailor/train/train.hpp"

namespace {

using namespace tailor;

std::string human(double v) {
  const char* units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (std::abs(v) >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}{}", v, units[u]);
}

GraphModule load_model(const std::string& model) {
  if (models::is_model_name(model) && !std::filesystem::exists(model)) return models::capture_model(model);
  TAILOR_CHECK(std::filesystem::exists(model), "model '", model, "' is neither a file nor a zoo model (",
               [] {
                 std::string s;
                 for (const auto& n : models::model_names()) s += (s.empty() ? "" : ", ") + n;
                 return s;
               }(),
               ")");
  return load(model);
}

std::vector<int64_t> default_shape(const std::string& model) {
  if (models::is_model_name(model) && !std::filesystem::exists(model))
    return models::make_model(model).input_shape;
  TAILOR_FAIL("--input is required for model files (e.g. --input 1x3x224x224)");
}

int inspect(const std::string& model, const std::string& input, bool json) {
  GraphModule gm = load_model(model);
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
                             c.params ? human(static_cast<double>(c.params)) : "-",
                             c.macs ? human(static_cast<double>(c.macs)) : "-");
  }
  std::cout << fmt::format(
      "\n{}: input {}  nodes {}  params {} ({})  MACs {}  FLOPs {}  weights {}B  activations {}B (peak {}B)\n", model,
      shape_to_string(shape), report.nodes.size(), human(static_cast<double>(report.params)), report.params,
      human(static_cast<double>(report.macs)), human(static_cast<double>(report.flops)),
      human(static_cast<double>(report.weight_bytes)), human(static_cast<double>(report.activation_bytes)),
      human(static_cast<double>(report.peak_activation_bytes)));
  return 0;
}

int convert(const std::string& model, const std::string& input, const std::string& out, const std::string& pipeline,
            bool json, bool quiet) {
  GraphModule gm = load_model(model);
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  PassContext ctx;
  ctx.input_shapes = {shape};
  ctx.quiet = quiet;
  auto p = parse_pipeline(pipeline);
  {
    torch::NoGradGuard no_grad;
    p->run(*gm, ctx);
  }
  // Check the result runs at the given shape before writing anything.
  const CostReport report = analyze(*gm, {shape});
  save(*gm, out);
  if (json) {
    nlohmann::json records = nlohmann::json::array();
    for (const auto& r : ctx.records)
      records.push_back({{"pass", r.pass}, {"changed", r.changed}, {"seconds", r.seconds},
                         {"params_before", r.params_before}, {"params_after", r.params_after},
                         {"macs_before", r.macs_before}, {"macs_after", r.macs_after}});
    std::cout << nlohmann::json{{"model", model}, {"output", out}, {"pipeline", p->str()}, {"passes", records},
                                {"params", report.params}, {"macs", report.macs}}
                     .dump(2)
              << "\n";
  } else if (!quiet) {
    for (const auto& r : ctx.records)
      std::cout << fmt::format("{:<24} {:>8.3f}s  params {} -> {}  MACs {} -> {}\n", r.pass, r.seconds,
                               human(static_cast<double>(r.params_before)), human(static_cast<double>(r.params_after)),
                               human(static_cast<double>(r.macs_before)), human(static_cast<double>(r.macs_after)));
    std::cout << "wrote " << out << " (params " << report.params << ", MACs " << report.macs << ")\n";
  }
  return 0;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  return out;
}

struct ProfileArgs {
  std::string backends = "libtorch-cpu,onednn-cpu";
  std::string batches = "1";
  std::string card;
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

int profile_cmd(const std::string& model, const std::string& input, ProfileArgs args, bool json) {
  // First, before any kernel exists: oneDNN fixes its ISA when it makes the first one.
  if (!args.isa.empty()) set_isa_cap(args.isa);
  args.options.isa = args.isa;
  GraphModule gm = load_model(model);
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  const auto backends = split_list(args.backends);
  TAILOR_CHECK(!backends.empty(), "--backends is empty");
  for (const auto& b : backends) make_backend(b);  // unknown names fail before any work
  args.options.threads = args.threads;
  args.options.fold = !args.no_fold;
  args.options.batches.clear();
  for (const auto& b : split_list(args.batches)) {
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
                             human(static_cast<double>(p.peak_activation_bytes)),
                             human(static_cast<double>(p.weight_bytes)), p.executable);
    std::vector<NodeTime> top = p.nodes;
    std::sort(top.begin(), top.end(), [](const NodeTime& a, const NodeTime& c) { return a.ms > c.ms; });
    if (top.size() > static_cast<size_t>(args.nodes)) top.resize(args.nodes);
    for (const auto& n : top)
      std::cout << fmt::format("    {:>8.3f} ms {:>5.1f}%  {:<14} {}{}\n", n.ms, 100 * n.share, n.kind.substr(0, 14),
                               n.node, n.fused.empty() ? "" : " (+" + std::to_string(n.fused.size()) + " fused)");
  }
  if (!args.card.empty()) {
    Manifest m;
    m.variants.push_back(card);
    const auto parent = std::filesystem::path(args.card).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    m.save(args.card);
    if (!json) std::cout << "wrote " << args.card << "\n";
  }
  if (json) {
    out["params"] = card.params;
    out["macs"] = card.macs;
    out["profiles"] = profiles;
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

struct PruneArgs {
  std::string granularity = "channel";
  double ratio = 0.5;
  std::string criterion = "l1";
  bool global = false;
  std::string nm = "2:4";
  int64_t round_to = 1;
  double max_ratio = 0.9;
  std::string data;  ///< where the taylor criterion takes its gradients: fashion-mnist or random
  int64_t calib_batches = 8;
  int64_t batch_size = 32;
};

std::vector<torch::Tensor> calibration_batches(const std::string& source, const std::vector<int64_t>& shape,
                                               int64_t batches, int64_t batch_size,
                                               std::vector<torch::Tensor>* labels = nullptr);

int prune_cmd(const std::string& model, const std::string& input, const std::string& out, const PruneArgs& args,
              bool json) {
  GraphModule gm = load_model(model);
  gm->eval();
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  torch::NoGradGuard no_grad;
  const CostReport before = analyze(*gm, {shape});
  nlohmann::json report = {{"model", model}, {"granularity", args.granularity}, {"ratio", args.ratio}};
  if (args.granularity == "channel") {
    ChannelPruneOptions o;
    o.ratio = args.ratio;
    o.criterion = criterion_from_string(args.criterion);
    o.global = args.global;
    o.round_to = args.round_to;
    o.max_ratio = args.max_ratio;
    GradientFn gradients;
    if (o.criterion == Criterion::Taylor) {
      TAILOR_CHECK(!args.data.empty(), "--criterion taylor takes gradients on data: give --data fashion-mnist (images "
                                       "and labels) or --data random (the model's own predictions as labels)");
      std::vector<torch::Tensor> labels;
      auto images = calibration_batches(args.data, shape, args.calib_batches, args.batch_size, &labels);
      gradients = gradients_from_batches(std::move(images), std::move(labels));
      report["data"] = args.data;
    }
    const ChannelPruneResult r = prune_channels(*gm, {shape}, o, gradients);
    report["channels_removed"] = r.channels_removed;
    nlohmann::json layers = nlohmann::json::object();
    for (const auto& [name, c] : r.layers) layers[name] = {c.first, c.second};
    report["layers"] = layers;
    report["criterion"] = args.criterion;
  } else if (args.granularity == "unstructured" || args.granularity == "nm") {
    std::map<std::string, torch::Tensor> weights;
    int n = 0, m = 0;
    if (args.granularity == "nm") {
      const auto colon = args.nm.find(':');
      TAILOR_CHECK(colon != std::string::npos, "--nm: expected N:M such as 2:4, got '", args.nm, "'");
      try {
        n = std::stoi(args.nm.substr(0, colon));
        m = std::stoi(args.nm.substr(colon + 1));
      } catch (const std::exception&) {
        TAILOR_FAIL("--nm: expected N:M such as 2:4, got '", args.nm, "'");
      }
    }
    std::vector<std::string> skipped;
    for (const auto& name : prunable_weights(*gm)) {
      if (m > 0 && gm->tensor(name).size(1) % m != 0) {
        skipped.push_back(name);
        continue;
      }
      weights[name] = gm->tensor(name);
    }
    const Masks masks = m > 0 ? nm_masks(weights, n, m) : magnitude_masks(weights, args.ratio, args.global);
    for (const auto& [name, mk] : masks) gm->tensor(name).mul_(mk);
    report["sparsity"] = mask_sparsity(masks);
    report["layers_pruned"] = masks.size();
    if (!skipped.empty()) report["skipped"] = skipped;  // e.g. a first conv with 3 input channels for 2:4
    if (m > 0) report["nm"] = args.nm;
  } else {
    TAILOR_FAIL("--granularity must be unstructured, nm or channel, got '", args.granularity, "'");
  }
  const CostReport after = analyze(*gm, {shape});  // runs the pruned model once before anything is written
  save(*gm, out);
  report["output"] = out;
  report["params"] = {before.params, after.params};
  report["macs"] = {before.macs, after.macs};
  report["weight_bytes"] = {before.weight_bytes, after.weight_bytes};
  if (json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{} -> {}: params {} -> {} ({:.1f}%)  MACs {} -> {} ({:.1f}%)\n", model, out,
                             human(static_cast<double>(before.params)), human(static_cast<double>(after.params)),
                             100.0 * static_cast<double>(after.params) / static_cast<double>(before.params),
                             human(static_cast<double>(before.macs)), human(static_cast<double>(after.macs)),
                             100.0 * static_cast<double>(after.macs) / static_cast<double>(before.macs));
    if (report.contains("sparsity"))
      std::cout << fmt::format("weight sparsity {:.1f}% over {} layers (shapes unchanged)\n",
                               100.0 * report["sparsity"].get<double>(), report["layers_pruned"].get<size_t>());
    if (report.contains("channels_removed"))
      std::cout << fmt::format("{} channels removed in {} layers\n", report["channels_removed"].get<int64_t>(),
                               report["layers"].size());
  }
  return 0;
}

// Input batches for calibration: the first training images of a dataset, or Gaussian noise of the model's
// input shape (for models that only need ranges of the right order, e.g. torchvision structures).
std::vector<torch::Tensor> calibration_batches(const std::string& source, const std::vector<int64_t>& shape,
                                               int64_t batches, int64_t batch_size, std::vector<torch::Tensor>* labels) {
  TAILOR_CHECK(batches > 0 && batch_size > 0, "--calib-batches and --batch-size must be positive");
  std::vector<torch::Tensor> out;
  if (source == "random") {
    torch::manual_seed(0);
    std::vector<int64_t> s = shape;
    s[0] = batch_size;
    for (int64_t b = 0; b < batches; ++b) out.push_back(torch::randn(s));
    return out;
  }
  TAILOR_CHECK(source == "fashion-mnist", "--data must be fashion-mnist or random, got '", source, "'");
  const data::Dataset train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), batches * batch_size);
  for (const auto& b : data::batches(train, batch_size, false)) {
    out.push_back(b.images);
    if (labels) labels->push_back(b.labels);
  }
  return out;
}

double fashion_top1(GraphModuleImpl& gm, int64_t limit) {
  const data::Dataset test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), limit);
  torch::NoGradGuard no_grad;
  gm.eval();
  return data::top1_accuracy([&](const at::Tensor& x) { return gm.forward(x); }, test, 500);
}

// Top-1 of what a backend really runs (int8 kernels on onednn-cpu, not the fake-quant graph): one executable
// per batch size met (the last batch may be smaller).
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
        return exe->run({x}).toTensor().cpu();
      },
      test, 500);
}

int eval_cmd(const std::string& model, const std::string& source, int64_t limit, const std::string& backend,
             const std::string& isa, bool json) {
  TAILOR_CHECK(source == "fashion-mnist", "--data must be fashion-mnist (the 10,000 test images), got '", source, "'");
  if (!isa.empty()) set_isa_cap(isa);  // before any kernel exists
  GraphModule gm = load_model(model);
  const double top1 = backend.empty() ? fashion_top1(*gm, limit) : backend_top1(*gm, backend, isa, limit);
  const std::string ran = backend.empty() ? "graph" : backend + " (" + effective_isa() + ")";
  if (json)
    std::cout << nlohmann::json{{"model", model}, {"data", source}, {"top1", top1}, {"ran_on", ran}}.dump(2) << "\n";
  else
    std::cout << fmt::format("{}: top-1 {:.2f}% on {} ({})\n", model, 100 * top1, source, ran);
  return 0;
}

struct QuantArgs {
  std::string scheme = "int8";
  std::string data;
  std::string observer = "minmax";
  int64_t calib_batches = 8;
  int64_t batch_size = 64;
  int64_t group_size = 128;
  std::string method = "rtn";
  std::string weight_method = "minmax";
  bool bias_correction = false;
  bool equalize = false;
  bool per_tensor = false;
  std::string skip;
  bool evaluate = false;
};

int quantize_cmd(const std::string& model, const std::string& input, const std::string& out, const QuantArgs& a,
                 bool json) {
  TAILOR_CHECK(a.scheme == "int8" || a.scheme == "w8" || a.scheme == "w4", "--scheme must be int8, w8 or w4, got '",
               a.scheme, "'");
  GraphModule gm = load_model(model);
  gm->eval();
  const auto shape = input.empty() ? default_shape(model) : parse_shape(input);
  const bool needs_data = a.scheme == "int8" || a.method == "gptq";
  TAILOR_CHECK(!needs_data || !a.data.empty(), "--scheme ", a.scheme, a.method == "gptq" ? " with --method gptq" : "",
               " needs calibration data: give --data fashion-mnist (or --data random for structure-only models)");
  TAILOR_CHECK(!a.evaluate || a.data == "fashion-mnist", "--eval needs --data fashion-mnist");
  const auto calib = a.data.empty() ? std::vector<torch::Tensor>{} : calibration_batches(a.data, shape, a.calib_batches, a.batch_size);
  torch::NoGradGuard no_grad;
  const CostReport before = analyze(*gm, {shape});
  nlohmann::json report = {{"model", model}, {"scheme", a.scheme}};
  if (a.evaluate) report["top1_before"] = fashion_top1(*gm, -1);
  std::vector<std::string> skip = split_list(a.skip);
  quant::QuantReport qr;
  if (a.scheme == "int8") {
    quant::PtqOptions o;
    o.observer.kind = a.observer;
    o.weight_method = a.weight_method;
    o.bias_correction = a.bias_correction;
    o.equalize = a.equalize;
    o.weights.per_channel = !a.per_tensor;
    o.skip = skip;
    o.progress = !json;
    qr = quant::quantize_static(*gm, calib, o);
  } else {
    quant::WeightOnlyOptions o;
    o.bits = a.scheme == "w8" ? 8 : 4;
    o.group_size = a.scheme == "w8" ? 0 : a.group_size;
    o.symmetric = a.scheme == "w8";
    o.method = a.method;
    o.skip = skip;
    o.progress = !json;
    qr = quant::quantize_weights(*gm, calib, o);
  }
  const CostReport after = analyze(*gm, {shape});  // runs the quantized model once before anything is written
  if (a.evaluate) report["top1_after"] = fashion_top1(*gm, -1);
  const auto parent = std::filesystem::path(out).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  save(*gm, out);
  report["output"] = out;
  report["calibration_batches"] = qr.calibration_batches;
  report["weight_bytes"] = {before.weight_bytes, after.weight_bytes};
  report["quantization"] = nlohmann::json::parse(qr.to_json());
  if (json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << qr.str();
    std::cout << fmt::format("{} -> {}: weights {} -> {} bytes ({:.1f}%)\n", model, out, before.weight_bytes,
                             after.weight_bytes,
                             100.0 * static_cast<double>(after.weight_bytes) / static_cast<double>(before.weight_bytes));
    if (a.evaluate)
      std::cout << fmt::format("top-1 {:.2f}% -> {:.2f}%\n", 100 * report["top1_before"].get<double>(),
                               100 * report["top1_after"].get<double>());
  }
  return 0;
}


struct TrainArgs {
  std::string data = "fashion-mnist";
  double width = 1.0;
  int64_t limit = -1;
  int64_t eval_limit = -1;
  bool no_eval = false;
  std::string checkpoint;
  bool no_resume = false;
  double temperature = 2.0;
  double alpha = 0.7;
  std::vector<std::string> hints, attention;
  double hint_weight = 1.0, attention_weight = 500.0;
  train::TrainOptions options;
};

// A student or model to train: a file, or a zoo architecture built fresh for Fashion-MNIST at --width.
GraphModule trainable_model(const std::string& model, const TrainArgs& a) {
  if (models::is_model_name(model) && !std::filesystem::exists(model))
    return models::capture_model(model, models::ZooOptions().width(a.width).seed(a.options.seed));
  return load_model(model);
}

std::vector<train::TapPair> tap_pairs(const std::vector<std::string>& specs, const char* flag) {
  std::vector<train::TapPair> out;
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    TAILOR_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), flag, " '", spec,
                 "' must be STUDENT_NODE=TEACHER_NODE");
    out.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
  }
  return out;
}

// `tailor train` (teacher empty) and `tailor distill`: Fashion-MNIST training on one process or, under
// `tailor launch`, on c10d/Gloo ranks (rank 0 writes the checkpoint, the output and the report).
int train_cmd(const std::string& teacher_path, const std::string& student_path, const std::string& out, TrainArgs a,
              bool json) {
  TAILOR_CHECK(a.data == "fashion-mnist", "--data must be fashion-mnist, got '", a.data, "'");
  TAILOR_CHECK(!out.empty(), "-o/--output is required");
  a.options.distributed = train::Distributed::from_env();
  const int rank = a.options.distributed ? a.options.distributed->rank() : 0;
  GraphModule student = trainable_model(student_path, a);
  std::optional<GraphModule> teacher;
  if (!teacher_path.empty()) teacher = load_model(teacher_path);
  const data::Dataset train_set = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), a.limit);
  data::Dataset test_set;
  if (!a.no_eval) test_set = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), a.eval_limit);
  train::DistillOptions d;
  d.temperature = a.temperature;
  d.alpha = a.alpha;
  d.hints = tap_pairs(a.hints, "--hint");
  d.attention = tap_pairs(a.attention, "--attention");
  d.hint_weight = a.hint_weight;
  d.attention_weight = a.attention_weight;
  a.options.checkpoint = a.checkpoint;
  a.options.resume = !a.no_resume;
  a.options.progress = !json && rank == 0;
  const train::TrainResult r =
      teacher ? train::distill(*teacher, student, train_set, a.no_eval ? nullptr : &test_set, a.options, d)
              : train::finetune(student, train_set, a.no_eval ? nullptr : &test_set, a.options);
  if (rank != 0) return 0;
  const auto parent = std::filesystem::path(out).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  save(*student, out);
  torch::NoGradGuard g;
  const CostReport cost = analyze(*student, {{1, 1, 28, 28}});
  nlohmann::json report = {{"student", student_path}, {"output", out}, {"epochs", r.history.size()},
                           {"steps", r.steps}, {"seconds", r.seconds}, {"params", cost.params}, {"macs", cost.macs},
                           {"resumed_after_epoch", r.resumed_after_epoch}, {"stopped_early", r.stopped_early},
                           {"ranks", a.options.distributed ? a.options.distributed->world_size() : 1}};
  if (teacher) report["teacher"] = teacher_path;
  if (!a.no_eval) {
    report["top1"] = r.best_epoch > 0 && a.options.restore_best ? r.best_accuracy : r.history.back().eval_accuracy;
    report["best_epoch"] = r.best_epoch;
  }
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& e : r.history)
    hist.push_back({{"epoch", e.epoch}, {"loss", e.train_loss}, {"top1", e.eval_accuracy}, {"lr", e.lr},
                    {"seconds", e.seconds}, {"images_per_second_per_rank", e.images_per_second}});
  report["history"] = hist;
  if (json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{} -> {}: {} params, {} MACs, {} epochs in {:.0f} s", student_path, out,
                             human(static_cast<double>(cost.params)), human(static_cast<double>(cost.macs)),
                             r.history.size(), r.seconds);
    if (report.contains("top1")) std::cout << fmt::format(", top-1 {:.2f}%", 100 * report["top1"].get<double>());
    std::cout << "\n";
  }
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

void add_train_options(CLI::App* sub, TrainArgs& a) {
  auto& o = a.options;
  sub->add_option("--data", a.data, "fashion-mnist")->capture_default_str();
  sub->add_option("--epochs", o.epochs, "training epochs")->capture_default_str();
  sub->add_option("--batch-size", o.batch_size, "global batch size (split over ranks)")->capture_default_str();
  sub->add_option("--optimizer", o.optimizer, "sgd, adam or adamw")->capture_default_str();
  sub->add_option("--lr", o.lr, "peak learning rate")->capture_default_str();
  sub->add_option("--momentum", o.momentum, "sgd momentum")->capture_default_str();
  sub->add_option("--weight-decay", o.weight_decay, "weight decay")->capture_default_str();
  sub->add_option("--schedule", o.schedule.kind, "constant, cosine or step")->capture_default_str();
  sub->add_option("--warmup-steps", o.schedule.warmup_steps, "linear warm-up steps")->capture_default_str();
  sub->add_option("--step-epochs", o.schedule.step_epochs, "step schedule: epochs per decay")->capture_default_str();
  sub->add_option("--gamma", o.schedule.gamma, "step schedule: decay factor")->capture_default_str();
  sub->add_option("--seed", o.seed, "seed for data order, initialization and dropout")->capture_default_str();
  sub->add_option("--patience", o.patience, "stop after N epochs without a better top-1 (0: never)")
      ->capture_default_str();
  sub->add_option("--width", a.width, "zoo models: channel multiplier")->capture_default_str();
  sub->add_option("--limit", a.limit, "train on the first N training images");
  sub->add_option("--eval-limit", a.eval_limit, "evaluate on the first N test images");
  sub->add_flag("--no-eval", a.no_eval, "no evaluation (and no best-epoch restore)");
  sub->add_option("--checkpoint", a.checkpoint, "checkpoint file, written after every epoch; resumed when present");
  sub->add_flag("--no-resume", a.no_resume, "start over even if the checkpoint exists");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tailor: fit LibTorch models to the hardware they run on"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(tailor::version()));

  std::string model, input, out, pipeline;
  bool json = false, quiet = false;

  auto* inspect_cmd = app.add_subcommand("inspect", "per-node table of a model: op, output shape, params, MACs");
  inspect_cmd->add_option("model", model, "TorchScript file or zoo model name")->required();
  inspect_cmd->add_option("--input", input, "input shape, e.g. 1x3x224x224 (zoo models have a default)");
  inspect_cmd->add_flag("--json", json, "print JSON (params, macs, flops, nodes, ...)");

  auto* convert_cmd = app.add_subcommand("convert", "capture a model and export it as TorchScript (+ tailor IR)");
  convert_cmd->add_option("model", model, "TorchScript file or zoo model name")->required();
  convert_cmd->add_option("--input", input, "input shape, e.g. 1x3x224x224");
  convert_cmd->add_option("-o,--output", out, "output .pt file")->required();
  convert_cmd->add_option("--pipeline", pipeline, "passes to run first, e.g. fold-batch-norm,remove-dropout,dce");
  convert_cmd->add_flag("--json", json, "print a JSON report");
  convert_cmd->add_flag("-q,--quiet", quiet, "print nothing but errors");

  ProfileArgs pargs;
  auto* profile_sub = app.add_subcommand("profile", "measure latency on backends (or --check that they agree)");
  profile_sub->add_option("model", model, "TorchScript file or zoo model name")->required();
  profile_sub->add_option("--input", input, "input shape, e.g. 1x3x224x224 (the batch is replaced by --batch)");
  profile_sub->add_option("--backends", pargs.backends, "comma-separated: onednn-cpu, libtorch-cpu, libtorch-cuda")
      ->capture_default_str();
  profile_sub->add_option("--threads", pargs.threads, "intra-op threads")->capture_default_str();
  profile_sub->add_option("--batch", pargs.batches, "batch sizes, e.g. 1,8 (the first is the profile's batch)")
      ->capture_default_str();
  profile_sub->add_option("--warmup", pargs.options.warmup, "untimed runs first")->capture_default_str();
  profile_sub->add_option("--min-runs", pargs.options.min_runs, "timed runs at least")->capture_default_str();
  profile_sub->add_option("--max-runs", pargs.options.max_runs, "timed runs at most")->capture_default_str();
  profile_sub->add_option("--max-seconds", pargs.options.max_seconds, "time cap per batch size")->capture_default_str();
  profile_sub->add_option("--node-runs", pargs.options.node_runs, "runs timed node by node (0: none)")
      ->capture_default_str();
  profile_sub->add_option("--nodes", pargs.nodes, "slowest nodes to list")->capture_default_str();
  profile_sub->add_option("--dtype", pargs.options.dtype, "float32, or bfloat16 (onednn-cpu on avx512_core CPUs)")
      ->capture_default_str();
  profile_sub->add_option("--isa", pargs.isa, "cap the x86 ISA of CPU kernels: sse41, avx, avx2, avx2_vnni, avx512_core, "
                          "avx512_core_vnni, ... (to profile for a smaller x86 CPU)");
  profile_sub->add_flag("--no-fold", pargs.no_fold, "keep batch norms and dropouts (default: fold for inference)");
  profile_sub->add_flag("--check", pargs.check, "run every backend on one input and report the largest difference");
  profile_sub->add_option("--tolerance", pargs.tolerance, "--check: largest relative difference allowed")
      ->capture_default_str();
  profile_sub->add_option("--card", pargs.card, "write a manifest.json with this model's variant card");
  profile_sub->add_flag("--json", json, "print JSON");

  PruneArgs prargs;
  auto* prune_sub = app.add_subcommand("prune", "prune a model: unstructured, N:M, or channels removed physically");
  prune_sub->add_option("model", model, "TorchScript file or zoo model name")->required();
  prune_sub->add_option("--input", input, "input shape, e.g. 1x3x224x224 (zoo models have a default)");
  prune_sub->add_option("--granularity", prargs.granularity, "unstructured, nm or channel")->capture_default_str();
  prune_sub->add_option("--ratio", prargs.ratio, "fraction to remove, in [0, 1)")->capture_default_str();
  prune_sub->add_option("--criterion", prargs.criterion, "channel importance: l1, l2, bn, taylor (needs --data), random")
      ->capture_default_str();
  prune_sub->add_option("--data", prargs.data,
                        "data for --criterion taylor: fashion-mnist (training images and labels) or random");
  prune_sub->add_option("--calib-batches", prargs.calib_batches, "batches the taylor criterion takes gradients on")
      ->capture_default_str();
  prune_sub->add_option("--batch-size", prargs.batch_size, "batch size of those batches")->capture_default_str();
  prune_sub->add_flag("--global", prargs.global, "rank across layers instead of per layer");
  prune_sub->add_option("--nm", prargs.nm, "N:M pattern for --granularity nm")->capture_default_str();
  prune_sub->add_option("--round-to", prargs.round_to, "kept channel counts are multiples of this")
      ->capture_default_str();
  prune_sub->add_option("--max-ratio", prargs.max_ratio, "no channel group loses more than this")
      ->capture_default_str();
  prune_sub->add_option("-o,--output", out, "output .pt file")->required();
  prune_sub->add_flag("--json", json, "print a JSON report (params/MACs before and after)");

  std::string data_source = "fashion-mnist";
  int64_t limit = -1;
  auto* eval_sub = app.add_subcommand("eval", "top-1 accuracy on a dataset's test split");
  eval_sub->add_option("model", model, "TorchScript file or zoo model name")->required();
  eval_sub->add_option("--data", data_source, "fashion-mnist")->capture_default_str();
  eval_sub->add_option("--limit", limit, "evaluate the first N test images only");
  std::string eval_backend, eval_isa;
  eval_sub->add_option("--backend", eval_backend, "run on this backend (onednn-cpu runs int8 kernels) instead of the "
                       "graph (fake-quant for quantized models)");
  eval_sub->add_option("--isa", eval_isa, "with --backend: cap the x86 ISA (avx2, sse41, ...)");
  eval_sub->add_flag("--json", json, "print JSON");

  QuantArgs qargs;
  auto* quant_sub = app.add_subcommand("quantize", "int8 post-training quantization, or weight-only int8/int4 (RTN, GPTQ)");
  quant_sub->add_option("model", model, "TorchScript file or zoo model name")->required();
  quant_sub->add_option("--input", input, "input shape, e.g. 1x1x28x28 (zoo models have a default)");
  quant_sub->add_option("--scheme", qargs.scheme, "int8 (u8 activations, s8 weights), w8 or w4 (weight-only)")
      ->capture_default_str();
  quant_sub->add_option("--data", qargs.data, "calibration data: fashion-mnist (training images) or random");
  quant_sub->add_option("--observer", qargs.observer, "minmax, moving-minmax, percentile, mse, entropy")
      ->capture_default_str();
  quant_sub->add_option("--calib-batches", qargs.calib_batches, "calibration batches")->capture_default_str();
  quant_sub->add_option("--batch-size", qargs.batch_size, "calibration batch size")->capture_default_str();
  quant_sub->add_option("--group-size", qargs.group_size, "w4: weights per scale (0: per channel)")->capture_default_str();
  quant_sub->add_option("--method", qargs.method, "w8/w4: rtn or gptq")->capture_default_str();
  quant_sub->add_option("--weight-method", qargs.weight_method, "int8 weight ranges: minmax or mse")->capture_default_str();
  quant_sub->add_flag("--bias-correction", qargs.bias_correction, "int8: empirical bias correction");
  quant_sub->add_flag("--equalize", qargs.equalize, "int8: cross-layer equalization first");
  quant_sub->add_flag("--per-tensor", qargs.per_tensor, "int8: one weight scale per layer instead of per channel");
  quant_sub->add_option("--skip", qargs.skip, "comma-separated layers kept in float");
  quant_sub->add_flag("--eval", qargs.evaluate, "report top-1 before and after on the Fashion-MNIST test set");
  quant_sub->add_option("-o,--output", out, "output .pt file")->required();
  quant_sub->add_flag("--json", json, "print a JSON report");

  TrainArgs targs;
  std::string teacher;
  auto* train_sub = app.add_subcommand("train", "train or fine-tune a model on Fashion-MNIST (one process or Gloo ranks)");
  train_sub->add_option("model", model, "TorchScript file or zoo model name (built fresh at --width)")->required();
  add_train_options(train_sub, targs);
  train_sub->add_option("-o,--output", out, "output .pt file")->required();
  train_sub->add_flag("--json", json, "print a JSON report");

  auto* distill_sub = app.add_subcommand("distill", "train a student from a frozen teacher (KD, hints, attention transfer)");
  distill_sub->add_option("--teacher", teacher, "teacher: TorchScript file or zoo model")->required();
  distill_sub->add_option("--student", model, "student: TorchScript file or zoo model name (built fresh at --width)")
      ->required();
  add_train_options(distill_sub, targs);
  distill_sub->add_option("--temperature", targs.temperature, "soft-target temperature T")->capture_default_str();
  distill_sub->add_option("--alpha", targs.alpha, "weight of the soft-target loss (1 - alpha: labels)")
      ->capture_default_str();
  distill_sub->add_option("--hint", targs.hints, "FitNets hint STUDENT_NODE=TEACHER_NODE (repeatable)");
  distill_sub->add_option("--hint-weight", targs.hint_weight, "weight of the hint losses")->capture_default_str();
  distill_sub->add_option("--attention", targs.attention, "attention transfer STUDENT_NODE=TEACHER_NODE (repeatable)");
  distill_sub->add_option("--attention-weight", targs.attention_weight, "weight of the attention losses")
      ->capture_default_str();
  distill_sub->add_option("-o,--output", out, "output .pt file")->required();
  distill_sub->add_flag("--json", json, "print a JSON report");

  train::LaunchOptions largs;
  std::vector<std::string> launch_argv;
  auto* launch_sub = app.add_subcommand("launch", "start N ranks of a command on this machine (c10d/Gloo, torchrun's variables)");
  launch_sub->add_option("-n,--nproc", largs.nproc, "ranks on this machine")->capture_default_str();
  launch_sub->add_option("--nnodes", largs.nnodes, "machines")->capture_default_str();
  launch_sub->add_option("--node-rank", largs.node_rank, "this machine's index")->capture_default_str();
  launch_sub->add_option("--master-addr", largs.master_addr, "address of rank 0's machine")->capture_default_str();
  launch_sub->add_option("--master-port", largs.master_port, "port of rank 0's store")->capture_default_str();
  launch_sub->add_option("command", launch_argv, "the command and its arguments (after --)")->required();

  std::string recipe_path;
  bool no_resume = false;
  auto* compress_sub = app.add_subcommand("compress", "run a compression recipe: variants, manifest.json and report.html");
  compress_sub->add_option("recipe", recipe_path, "recipe file (YAML)")->required();
  compress_sub->add_option("-o,--output", out, "output folder (default: the recipe's 'output')");
  compress_sub->add_flag("--no-resume", no_resume, "recompute every step even if an earlier run finished it");
  compress_sub->add_flag("--json", json, "print the manifest as JSON (plus kept variants and the report's path)");

  auto* passes_cmd = app.add_subcommand("passes", "list the registered passes");
  passes_cmd->add_flag("--json", json, "print JSON");

  CLI11_PARSE(app, argc, argv);
  try {
    if (inspect_cmd->parsed()) return inspect(model, input, json);
    if (convert_cmd->parsed()) return convert(model, input, out, pipeline, json, quiet);
    if (profile_sub->parsed()) return profile_cmd(model, input, pargs, json);
    if (prune_sub->parsed()) return prune_cmd(model, input, out, prargs, json);
    if (eval_sub->parsed()) return eval_cmd(model, data_source, limit, eval_backend, eval_isa, json);
    if (quant_sub->parsed()) return quantize_cmd(model, input, out, qargs, json);
    if (compress_sub->parsed()) return compress_cmd(recipe_path, out, no_resume, json);
    if (train_sub->parsed()) return train_cmd("", model, out, targs, json);
    if (distill_sub->parsed()) return train_cmd(teacher, model, out, targs, json);
    if (launch_sub->parsed()) {
      // `tailor launch -n 2 -- tailor train ...` runs this very binary, wherever it is installed.
      if (!launch_argv.empty() && launch_argv[0] == "tailor") launch_argv[0] = std::filesystem::read_symlink("/proc/self/exe");
      return train::launch(launch_argv, largs);
    }
    if (passes_cmd->parsed()) {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& p : tailor::registered_passes()) {
        if (json) list.push_back({{"name", p.name}, {"description", p.description}});
        else std::cout << fmt::format("{:<20} {}\n", p.name, p.description);
      }
      if (json) std::cout << list.dump(2) << "\n";
      return 0;
    }
  } catch (const tailor::Error& e) {
    std::cerr << "tailor: error: " << e.message() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "tailor: error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  return 0;
}
