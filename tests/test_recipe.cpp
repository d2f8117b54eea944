// Recipes: the Pareto front and goals on hand-made cards, the sweep expansion and parse errors with positions.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "tailor/core/error.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/recipe/recipe.hpp"

using namespace tailor;
namespace rc = tailor::recipe;

namespace {

VariantCard card(const std::string& name, double accuracy, double onednn_ms) {
  VariantCard c;
  c.name = name;
  c.accuracy = accuracy;
  LatencyProfile p;
  p.latency.p50_ms = onednn_ms;
  c.profiles["onednn-cpu"] = p;
  return c;
}

std::string write_recipe(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::path(TAILOR_TEST_TMP) / "recipes";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("Pareto front: known answer", "[recipe]") {
  Manifest m;
  m.variants = {card("baseline", 0.90, 1.0), card("a", 0.89, 0.5), card("b", 0.85, 0.6),  // b: a is faster and better
                card("c", 0.80, 0.2), card("d", 0.91, 2.0), card("e", 0.89, 0.5)};      // e ties a: both stay
  CHECK(rc::pareto_front(m, "onednn-cpu") == std::vector<std::string>{"c", "a", "e", "baseline", "d"});
  CHECK(rc::pareto_front(m, "libtorch-cpu").empty());
  const std::string html = rc::render_report(rc::Recipe{}, m, {"a"});
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
}

TEST_CASE("recipe parsing: sweeps expand in order, errors carry positions", "[recipe]") {
  const auto ok = write_recipe("ok.yaml", R"(model: {zoo: fashion-cnn}
sweep:
  channels: {dense: [], c50: [{prune-channels: {ratio: 0.5}}]}
  precision: {fp32: [], int8: [quantize-static], w4: [{quantize-weights: {bits: 4, skip: [fc1, fc2]}}]}
variants: [{name: folded, pipeline: [fold-batch-norm]}]
goals: {max_accuracy_drop: 1, latency_ms: {onednn-cpu: 2}}
)");
  const rc::Recipe r = rc::parse_recipe(ok);
  std::vector<std::string> names;
  for (const auto& v : r.variants) names.push_back(v.name);
  CHECK(names == std::vector<std::string>{"dense-int8", "dense-w4", "c50-fp32", "c50-int8", "c50-w4", "folded"});
  CHECK(r.variants[4].pipeline.size() == 2);
  CHECK(r.variants[4].pipeline[1].str() == "quantize-weights{bits=4,skip=[fc1,fc2]}");
  CHECK(r.input_shape == std::vector<int64_t>{1, 1, 28, 28});
  CHECK(*r.max_accuracy_drop == 1.0);

  const auto dup = write_recipe("dup.yaml", "model: {zoo: fashion-cnn}\nvariants:\n  - {name: a, pipeline: [dce]}\n  - {name: a, pipeline: [dce]}\n");
  CHECK_THROWS_WITH(rc::parse_recipe(dup), Catch::Contains("dup.yaml:4:5: two variants are named 'a'"));
  const auto goal = write_recipe("goal.yaml", "model: {zoo: fashion-cnn}\nvariants: [{name: a, pipeline: [dce]}]\nprofile: {backends: [onednn-cpu]}\ngoals: {latency_ms: {libtorch-cpu: 1}}\n");
  CHECK_THROWS_WITH(rc::parse_recipe(goal), Catch::Contains("goal.yaml:4:22: latency goal for 'libtorch-cpu'"));
  const auto backend = write_recipe("backend.yaml", "model: {zoo: fashion-cnn}\nvariants: [{name: a, pipeline: [dce]}]\nprofile: {backends: [tpu]}\n");
  CHECK_THROWS_WITH(rc::parse_recipe(backend), Catch::Contains("backend.yaml:3:22: unknown backend 'tpu'; valid backends: onednn-cpu"));
  const auto nodata = write_recipe("nodata.yaml", "model: {zoo: fashion-cnn}\ndata: none\nvariants: [{name: a, pipeline: [{distill: {teacher: t.pt}}]}]\n");
  CHECK_THROWS_WITH(rc::parse_recipe(nodata), Catch::Contains("pass 'distill' needs data"));
  CHECK_THROWS_WITH(rc::parse_recipe("/no/such/recipe.yaml"), Catch::Contains("'/no/such/recipe.yaml' does not exist"));
  const auto rounds = write_recipe("rounds.yaml", "model: {zoo: fashion-cnn}\nvariants: [{name: a, pipeline: [dce]}]\nprofile: {rounds: 0}\n");
  CHECK_THROWS_WITH(rc::parse_recipe(rounds), Catch::Contains("rounds.yaml:3:19: profile.rounds must be at least 1"));
}

TEST_CASE("a variant that fails at run time gets a card saying why, and the others still run", "[recipe]") {
  // quantize-static on an already-quantized model fails only when it runs (the recipe itself is valid).
  const auto path = write_recipe("fails.yaml", R"(model: {zoo: fashion-cnn}
data: {name: none, calibration_batches: 1}
variants:
  - {name: int8, pipeline: [{quantize-static: {observer: minmax}}]}
  - {name: twice, pipeline: [{quantize-static: {observer: minmax}}, {quantize-static: {observer: minmax}}]}
  - {name: c50, pipeline: [{prune-channels: {ratio: 0.5}}]}
profile: {max_seconds: 0.1, threads: 1, backends: [onednn-cpu]}
)");
  const rc::Recipe r = rc::parse_recipe(path);
  const auto out = std::filesystem::path(TAILOR_TEST_TMP) / "recipes" / "fails-out";
  std::filesystem::remove_all(out);
  rc::RunOptions o;
  o.output = out.string();
  o.quiet = true;
  const rc::RunResult first = rc::run_recipe(r, o);
  REQUIRE(first.failed.size() == 1);
  CHECK(first.failed[0].first == "twice");
  CHECK_THAT(first.failed[0].second, Catch::Contains("already quantized"));
  const VariantCard* twice = first.manifest.find("twice");
  REQUIRE(twice);
  CHECK(twice->file.empty());
  CHECK(twice->profiles.empty());
  REQUIRE(twice->flags.size() == 1);
  CHECK_THAT(twice->flags[0], Catch::StartsWith("failed: ") && Catch::Contains("already quantized"));
  CHECK_FALSE(std::filesystem::exists(out / "variants" / "twice.pt"));
  for (const char* ok : {"baseline", "int8", "c50"}) {
    const VariantCard* c = first.manifest.find(ok);
    REQUIRE(c);
    CHECK(c->profiles.count("onednn-cpu") == 1);
    CHECK(std::filesystem::exists(out / c->file));
  }
  CHECK(std::find(first.kept.begin(), first.kept.end(), "twice") == first.kept.end());
  std::ifstream in(out / "report.html");
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(html.find("failed: ") != std::string::npos);
  CHECK(html.find("the median of 3 rounds") != std::string::npos);  // all variants timed again, interleaved

  // The next run reuses what finished and tries the failed variant again.
  const rc::RunResult second = rc::run_recipe(r, o);
  CHECK(second.reused == 3);
  CHECK(second.failed.size() == 1);
}

TEST_CASE("a recipe with output.formats writes each variant as TorchScript and ONNX", "[recipe][onnx]") {
  const auto bad = write_recipe("bad_format.yaml", "model: {zoo: fashion-cnn}\nvariants: [{name: a, pipeline: [dce]}]\n"
                                                   "output: {folder: x, formats: [torchscript, tflite]}\n");
  CHECK_THROWS_WITH(rc::parse_recipe(bad), Catch::Contains("bad_format.yaml:3:44: unknown format 'tflite'"));
  const auto path = write_recipe("formats.yaml", R"(model: {zoo: fashion-cnn}
data: {name: none, calibration_batches: 1}
variants:
  - {name: int8, pipeline: [{quantize-static: {observer: minmax}}]}
profile: {max_seconds: 0.05, threads: 1, rounds: 1, backends: [onednn-cpu]}
output: {formats: [onnx]}
)");
  const rc::Recipe r = rc::parse_recipe(path);
  CHECK(r.formats == std::vector<std::string>{"torchscript", "onnx"});  // TorchScript is always written
  const auto out = std::filesystem::path(TAILOR_TEST_TMP) / "recipes" / "formats-out";
  std::filesystem::remove_all(out);
  rc::RunOptions o;
  o.output = out.string();
  o.quiet = true;
  const rc::RunResult result = rc::run_recipe(r, o);
  for (const char* name : {"baseline", "int8"}) {
    const VariantCard* c = result.manifest.find(name);
    REQUIRE(c);
    CHECK(std::filesystem::exists(out / c->file));
    REQUIRE_FALSE(c->onnx_file.empty());
    CHECK(std::filesystem::path(c->onnx_file).extension() == ".onnx");
    CHECK(std::filesystem::file_size(out / c->onnx_file) > 1000);
  }
  // The card's ONNX file survives the manifest's round trip.
  const Manifest back = Manifest::load((out / "manifest.json").string());
  CHECK(back.find("int8")->onnx_file == result.manifest.find("int8")->onnx_file);
}

TEST_CASE("a corrupt resume state is reported, moved aside and rebuilt", "[recipe]") {
  const auto path = write_recipe("resume.yaml", R"(model: {zoo: fashion-cnn}
data: none
variants:
  - {name: a, pipeline: [dce]}
profile: {max_seconds: 0.05, threads: 1, rounds: 1, backends: [libtorch-cpu]}
)");
  const rc::Recipe r = rc::parse_recipe(path);
  const auto out = std::filesystem::path(TAILOR_TEST_TMP) / "recipes" / "resume-out";
  std::filesystem::remove_all(out);
  rc::RunOptions o;
  o.output = out.string();
  o.quiet = true;
  const rc::RunResult first = rc::run_recipe(r, o);
  CHECK(first.warnings.empty());
  CHECK(rc::run_recipe(r, o).reused == 2);
  std::ofstream(out / ".tailor-steps.json") << "{\"baseline\": ";  // cut short, as by a crash mid-write elsewhere
  const rc::RunResult again = rc::run_recipe(r, o);
  REQUIRE(again.warnings.size() == 1);
  CHECK_THAT(again.warnings[0], Catch::Contains("unreadable") && Catch::Contains("moved it aside"));
  CHECK(again.reused == 0);
  CHECK(again.failed.empty());
  bool kept_aside = false;
  for (const auto& e : std::filesystem::directory_iterator(out))
    kept_aside = kept_aside || e.path().filename().string().rfind(".tailor-steps.json.corrupt-", 0) == 0;
  CHECK(kept_aside);
  CHECK(rc::run_recipe(r, o).reused == 2);  // the rebuilt state is good again
}

TEST_CASE("a recipe with latency tables predicts every variant's p50 beside the measurement and checks its goal",
          "[recipe]") {
  // Small float32 and int8 tables of fashion-cnn variants on onednn-cpu, 1 thread.
  const auto dir = std::filesystem::path(TAILOR_TEST_TMP) / "recipes";
  std::filesystem::create_directories(dir);
  for (const std::string dtype : {"float32", "int8"}) {
    latency::BuildOptions o;
    o.target = latency::Target::here("onednn-cpu", 1, dtype);
    o.workload.models = {"fashion-cnn"};
    o.workload.model_input = {1, 1, 28, 28};
    o.models = 4;
    o.round_size = 4;
    o.measure.rounds = 1;
    latency::Model m(o.target);
    latency::build(m, o);
    m.save((dir / ("fashion-" + dtype + ".json")).string());
  }
  const auto path = write_recipe("predicted.yaml", R"(model: {zoo: fashion-cnn}
data: {name: none, calibration_batches: 1}
variants:
  - {name: int8, pipeline: [{quantize-static: {observer: minmax}}]}
  - {name: c50, pipeline: [{prune-channels: {ratio: 0.5}}]}
profile:
  max_seconds: 0.1
  threads: 1
  rounds: 1
  backends: [onednn-cpu]
  latency_tables: {onednn-cpu: [fashion-float32.json, fashion-int8.json]}
goals: {predicted_latency_ms: {onednn-cpu: 0.000001}}
)");
  const rc::Recipe r = rc::parse_recipe(path);
  REQUIRE(r.latency_tables.at("onednn-cpu").size() == 2);
  const auto out = dir / "predicted-out";
  std::filesystem::remove_all(out);
  rc::RunOptions o;
  o.output = out.string();
  o.quiet = true;
  const rc::RunResult result = rc::run_recipe(r, o);
  for (const char* name : {"baseline", "int8", "c50"}) {
    const VariantCard* c = result.manifest.find(name);
    REQUIRE(c);
    REQUIRE(c->predicted_ms.count("onednn-cpu") == 1);
    CHECK(c->predicted_ms.at("onednn-cpu") > 0);
    CHECK(std::find_if(c->flags.begin(), c->flags.end(), [](const std::string& f) {
            return f.find("predicted over the") != std::string::npos;
          }) != c->flags.end());
  }
  CHECK(result.kept.empty());
  CHECK_THAT(result.summary, Catch::Contains("predicted onednn-cpu"));
  const Manifest reread = Manifest::load((out / "manifest.json").string());
  CHECK(reread.find("c50")->predicted_ms.at("onednn-cpu") == Approx(result.manifest.find("c50")->predicted_ms.at("onednn-cpu")));

  // A table of another backend, and a predicted goal without a table, fail at parse time with the position.
  const auto wrong = write_recipe("wrong-table.yaml", R"(model: {zoo: fashion-cnn}
variants: [{name: a, pipeline: [dce]}]
profile: {backends: [libtorch-cpu], latency_tables: {libtorch-cpu: fashion-float32.json}}
)");
  CHECK_THROWS_WITH(rc::parse_recipe(wrong), Catch::Contains("wrong-table.yaml:3:") && Catch::Contains("was built for onednn-cpu"));
  const auto missing = write_recipe("no-table.yaml", R"(model: {zoo: fashion-cnn}
variants: [{name: a, pipeline: [dce]}]
profile: {backends: [onednn-cpu]}
goals: {predicted_latency_ms: {onednn-cpu: 1}}
)");
  CHECK_THROWS_WITH(rc::parse_recipe(missing), Catch::Contains("needs profile.latency_tables.onednn-cpu"));
}
