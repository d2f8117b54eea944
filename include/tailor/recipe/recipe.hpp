// tailor/recipe/recipe.hpp: compression recipes. A YAML file names a model (a file, or a zoo architecture and
// how to train it), the data, a sweep of pass pipelines, the backends to profile on and the goals; running it
// writes every variant, their cards (manifest.json) and a self-contained report.html, resumably.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tailor/pass/pass.hpp"
#include "tailor/place/place.hpp"
#include "tailor/variant/card.hpp"

namespace tailor::recipe {

/// One pass of a variant's pipeline, with where the recipe wrote it (for errors).
struct PassSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> options;
  std::string where;  ///< "file:line:column"
  PassNeeds needs;    ///< what the pass, with these options, needs from the runner
  std::string str() const;  ///< pipeline text: name{k=v,...}
};

struct VariantSpec {
  std::string name;
  std::vector<PassSpec> pipeline;
};

/// `placement:` in a recipe: after profiling, every variant is planned on each link and the chosen plan's parts
/// are written to OUT/placement/<link>/.
struct PlacementSpec {
  place::Device edge, cloud;
  std::vector<place::Link> links;
  place::Objective objective;
  /// `fleet:` — the report simulates each link's plan with this many edge devices against one server.
  struct Fleet {
    std::vector<int> devices = {1, 2, 4, 8, 16, 32};
    int executors = 1;
    std::string arrivals = "closed";  ///< as `tailor simulate --arrivals`
  };
  std::optional<Fleet> fleet;
};

struct Recipe {
  std::string file;
  std::string name;
  // model: a TorchScript file, or a zoo architecture trained from scratch as the baseline
  std::string model_file;
  std::string zoo;
  double width = 1.0;
  int train_epochs = 0;
  double train_lr = 0.1;
  int64_t train_limit = -1;
  uint64_t seed = 0;
  std::vector<int64_t> input_shape;
  // data (Fashion-MNIST: training split for training/calibration, test split for accuracy)
  std::string data = "fashion-mnist";
  int64_t eval_limit = -1;
  int64_t calibration_batches = 8;
  int64_t calibration_batch_size = 64;
  std::vector<VariantSpec> variants;  ///< the sweep's product plus explicit variants; the baseline is implicit
  // profiling
  std::vector<std::string> backends = {"onednn-cpu", "libtorch-cpu"};
  int threads = 0;  ///< 0: all cores
  int64_t batch = 1;
  double max_seconds = 2.0;
  /// After every variant is built, all are timed again in this many interleaved rounds per backend and the
  /// cards keep each one's median round (1: keep the profile taken when the variant was built).
  int rounds = 3;
  /// Caps the x86 ISA of every profile (profiling for a smaller x86 device); empty: this CPU's best.
  std::string isa;
  /// Latency tables (tailor latency build) per backend: every variant's p50 is also predicted from the table
  /// matching its dtype (int8 tables for quantized variants, float32 for the others), next to the measurement.
  std::map<std::string, std::vector<std::string>> latency_tables;
  // goals
  std::optional<double> max_accuracy_drop;     ///< points below the baseline
  std::map<std::string, double> latency_ms;    ///< p50 budget per backend
  std::map<std::string, double> predicted_latency_ms;  ///< budget per backend on the predicted p50 (needs a table)
  std::string output;                          ///< default output folder
  /// Files written per variant: torchscript (always first) and optionally onnx (`output: {folder, formats}`).
  std::vector<std::string> formats = {"torchscript"};
  std::optional<PlacementSpec> placement;
};

/// Parses and validates a recipe (passes exist, options have the declared types, files exist). Errors read
/// "FILE:LINE:COLUMN: message" and list the valid choices; nothing is written.
Recipe parse_recipe(const std::string& path);

struct RunOptions {
  std::string output;    ///< overrides the recipe's
  bool quiet = false;
  bool resume = true;    ///< reuse finished steps found in the output folder
};

struct RunResult {
  Manifest manifest;
  std::vector<std::string> kept;  ///< variants meeting the goals on the Pareto front, fastest first
  std::string report;             ///< path of report.html
  std::string summary;            ///< the terminal table
  int reused = 0;                 ///< steps taken from an earlier, interrupted run
  /// Variants whose pipeline failed at run time, with the reason. Each keeps a card flagged "failed: ..." (no
  /// file, no profiles); the other variants still run, and the next run retries the failed ones.
  std::vector<std::pair<std::string, std::string>> failed;
  /// One plan per placement link (the recipe's `placement:`), and why a link has none (nothing met the objective).
  std::vector<place::Plan> plans;
  std::vector<std::string> placement_failures;
  /// Things the run recovered from (an unreadable resume state moved aside), also printed on stderr.
  std::vector<std::string> warnings;
};

/// Runs a recipe: baseline, then each variant (pipeline, evaluation, export, profiles), writing
/// OUT/variants/*.pt, OUT/manifest.json and OUT/report.html, each atomically.
RunResult run_recipe(const Recipe& recipe, const RunOptions& options = {});

/// The report as one HTML page with inline SVG (no scripts, no network).
std::string render_report(const Recipe& recipe, const Manifest& manifest, const std::vector<std::string>& kept,
                          const std::vector<place::Plan>& plans = {},
                          const std::vector<std::string>& placement_failures = {});

/// Names of the variants on the accuracy/latency Pareto front of `backend` (higher accuracy, lower p50).
std::vector<std::string> pareto_front(const Manifest& manifest, const std::string& backend);

}  // namespace tailor::recipe
