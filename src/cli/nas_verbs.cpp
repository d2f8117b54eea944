// `tailor search`: hardware-aware architecture search from the command line. It trains the space's supernet when
// its file is missing (nas-train) and searches it (nas-search), both resumable, through the registered passes.
#include <filesystem>

#include "cli.hpp"
#include "tailor/nas/nas.hpp"

namespace tailor::cli {
namespace fs = std::filesystem;

namespace {

struct SearchArgs {
  std::string space = "fashion-resnet", supernet, output, state, algorithm;
  std::vector<double> latency_ms;
  std::vector<std::string> targets, tables;
  double table_minutes = 0, macs = 0, params = 0, lr = 0;
  int64_t epochs = 0, limit = 0, validation = 0, evaluations = 0, population = 0, screen = 0, seed = 0, batch_size = 0;
  bool json = false, quiet = false, print_pipeline = false;
};

}  // namespace

void add_nas_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  auto a = std::make_shared<SearchArgs>();
  auto* verb = app.add_subcommand("search", "hardware-aware architecture search: train a supernet (when its file is "
                                            "missing), search it under latency budgets, write the best subnet");
  verb->add_option("--space", a->space, pass_help("nas-train", "space"))->capture_default_str();
  verb->add_option("--supernet", a->supernet, "supernet file: searched when it exists, trained first otherwise "
                                              "(default supernet-<space>.pt)");
  verb->add_option("--epochs", a->epochs, pass_help("nas-train", "epochs"));
  verb->add_option("--lr", a->lr, pass_help("nas-train", "lr"));
  verb->add_option("--batch-size", a->batch_size, pass_help("nas-train", "batch_size"));
  verb->add_option("--limit", a->limit, pass_help("nas-train", "limit"));
  verb->add_option("--validation", a->validation, pass_help("nas-train", "validation"));
  verb->add_option("--latency-ms", a->latency_ms, pass_help("nas-search", "latency_ms"))->delimiter(',');
  verb->add_option("--target", a->targets, pass_help("nas-search", "target"))->delimiter(',');
  verb->add_option("--table", a->tables, pass_help("nas-search", "table"))->delimiter(',');
  verb->add_option("--table-minutes", a->table_minutes, pass_help("nas-search", "table_minutes"));
  verb->add_option("--macs", a->macs, pass_help("nas-search", "macs"));
  verb->add_option("--params", a->params, pass_help("nas-search", "params"));
  verb->add_option("--algorithm", a->algorithm, pass_help("nas-search", "algorithm"));
  verb->add_option("--evaluations", a->evaluations, pass_help("nas-search", "evaluations"));
  verb->add_option("--population", a->population, pass_help("nas-search", "population"));
  verb->add_option("--screen", a->screen, pass_help("nas-search", "screen"));
  verb->add_option("--seed", a->seed, "seed of the supernet's training and of the search");
  verb->add_option("--state", a->state, "search state file, resumed when present (default <output>.search.json)");
  verb->add_option("-o,--output", a->output, "the best subnet's .pt file (written when complete)")->required();
  verb->add_flag("--json", a->json, "print a JSON report (the search front included)");
  verb->add_flag("-q,--quiet", a->quiet, "print nothing but errors");
  verb->add_flag("--print-pipeline", a->print_pipeline, "print the pipeline text this command runs, and stop");
  actions.push_back([=] {
    if (!verb->parsed()) return -1;
    const models::SearchSpace space = nas::load_space(a->space);
    const std::string supernet = a->supernet.empty() ? "supernet-" + space.name + ".pt" : a->supernet;
    std::string text;
    if (!fs::exists(supernet))
      text = PipelineText("nas-train")
                 .set("space", option_text(a->space))
                 .set("out", option_text(supernet))
                 .set("checkpoint", option_text(supernet + ".ckpt"))
                 .from(verb, "--epochs", "epochs", a->epochs)
                 .from(verb, "--lr", "lr", a->lr)
                 .from(verb, "--batch-size", "batch_size", a->batch_size)
                 .from(verb, "--limit", "limit", a->limit)
                 .from(verb, "--validation", "validation", a->validation)
                 .from(verb, "--seed", "seed", a->seed)
                 .str() +
             ",";
    std::vector<std::string> budgets;
    for (double ms : a->latency_ms) budgets.push_back(option_text(ms));
    PipelineText search("nas-search");
    search.set("supernet", option_text(supernet))
        .set("state", option_text(a->state.empty() ? a->output + ".search.json" : a->state))
        .from(verb, "--target", "target", a->targets)
        .from(verb, "--table", "table", a->tables)
        .from(verb, "--table-minutes", "table_minutes", a->table_minutes)
        .from(verb, "--macs", "macs", a->macs)
        .from(verb, "--params", "params", a->params)
        .from(verb, "--algorithm", "algorithm", a->algorithm)
        .from(verb, "--evaluations", "evaluations", a->evaluations)
        .from(verb, "--population", "population", a->population)
        .from(verb, "--screen", "screen", a->screen)
        .from(verb, "--limit", "limit", a->limit)
        .from(verb, "--validation", "validation", a->validation)
        .from(verb, "--seed", "seed", a->seed);
    if (!budgets.empty()) search.set("latency_ms", option_text(budgets));
    text += search.str();

    TransformRun r;
    r.model = space.largest().str();  // replaced by the passes; it fixes the input shape
    r.zoo = space.zoo_options();
    r.input = std::to_string(1) + "x" + std::to_string(space.in_channels) + "x" +
              std::to_string(space.resolutions.front()) + "x" + std::to_string(space.resolutions.front());
    r.output = a->output;
    r.pipeline = text;
    r.json = a->json;
    r.quiet = a->quiet;
    r.print_pipeline = a->print_pipeline;
    r.extra = {{"space", space.name}, {"supernet", supernet}};
    return run_transform(r);
  });
}

}  // namespace tailor::cli
