// `tailor place`: plans where each variant of a manifest runs (edge, cloud, or split) for one or more links, and
// writes the chosen plan's edge part, cloud part and plan.json.
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "cli.hpp"

namespace tailor::cli {
namespace {

struct PlaceArgs {
  std::string manifest, edge, cloud, objective, output, percentile, codec, placement = "best";
  std::vector<std::string> links, variants;
  double latency_ms = 0, throughput = 0, min_accuracy = -1;
  bool measure = false, json = false;
};

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Takes the per-node profiles a card lacks for a device, in a child `tailor profile` (the ISA cap is per process, so
// the edge and the cloud may need different ones), adding them to the manifest.
void measure_missing(const std::string& manifest_path, const place::Device& device, bool quiet) {
  const Manifest m = Manifest::load(manifest_path);
  const auto dir = std::filesystem::path(manifest_path).parent_path();
  for (const auto& card : m.variants) {
    if (place::find_profile(card, device)) continue;
    const auto backend = make_backend(device.backend);
    TAILOR_CHECK(backend->available(), "device '", device.name, "': cannot measure variant '", card.name, "' on ",
                 device.backend, " here (", backend->unavailable_reason(), "); add its profile to the manifest from a "
                 "machine that has it");
    TAILOR_CHECK(!card.input_shapes.empty(), "variant '", card.name, "' has no input shape on its card");
    std::string cmd = fmt::format("{} profile {} --input {} --backends {} --threads {} --card {} --name {} --json",
                                  quoted(std::filesystem::read_symlink("/proc/self/exe").string()),
                                  quoted((dir / card.file).string()), shape_to_string(card.input_shapes[0]),
                                  device.backend, device.threads, quoted(manifest_path), quoted(card.name));
    if (!device.isa.empty()) cmd += " --isa " + device.isa;
    if (!quiet) std::cerr << "measuring " << card.name << " on " << device.str() << "\n";
    TAILOR_CHECK(std::system((cmd + " > /dev/null").c_str()) == 0, "measuring variant '", card.name, "' on ",
                 device.str(), " failed: ", cmd);
  }
}

std::string placement_line(const place::Placement& p) {
  const auto& b = p.predicted;
  std::string cut = p.site == place::Site::Split
                        ? fmt::format(" at {} tensor{} ({}B up)", p.up.size(), p.up.size() == 1 ? "" : "s",
                                      human_count(static_cast<double>(p.up_bytes)))
                        : "";
  const std::string parts = fmt::format("edge {} + up {} + rtt {} + cloud {} + down {}", short_number(b.edge_ms),
                                        short_number(b.up_ms), short_number(b.rtt_ms), short_number(b.cloud_ms),
                                        short_number(b.down_ms));
  if (b.exit_rate > 0)
    return fmt::format("{:<6} {:<10}{:<28} total {:>8} ms expected ({:.1f}% exit on the edge; the rest {} ms = {})",
                       to_string(p.site), p.method, cut, short_number(b.total_ms), 100 * b.exit_rate,
                       short_number(b.no_exit_ms), parts);
  return fmt::format("{:<6} {:<10}{:<28} total {:>8} ms = {}", to_string(p.site), p.method, cut,
                     short_number(b.total_ms), parts);
}

void print_plan(const place::Plan& plan) {
  std::cout << fmt::format("\n{}\n  edge  {}\n  cloud {}\n", plan.link.str(), plan.edge.str(), plan.cloud.str());
  const auto& v = plan.chosen;
  std::cout << fmt::format("  chosen: {}{}\n    {}\n", v.variant,
                           v.accuracy ? fmt::format(" (top-1 {:.2f}%)", 100 * *v.accuracy) : "",
                           placement_line(v.best));
  if (v.best.site == place::Site::Split) std::cout << "    cut: " << join(v.best.up) << "\n";
  if (v.best.predicted.edge_energy_j > 0)
    std::cout << fmt::format("    edge energy {:.3g} J per request\n", v.best.predicted.edge_energy_j);
  std::cout << "    other placements of this variant:\n";
  for (const auto& c : v.candidates)
    if (c.on_edge != v.best.on_edge) std::cout << "      " << placement_line(c) << "\n";
  for (const auto& r : plan.runners_up)
    std::cout << fmt::format("  runner-up {}{}: {}{}\n", r.variant,
                             r.accuracy ? fmt::format(" ({:.2f}%)", 100 * *r.accuracy) : "", placement_line(r.best),
                             r.meets ? "" : "  misses: " + join(r.misses, "; "));
  for (const auto& n : v.notes) std::cout << "  note: " << n << "\n";
}

int place_cmd(const PlaceArgs& args) {
  namespace fs = std::filesystem;
  TAILOR_CHECK(fs::exists(args.manifest), "no manifest at '", args.manifest, "'");
  const auto edge = place::Device::load(args.edge);
  const auto cloud = place::Device::load(args.cloud);
  std::vector<place::Link> links;
  for (const auto& l : args.links) links.push_back(place::Link::load(l));
  place::Objective objective = args.objective.empty() ? place::Objective{} : place::Objective::load(args.objective);
  if (!args.percentile.empty()) {
    TAILOR_CHECK(args.percentile == "p50" || args.percentile == "p90", "--percentile: p50 or p90, not '",
                 args.percentile, "'");
    objective.percentile = args.percentile;
  }
  if (args.latency_ms > 0) objective.latency_ms = args.latency_ms;
  if (args.throughput > 0) objective.throughput = args.throughput;
  if (args.min_accuracy >= 0) objective.min_accuracy = args.min_accuracy;
  if (!args.codec.empty()) objective.codec = place::codec_from_string(args.codec);
  if (args.measure)
    for (const auto* d : {&edge, &cloud}) measure_missing(args.manifest, *d, args.json);
  Manifest manifest = Manifest::load(args.manifest);
  if (!args.variants.empty()) {
    std::vector<VariantCard> kept;
    for (const auto& name : args.variants) {
      const VariantCard* c = manifest.find(name);
      TAILOR_CHECK(c, "--variant: no variant '", name, "' in ", args.manifest);
      kept.push_back(*c);
    }
    manifest.variants = kept;
  }
  const auto dir = fs::path(args.manifest).parent_path().string();
  // Every plan is made before any file is written.
  std::vector<place::Plan> plans;
  for (const auto& link : links) plans.push_back(place::plan(manifest, dir, edge, cloud, link, objective));
  // For comparisons (benchmarks/serving.sh runs every placement for real): export another candidate of the chosen
  // variant instead of the best.
  if (args.placement != "best") {
    TAILOR_CHECK(args.placement == "edge" || args.placement == "cloud" || args.placement == "split",
                 "--placement: best, edge, cloud or split, not '", args.placement, "'");
    for (auto& p : plans) {
      const place::Placement* forced = nullptr;
      for (const auto& c : p.chosen.candidates)
        if (!forced && place::to_string(c.site) == args.placement) forced = &c;
      TAILOR_CHECK(forced, "--placement ", args.placement, ": variant '", p.chosen.variant, "' on link '", p.link.name,
                   "' has no ", args.placement, " candidate (a split that beats neither side is not kept)");
      p.chosen.best = *forced;
      p.chosen.notes.push_back("placement forced to " + args.placement + " by --placement (not the planner's choice)");
    }
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : plans) {
    if (!args.json) print_plan(p);
    out.push_back(nlohmann::json::parse(p.to_json()));
  }
  if (!args.output.empty()) {
    for (const auto& p : plans) {
      const auto folder = plans.size() == 1 ? fs::path(args.output) : fs::path(args.output) / p.link.name;
      GraphModule module = load((fs::path(dir) / p.chosen.file).string());
      module->eval();
      place::export_plan(p, *module, folder.string());
      if (!args.json) std::cout << "wrote " << folder.string() << "/plan.json\n";
    }
  }
  if (args.json) std::cout << (plans.size() == 1 ? out[0] : out).dump(2) << "\n";
  return 0;
}

}  // namespace

void add_place_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto args = std::make_shared<PlaceArgs>();
  auto* sub = app.add_subcommand("place", "plan where each variant runs (edge, cloud, or split at a cut) for a link, "
                                 "and write the edge and cloud parts");
  sub->add_option("manifest", args->manifest, "manifest.json of variants with per-node profiles")->required();
  sub->add_option("--edge", args->edge, "edge device: YAML file or inline, e.g. backend=onednn-cpu,threads=1,isa=avx2")
      ->required();
  sub->add_option("--cloud", args->cloud, "cloud device: YAML file or inline, e.g. backend=onednn-cpu,threads=2")
      ->required();
  sub->add_option("--link", args->links, "link: YAML file or inline uplink_mbps=5.85,rtt_ms=50 (repeat for a plan per "
                  "link)")->required();
  sub->add_option("--objective", args->objective, "objective: YAML file or inline percentile=p90,latency_ms=40");
  sub->add_option("--percentile", args->percentile, "p50 or p90 (overrides the objective's)");
  sub->add_option("--latency-ms", args->latency_ms, "end-to-end latency the plan must meet");
  sub->add_option("--throughput", args->throughput, "requests per second the plan must sustain");
  sub->add_option("--min-accuracy", args->min_accuracy, "accuracy floor in [0, 1]");
  sub->add_option("--codec", args->codec, "encoding of tensors sent over the link: none, fp16, int8");
  sub->add_option("--variant", args->variants, "plan only these variants (repeat)");
  sub->add_option("--placement", args->placement, "export this placement of the chosen variant instead of the best: "
                  "edge, cloud or split (for comparisons)");
  sub->add_flag("--measure", args->measure, "profile the variants on a device this machine can run where the manifest "
                "lacks its profile (added to the manifest)");
  sub->add_option("-o,--output", args->output, "write edge.pt, cloud.pt and plan.json here (a folder per link when "
                  "there are several)");
  sub->add_flag("--json", args->json, "print the plans as JSON");
  actions.push_back([sub, args]() -> int { return sub->parsed() ? place_cmd(*args) : -1; });
}

}  // namespace tailor::cli
