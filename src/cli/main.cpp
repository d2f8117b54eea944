// The `tailor` command-line tool: verbs over the library (inspect, convert, passes, version).
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/tailor.hpp"

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

  auto* passes_cmd = app.add_subcommand("passes", "list the registered passes");
  passes_cmd->add_flag("--json", json, "print JSON");

  CLI11_PARSE(app, argc, argv);
  try {
    if (inspect_cmd->parsed()) return inspect(model, input, json);
    if (convert_cmd->parsed()) return convert(model, input, out, pipeline, json, quiet);
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
