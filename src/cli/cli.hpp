// Shared pieces of the `tailor` command-line tool (private to src/cli): the verbs' entry points and the
// pipeline driver that every transforming verb goes through.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tailor/tailor.hpp"

namespace tailor::cli {

/// Pipeline text built from a verb's flags: only the flags the user gave become options, so every default is
/// the pass's own.
class PipelineText {
 public:
  explicit PipelineText(std::string pass) : pass_(std::move(pass)) {}
  PipelineText& set(const std::string& key, const std::string& text) {
    options_.emplace_back(key, text);
    return *this;
  }
  /// Sets `key` from `value` when `flag` was given on the command line.
  template <class T>
  PipelineText& from(const CLI::App* verb, const char* flag, const std::string& key, const T& value);
  std::string str() const;

 private:
  std::string pass_;
  std::vector<std::pair<std::string, std::string>> options_;
};

std::string option_text(double v);
std::string option_text(int64_t v);
std::string option_text(int v);
std::string option_text(bool v);
std::string option_text(const std::string& v);
std::string option_text(const std::vector<std::string>& v);

template <class T>
PipelineText& PipelineText::from(const CLI::App* verb, const char* flag, const std::string& key, const T& value) {
  if (verb->count(flag) > 0) set(key, option_text(value));
  return *this;
}

/// The help of a pass option with its default, for the flag that sets it.
std::string pass_help(const std::string& pass, const std::string& key);

/// Everything a transforming verb hands to the driver.
struct TransformRun {
  std::string model;           ///< file or zoo name
  models::ZooOptions zoo;      ///< for zoo names (train and distill build them fresh at --width)
  std::string input;           ///< shape text; zoo models have a default
  std::string output;
  std::string pipeline;
  std::string data;            ///< calibration source: fashion-mnist, random or empty
  int64_t calib_batches = 8;
  int64_t batch_size = 64;
  std::string teacher;         ///< for passes that need one
  /// torchscript, onnx, or both comma-separated: the first goes to `output`, the second to the same name with
  /// the other extension (.pt / .onnx).
  std::string format = "torchscript";
  bool dynamic_batch = false;  ///< ONNX: a symbolic batch dimension
  bool distributed = false;    ///< join `tailor launch` ranks from the environment
  bool print_pipeline = false;
  bool json = false;
  bool quiet = false;
  int64_t eval_limit = 0;      ///< > 0 or -1: top-1 before and after on the Fashion-MNIST test split
  nlohmann::json extra = nlohmann::json::object();  ///< verb-specific report fields
};

/// Parses the pipeline, supplies what its passes need, runs it on the model, checks that the result runs,
/// writes it atomically and prints the report (text or JSON). Returns the exit status.
int run_transform(TransformRun run);

std::vector<int64_t> default_shape(const std::string& model);
double fashion_top1(GraphModuleImpl& module, int64_t limit);

void add_transform_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);
void add_measure_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);
void add_latency_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);
void add_nas_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);
void add_place_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);
void add_serve_verbs(CLI::App& app, std::vector<std::function<int()>>& actions);

}  // namespace tailor::cli
