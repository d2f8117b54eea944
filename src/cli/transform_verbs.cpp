// The transforming verbs (convert, prune, quantize, train, distill): each turns its flags into pipeline text
// and runs the registered passes through one driver, so a verb, a recipe and C++ code running the same text
// do the same thing and leave the same provenance in the model file.
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "cli.hpp"

namespace tailor::cli {

namespace fs = std::filesystem;

std::string option_text(double v) { return tailor::detail::print_number(v); }
std::string option_text(int64_t v) { return std::to_string(v); }
std::string option_text(int v) { return std::to_string(v); }
std::string option_text(bool v) { return v ? "true" : "false"; }
std::string option_text(const std::string& v) { return tailor::detail::print_text(v); }
std::string option_text(const std::vector<std::string>& v) {
  std::vector<std::string> items;
  for (const auto& x : v) items.push_back(tailor::detail::print_text(x));
  return "[" + join(items, ",") + "]";
}

std::string PipelineText::str() const {
  if (options_.empty()) return pass_;
  std::string out = pass_ + "{";
  for (size_t i = 0; i < options_.size(); ++i) out += (i ? "," : "") + options_[i].first + "=" + options_[i].second;
  return out + "}";
}

std::string pass_help(const std::string& pass, const std::string& key) {
  const auto p = make_pass(pass);
  const OptionBase& o = p->options().option(key);
  const std::string d = o.print_default();
  return o.help() + " [" + pass + " " + key + "; default " + (d.empty() ? "none" : d) + "]";
}

std::vector<int64_t> default_shape(const std::string& model) {
  if (models::is_model_name(model) && !fs::exists(model)) return models::make_model(model).input_shape;
  if (model.find('@') != std::string::npos && !fs::exists(model)) return models::ArchConfig::parse(model).input_shape();
  TAILOR_FAIL("--input is required for model files (e.g. --input 1x3x224x224)");
}

double fashion_top1(GraphModuleImpl& module, int64_t limit) {
  const data::Dataset test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), limit);
  torch::NoGradGuard no_grad;
  module.eval();
  return data::top1_accuracy(module, test, 500);
}

namespace {

nlohmann::json attr_json(const AttrValue& v) {
  return std::visit([](const auto& x) -> nlohmann::json {
    if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::monostate>) return nullptr;
    else return x;
  }, v);
}

nlohmann::json record_json(const PassRecord& r) {
  nlohmann::json stats = nlohmann::json::object();
  for (const auto& [k, v] : r.stats)
    if (k != "report") stats[k] = attr_json(v);
  return {{"pass", r.pass},
          {"changed", r.changed},
          {"seconds", r.seconds},
          {"params", {r.params_before, r.params_after}},
          {"macs", {r.macs_before, r.macs_after}},
          {"weight_bytes", {r.weight_bytes_before, r.weight_bytes_after}},
          {"stats", stats}};
}

// A training pass's statistics at the top of the report, as `tailor train --json` has always printed them
// (top1, epochs, steps, ranks, and a history row per epoch).
void add_training_summary(const PassRecord& r, nlohmann::json& report) {
  const AttrValue* loss = r.stat("loss");
  if (!loss) return;
  for (const auto& [k, v] : r.stats)
    if (k != "report" && k.find("_by_epoch") == std::string::npos && k != "loss" && !report.contains(k))
      report[k] = attr_json(v);
  auto series = [&](const char* key) {
    const AttrValue* v = r.stat(key);
    return v ? std::get<std::vector<double>>(*v) : std::vector<double>{};
  };
  const auto losses = std::get<std::vector<double>>(*loss);
  const auto top1 = series("top1_by_epoch"), lr = series("lr_by_epoch"), seconds = series("seconds_by_epoch"),
             speed = series("images_per_second_by_epoch");
  nlohmann::json history = nlohmann::json::array();
  for (size_t e = 0; e < losses.size(); ++e) {
    auto at = [&](const std::vector<double>& x) { return e < x.size() ? nlohmann::json(x[e]) : nlohmann::json(nullptr); };
    history.push_back({{"epoch", e + 1}, {"loss", losses[e]}, {"top1", at(top1)}, {"lr", at(lr)}, {"seconds", at(seconds)},
                       {"images_per_second_per_rank", at(speed)}});
  }
  report["history"] = history;
}

void print_record(const PassRecord& r) {
  std::cout << fmt::format("{}  {:.2f} s  params {} -> {}  MACs {} -> {}  weights {}B -> {}B\n", r.pass, r.seconds,
                           human_count(static_cast<double>(r.params_before)), human_count(static_cast<double>(r.params_after)),
                           human_count(static_cast<double>(r.macs_before)), human_count(static_cast<double>(r.macs_after)),
                           human_count(static_cast<double>(r.weight_bytes_before)),
                           human_count(static_cast<double>(r.weight_bytes_after)));
  for (const auto& [k, v] : r.stats) {
    if (k == "report") std::cout << std::get<std::string>(v);
    else if (std::holds_alternative<std::string>(v) && std::get<std::string>(v).size() > 300)
      std::cout << "  " << k << ": (" << std::get<std::string>(v).size() << " characters of JSON; see --json)\n";
    else if (!std::holds_alternative<std::vector<double>>(v)) std::cout << "  " << k << ": " << to_source(v) << "\n";
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> output_files(const std::string& output, const std::string& formats) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(formats);
  std::string format;
  while (std::getline(in, format, ',')) {
    TAILOR_CHECK(format == "torchscript" || format == "onnx", "unknown --format '", format,
                 "' (valid: torchscript, onnx, or both as torchscript,onnx)");
    TAILOR_CHECK(format != "onnx" || onnx_export_available(),
                 "--format onnx: this tailor was built without ONNX export (install libonnx-dev and rebuild)");
    for (const auto& [f, p] : out) TAILOR_CHECK(f != format, "--format names ", format, " twice");
    std::string path = output;
    if (!out.empty()) path = fs::path(output).replace_extension(format == "onnx" ? ".onnx" : ".pt").string();
    TAILOR_CHECK(out.empty() || path != out.front().second, "-o '", output, "' needs an extension (.pt or .onnx) when ",
                 "writing two formats");
    out.emplace_back(format, path);
  }
  TAILOR_CHECK(!out.empty(), "--format is empty (valid: torchscript, onnx)");
  return out;
}

int run_transform(TransformRun run) {
  if (run.print_pipeline) {
    std::cout << parse_pipeline(run.pipeline)->str(true) << "\n";
    return 0;
  }
  TAILOR_CHECK(!run.output.empty(), "-o/--output is required");
  const std::vector<std::pair<std::string, std::string>> outputs = output_files(run.output, run.format);
  const auto pipeline = parse_pipeline(run.pipeline);  // unknown passes and bad options fail before any work
  const PassNeeds needs = needs_of(*pipeline);
  const std::vector<int64_t> shape = run.input.empty() ? default_shape(run.model) : parse_shape(run.input);

  PassContext ctx;
  ctx.input_shapes = {shape};
  ctx.quiet = run.quiet || run.json;
  ctx.teacher = run.teacher;
  if (run.distributed) ctx.distributed = train::Distributed::from_env();
  if ((needs.calibration || needs.labels) && !run.data.empty())
    ctx.calibration = data::calibration_batches(run.data, shape, run.calib_batches, run.batch_size,
                                                run.data == "fashion-mnist" ? &ctx.calibration_labels : nullptr);
  if (const std::string why = missing_needs(*pipeline, ctx); !why.empty()) TAILOR_FAIL(why);

  GraphModule gm = models::load_model(run.model, run.zoo);
  gm->eval();
  const size_t earlier = gm->provenance().size();
  nlohmann::json report = {{"model", run.model}, {"output", run.output}, {"pipeline", pipeline->str()}};
  report.update(run.extra);
  CostReport before;
  {
    torch::NoGradGuard no_grad;
    before = analyze(*gm, {shape});
  }
  if (run.eval_limit != 0) report["top1_before"] = fashion_top1(*gm, run.eval_limit);
  pipeline->run(*gm, ctx);
  if (ctx.distributed && ctx.distributed->rank() != 0) return 0;  // rank 0 writes the model and the report

  CostReport after;
  {
    torch::NoGradGuard no_grad;
    after = analyze(*gm, {shape});  // the result runs at the given shape before anything is written
  }
  if (run.eval_limit != 0) report["top1_after"] = fashion_top1(*gm, run.eval_limit);
  const auto parent = fs::path(run.output).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  // Every file is made in memory before any is written, so an export ONNX refuses leaves no TorchScript behind.
  std::map<std::string, std::string> onnx_bytes;
  for (const auto& [format, path] : outputs) {
    if (format != "onnx") continue;
    OnnxExportReport written;
    onnx_bytes[path] = to_onnx(*gm, OnnxExportOptions({shape}).dynamic_batch(run.dynamic_batch), &written);
    report["onnx"] = {{"file", path}, {"nodes", written.nodes}, {"initializers", written.initializers},
                      {"quantize_nodes", written.quantize_nodes}, {"dequantize_nodes", written.dequantize_nodes},
                      {"bytes", written.bytes}, {"dynamic_batch", run.dynamic_batch}};
  }
  for (const auto& [format, path] : outputs) {
    if (format == "torchscript") save(*gm, path);
    else write_file_atomically(path, onnx_bytes.at(path));
  }
  if (outputs.size() > 1) {
    report["outputs"] = nlohmann::json::array();
    for (const auto& [format, path] : outputs) report["outputs"].push_back({{"format", format}, {"file", path}});
  }

  nlohmann::json passes = nlohmann::json::array();
  for (size_t i = earlier; i < gm->provenance().size(); ++i) passes.push_back(record_json(gm->provenance()[i]));
  report["passes"] = passes;
  if (gm->provenance().size() > earlier) add_training_summary(gm->provenance().back(), report);
  report["params"] = {before.params, after.params};
  report["macs"] = {before.macs, after.macs};
  report["weight_bytes"] = {before.weight_bytes, after.weight_bytes};
  if (run.json) {
    std::cout << report.dump(2) << "\n";
  } else if (!run.quiet) {
    for (size_t i = earlier; i < gm->provenance().size(); ++i) print_record(gm->provenance()[i]);
    std::cout << fmt::format("{} -> {}: params {} -> {}  MACs {} -> {}  weights {}B -> {}B\n", run.model, run.output,
                             human_count(static_cast<double>(before.params)), human_count(static_cast<double>(after.params)),
                             human_count(static_cast<double>(before.macs)), human_count(static_cast<double>(after.macs)),
                             human_count(static_cast<double>(before.weight_bytes)),
                             human_count(static_cast<double>(after.weight_bytes)));
    if (run.eval_limit != 0)
      std::cout << fmt::format("top-1 {:.2f}% -> {:.2f}%\n", 100 * report["top1_before"].get<double>(),
                               100 * report["top1_after"].get<double>());
  }
  return 0;
}

namespace {

struct Common {
  std::string model, input, output, data, format = "torchscript";
  bool dynamic_batch = false;
  int64_t calib_batches = 8, batch_size = 64;
  bool json = false, quiet = false, print_pipeline = false;
};

void add_common(CLI::App* verb, Common& c, bool model_positional = true) {
  if (model_positional) verb->add_option("model", c.model, "TorchScript file or zoo model name")->required();
  verb->add_option("--input", c.input, "input shape, e.g. 1x3x224x224 (zoo models have a default)");
  verb->add_option("-o,--output", c.output, "output .pt or .onnx file (written when complete)");
  verb->add_option("--format", c.format, "torchscript, onnx, or torchscript,onnx (the second file takes the other "
                                         "extension)")->capture_default_str();
  verb->add_flag("--dynamic-batch", c.dynamic_batch, "ONNX: a symbolic batch dimension instead of the --input batch");
  verb->add_flag("--json", c.json, "print a JSON report");
  verb->add_flag("-q,--quiet", c.quiet, "print nothing but errors");
  verb->add_flag("--print-pipeline", c.print_pipeline, "print the pipeline text this command runs, and stop");
}

void add_calibration(CLI::App* verb, Common& c, const char* what) {
  verb->add_option("--data", c.data, std::string("data for passes that calibrate (") + what +
                                         "): fashion-mnist (training images and labels) or random");
  verb->add_option("--calib-batches", c.calib_batches, "calibration batches")->capture_default_str();
  verb->add_option("--batch-size", c.batch_size, "calibration batch size")->capture_default_str();
}

TransformRun base_run(const Common& c, std::string pipeline) {
  TransformRun r;
  r.model = c.model;
  r.input = c.input;
  r.output = c.output;
  r.pipeline = std::move(pipeline);
  r.data = c.data;
  r.calib_batches = c.calib_batches;
  r.batch_size = c.batch_size;
  r.json = c.json;
  r.quiet = c.quiet;
  r.print_pipeline = c.print_pipeline;
  r.format = c.format;
  r.dynamic_batch = c.dynamic_batch;
  return r;
}

}  // namespace

namespace {

// convert: any pipeline text
void add_convert(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto c = std::make_shared<Common>();
  auto pipeline = std::make_shared<std::string>();
  auto teacher = std::make_shared<std::string>();
  auto* verb = app.add_subcommand("convert", "run a pipeline of registered passes and export TorchScript (+ tailor IR) or ONNX");
  add_common(verb, *c);
  verb->add_option("--pipeline", *pipeline, "passes to run, e.g. fold-batch-norm,remove-dropout,dce (tailor passes)");
  add_calibration(verb, *c, "quantize-static, prune-channels{criterion=taylor}, GPTQ");
  verb->add_option("--teacher", *teacher, "teacher for passes that need one (distill)");
  actions.push_back([=] {
    if (!verb->parsed()) return -1;
    TransformRun r = base_run(*c, *pipeline);
    r.teacher = *teacher;
    return run_transform(r);
  });
}

// prune
void add_prune(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto c = std::make_shared<Common>();
  c->batch_size = 64;
  struct Args {
    std::string granularity = "channel", criterion, nm = "2:4";
    double ratio = 0, max_ratio = 0;
    bool global = false;
    int64_t round_to = 1;
    std::vector<std::string> ignore;
  };
  auto a = std::make_shared<Args>();
  auto* verb = app.add_subcommand("prune", "prune a model: channels removed physically, unstructured or N:M");
  add_common(verb, *c);
  verb->add_option("--granularity", a->granularity, "channel (prune-channels), unstructured (prune-magnitude) or nm (prune-nm)")
      ->capture_default_str();
  verb->add_option("--ratio", a->ratio, pass_help("prune-channels", "ratio"));
  verb->add_option("--criterion", a->criterion, pass_help("prune-channels", "criterion"));
  verb->add_flag("--global", a->global, pass_help("prune-channels", "global"));
  verb->add_option("--round-to", a->round_to, pass_help("prune-channels", "round_to"));
  verb->add_option("--max-ratio", a->max_ratio, pass_help("prune-channels", "max_ratio"));
  verb->add_option("--ignore", a->ignore, pass_help("prune-channels", "ignore"))->delimiter(',');
  verb->add_option("--nm", a->nm, "N:M pattern for --granularity nm")->capture_default_str();
  add_calibration(verb, *c, "the taylor criterion");
  actions.push_back([=] {
    if (!verb->parsed()) return -1;
    std::string text;
    if (a->granularity == "channel") {
      text = PipelineText("prune-channels")
                 .from(verb, "--ratio", "ratio", a->ratio)
                 .from(verb, "--criterion", "criterion", a->criterion)
                 .from(verb, "--global", "global", a->global)
                 .from(verb, "--round-to", "round_to", a->round_to)
                 .from(verb, "--max-ratio", "max_ratio", a->max_ratio)
                 .from(verb, "--ignore", "ignore", a->ignore)
                 .str();
    } else if (a->granularity == "unstructured") {
      text = PipelineText("prune-magnitude").from(verb, "--ratio", "ratio", a->ratio).from(verb, "--global", "global", a->global).str();
    } else if (a->granularity == "nm") {
      const auto colon = a->nm.find(':');
      TAILOR_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < a->nm.size(),
                   "--nm: expected N:M such as 2:4, got '", a->nm, "'");
      text = PipelineText("prune-nm").set("n", a->nm.substr(0, colon)).set("m", a->nm.substr(colon + 1)).str();
    } else {
      TAILOR_FAIL("--granularity must be unstructured, nm or channel, got '", a->granularity, "'");
    }
    TransformRun r = base_run(*c, text);
    r.extra = {{"granularity", a->granularity}};
    if (verb->count("--criterion")) r.extra["criterion"] = a->criterion;
    return run_transform(r);
  });
}

// quantize
void add_quantize(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto c = std::make_shared<Common>();
  struct Args {
    std::string scheme = "int8", observer, weight_method, reduce_range, method;
    double percentile = 0;
    int64_t group_size = 0;
    bool bias_correction = false, equalize = false, per_tensor = false, symmetric = false, evaluate = false;
    std::vector<std::string> skip;
  };
  auto a = std::make_shared<Args>();
  auto* verb = app.add_subcommand("quantize", "int8 post-training quantization (quantize-static), or weight-only int8/int4 "
                                              "(quantize-weights: RTN, GPTQ)");
  add_common(verb, *c);
  verb->add_option("--scheme", a->scheme, "int8 (u8 activations, s8 weights), w8 or w4 (weight-only)")->capture_default_str();
  verb->add_option("--observer", a->observer, pass_help("quantize-static", "observer"));
  verb->add_option("--percentile", a->percentile, pass_help("quantize-static", "percentile"));
  verb->add_option("--weight-method", a->weight_method, pass_help("quantize-static", "weight_method"));
  verb->add_option("--reduce-range", a->reduce_range, pass_help("quantize-static", "reduce_range"));
  verb->add_flag("--bias-correction", a->bias_correction, pass_help("quantize-static", "bias_correction"));
  verb->add_flag("--equalize", a->equalize, pass_help("quantize-static", "equalize"));
  verb->add_flag("--per-tensor", a->per_tensor, "int8: one weight scale per layer instead of per channel");
  verb->add_option("--group-size", a->group_size, pass_help("quantize-weights", "group_size"));
  verb->add_option("--method", a->method, pass_help("quantize-weights", "method"));
  verb->add_flag("--symmetric,!--asymmetric", a->symmetric, pass_help("quantize-weights", "symmetric"));
  verb->add_option("--skip", a->skip, "layers kept in float (comma-separated)")->delimiter(',');
  verb->add_flag("--eval", a->evaluate, "report top-1 before and after on the Fashion-MNIST test set");
  add_calibration(verb, *c, "int8 and GPTQ");
  actions.push_back([=] {
    if (!verb->parsed()) return -1;
    TAILOR_CHECK(a->scheme == "int8" || a->scheme == "w8" || a->scheme == "w4", "--scheme must be int8, w8 or w4, got '",
                 a->scheme, "'");
    std::string text;
    if (a->scheme == "int8") {
      PipelineText t("quantize-static");
      t.from(verb, "--observer", "observer", a->observer)
          .from(verb, "--percentile", "percentile", a->percentile)
          .from(verb, "--weight-method", "weight_method", a->weight_method)
          .from(verb, "--reduce-range", "reduce_range", a->reduce_range)
          .from(verb, "--equalize", "equalize", a->equalize)
          .from(verb, "--bias-correction", "bias_correction", a->bias_correction)
          .from(verb, "--skip", "skip", a->skip);
      if (a->per_tensor) t.set("per_channel", "false");
      text = t.str();
    } else {
      PipelineText t("quantize-weights");
      t.set("bits", a->scheme == "w8" ? "8" : "4")
          .from(verb, "--group-size", "group_size", a->group_size)
          .from(verb, "--method", "method", a->method)
          .from(verb, "--skip", "skip", a->skip);
      if (verb->count("--symmetric") || verb->count("--asymmetric")) t.set("symmetric", option_text(a->symmetric));
      text = t.str();
    }
    TAILOR_CHECK(!a->evaluate || c->data == "fashion-mnist", "--eval needs --data fashion-mnist");
    TransformRun r = base_run(*c, text);
    r.extra = {{"scheme", a->scheme}};
    if (a->evaluate) r.eval_limit = -1;
    return run_transform(r);
  });
}

// train and distill
void add_train_and_distill(CLI::App& app, std::vector<std::function<int()>>& actions) {
  for (const bool distill : {false, true}) {
    auto c = std::make_shared<Common>();
    struct Args {
      std::string teacher, optimizer, schedule, checkpoint;
      double width = 1.0, lr = 0, momentum = 0, weight_decay = 0, gamma = 0, temperature = 0, alpha = 0;
      double hint_weight = 0, attention_weight = 0;
      int64_t epochs = 0, batch_size = 0, warmup_steps = 0, step_epochs = 0, seed = 0, patience = 0;
      int64_t limit = -1, eval_limit = -1;
      bool no_eval = false, no_resume = false;
      std::vector<std::string> hints, attention;
      std::string data = "fashion-mnist";
    };
    auto a = std::make_shared<Args>();
    const std::string pass = distill ? "distill" : "finetune";
    auto* verb = distill ? app.add_subcommand("distill", "train a student from a frozen teacher (KD, hints, attention transfer)")
                         : app.add_subcommand("train", "train or fine-tune a model on Fashion-MNIST (one process or Gloo ranks)");
    if (distill) {
      verb->add_option("--teacher", a->teacher, "teacher: TorchScript file or zoo model")->required();
      verb->add_option("--student", c->model, "student: TorchScript file or zoo model name (built fresh at --width)")->required();
    }
    add_common(verb, *c, !distill);
    verb->add_option("--data", a->data, pass_help(pass, "data"));
    verb->add_option("--epochs", a->epochs, pass_help(pass, "epochs"));
    verb->add_option("--batch-size", a->batch_size, pass_help(pass, "batch_size"));
    verb->add_option("--optimizer", a->optimizer, pass_help(pass, "optimizer"));
    verb->add_option("--lr", a->lr, pass_help(pass, "lr"));
    verb->add_option("--momentum", a->momentum, pass_help(pass, "momentum"));
    verb->add_option("--weight-decay", a->weight_decay, pass_help(pass, "weight_decay"));
    verb->add_option("--schedule", a->schedule, pass_help(pass, "schedule"));
    verb->add_option("--warmup-steps", a->warmup_steps, pass_help(pass, "warmup_steps"));
    verb->add_option("--step-epochs", a->step_epochs, pass_help(pass, "step_epochs"));
    verb->add_option("--gamma", a->gamma, pass_help(pass, "gamma"));
    verb->add_option("--seed", a->seed, pass_help(pass, "seed") + " (zoo models: also their initialization)");
    verb->add_option("--patience", a->patience, pass_help(pass, "patience"));
    verb->add_option("--width", a->width, "zoo models: channel multiplier")->capture_default_str();
    verb->add_option("--limit", a->limit, pass_help(pass, "limit"));
    verb->add_option("--eval-limit", a->eval_limit, "evaluate each epoch on the first N test images (default: all)");
    verb->add_flag("--no-eval", a->no_eval, "no evaluation (and no best-epoch restore)");
    verb->add_option("--checkpoint", a->checkpoint, pass_help(pass, "checkpoint"));
    verb->add_flag("--no-resume", a->no_resume, "start over even if the checkpoint exists");
    if (distill) {
      verb->add_option("--temperature", a->temperature, pass_help(pass, "temperature"));
      verb->add_option("--alpha", a->alpha, pass_help(pass, "alpha"));
      verb->add_option("--hint", a->hints, "FitNets hint STUDENT_NODE=TEACHER_NODE (repeatable)");
      verb->add_option("--hint-weight", a->hint_weight, pass_help(pass, "hint_weight"));
      verb->add_option("--attention", a->attention, "attention transfer STUDENT_NODE=TEACHER_NODE (repeatable)");
      verb->add_option("--attention-weight", a->attention_weight, pass_help(pass, "attention_weight"));
    }
    actions.push_back([=] {
      if (!verb->parsed()) return -1;
      PipelineText t(pass);
      t.from(verb, "--data", "data", a->data)
          .from(verb, "--limit", "limit", a->limit)
          .from(verb, "--epochs", "epochs", a->epochs)
          .from(verb, "--batch-size", "batch_size", a->batch_size)
          .from(verb, "--optimizer", "optimizer", a->optimizer)
          .from(verb, "--lr", "lr", a->lr)
          .from(verb, "--momentum", "momentum", a->momentum)
          .from(verb, "--weight-decay", "weight_decay", a->weight_decay)
          .from(verb, "--schedule", "schedule", a->schedule)
          .from(verb, "--warmup-steps", "warmup_steps", a->warmup_steps)
          .from(verb, "--step-epochs", "step_epochs", a->step_epochs)
          .from(verb, "--gamma", "gamma", a->gamma)
          .from(verb, "--seed", "seed", a->seed)
          .from(verb, "--patience", "patience", a->patience);
      // The CLI evaluates by default (a training run without a score is rarely wanted); the pass does not.
      if (!a->no_eval) t.set("eval_limit", option_text(a->eval_limit));
      t.from(verb, "--checkpoint", "checkpoint", a->checkpoint);
      if (a->no_resume) t.set("resume", "false");
      if (distill) {
        t.from(verb, "--temperature", "temperature", a->temperature)
            .from(verb, "--alpha", "alpha", a->alpha)
            .from(verb, "--hint", "hints", a->hints)
            .from(verb, "--hint-weight", "hint_weight", a->hint_weight)
            .from(verb, "--attention", "attention", a->attention)
            .from(verb, "--attention-weight", "attention_weight", a->attention_weight);
      }
      TransformRun r = base_run(*c, t.str());
      r.zoo = models::ZooOptions().width(a->width).seed(static_cast<uint64_t>(a->seed));
      r.distributed = true;
      if (distill) {
        r.teacher = a->teacher;  // through the context, as a recipe gives its baseline: the same text either way
        r.extra["teacher"] = a->teacher;
      }
      r.extra["student"] = c->model;
      return run_transform(r);
    });
  }
}

}  // namespace

void add_transform_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  add_convert(app, actions);
  add_prune(app, actions);
  add_quantize(app, actions);
  add_train_and_distill(app, actions);
}

}  // namespace tailor::cli
