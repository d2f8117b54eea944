// ONNX export checked by the runtime users deploy with: every torchvision fixture and zoo model, pruned and
// quantized variants, a dynamic batch, and bad input. ONNX Runtime comes from npm (scripts/ort.sh); where it
// could not be installed the round trips say so and are skipped, while the export itself (ONNX's checker and
// strict shape inference run inside export_onnx) is still tested.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::test;
namespace fs = std::filesystem;

namespace {

std::string tmp_dir(const std::string& name) {
  const std::string dir = std::string(TAILOR_TEST_TMP) + "/onnx/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ort_node_path() {
  if (const char* p = std::getenv("TAILOR_ORT_NODE_PATH")) return p;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache = xdg ? xdg : std::string(home ? home : "/root") + "/.cache";
  return cache + "/tailor/ort/node_modules";
}

bool ort_available() {
  static const bool ok = [] {
    const bool found = fs::exists(ort_node_path() + "/onnxruntime-node/package.json") &&
                       std::system("node --version > /dev/null 2>&1") == 0;
    if (!found)
      WARN("ONNX Runtime round trips SKIPPED: onnxruntime-node not found under " << ort_node_path()
           << " (bash scripts/ort.sh installs it from the npm registry)");
    return found;
  }();
  return ok;
}

struct OrtJob {
  std::string model;
  std::vector<torch::Tensor> inputs;
  int threads = 1;
};

void write_raw(const std::string& path, const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * 4));
}

// Runs every job in one Node process; returns each job's outputs in order.
std::vector<std::vector<torch::Tensor>> run_ort(const std::vector<OrtJob>& jobs, const std::string& dir) {
  nlohmann::json spec = nlohmann::json::array();
  for (size_t j = 0; j < jobs.size(); ++j) {
    nlohmann::json inputs = nlohmann::json::array();
    for (size_t k = 0; k < jobs[j].inputs.size(); ++k) {
      const std::string file = dir + "/job" + std::to_string(j) + "_in" + std::to_string(k) + ".bin";
      write_raw(file, jobs[j].inputs[k]);
      inputs.push_back({{"file", file}, {"shape", jobs[j].inputs[k].sizes().vec()}});
    }
    spec.push_back({{"model", jobs[j].model}, {"inputs", inputs}, {"out", dir + "/job" + std::to_string(j) + "_out"},
                    {"threads", jobs[j].threads}});
  }
  const std::string spec_file = dir + "/jobs.json";
  std::ofstream(spec_file) << spec.dump();
  const std::string cmd = "NODE_PATH='" + ort_node_path() + "' node '" + std::string(TAILOR_SOURCE_DIR) +
                          "/tests/onnx/ort_run.js' '" + spec_file + "' 2> '" + dir + "/ort.err'";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream err(dir + "/ort.err");
    const std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
    FAIL("ONNX Runtime failed: " << text);
  }
  std::vector<std::vector<torch::Tensor>> results;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const std::string prefix = dir + "/job" + std::to_string(j) + "_out";
    std::ifstream meta(prefix + ".json");
    const auto m = nlohmann::json::parse(meta);
    std::vector<torch::Tensor> outs;
    for (size_t k = 0; k < m.at("outputs").size(); ++k) {
      const auto shape = m["outputs"][k].at("shape").get<std::vector<int64_t>>();
      std::ifstream in(prefix + "_" + std::to_string(k) + ".bin", std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      torch::Tensor t = torch::empty(shape, torch::kFloat);
      REQUIRE(bytes.size() == static_cast<size_t>(t.numel()) * 4);
      std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
      outs.push_back(t);
    }
    results.push_back(outs);
  }
  return results;
}

// torchvision initializes ViT's classifier to zeros: every output would be 0 and any export would "match".
void give_zero_heads_weights(GraphModuleImpl& m) {
  torch::NoGradGuard g;
  for (const auto& [name, t] : m.tensors())
    if (t.is_floating_point() && t.numel() > 1 && t.abs().max().item<double>() == 0) m.set_tensor(name, torch::randn_like(t) * 0.05);
}

torch::Tensor run_tailor(GraphModuleImpl& m, const torch::Tensor& x) {
  torch::NoGradGuard g;
  m.eval();
  return first_tensor(m.run({x}));
}

GraphModule make_graph(const std::function<std::vector<int>(Graph&, int)>& body) {
  Graph g;
  const int x = g.add_input("x");
  g.set_outputs(body(g, x));
  return GraphModule(g, std::map<std::string, torch::Tensor>{});
}

int add(Graph& g, const std::string& kind, const std::string& name, std::vector<int> inputs,
        std::map<std::string, AttrValue> attrs = {}, ValueType out = ValueType::Tensor) {
  Node n;
  n.kind = kind;
  n.name = name;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  return g.node(g.add_node(n, {out})).outputs[0];
}

}  // namespace

TEST_CASE("every torchvision fixture exports to ONNX and ONNX Runtime reproduces tailor's outputs", "[onnx]") {
  const auto manifest = fixture_manifest();
  const std::string dir = tmp_dir("torchvision"), fixtures = TAILOR_FIXTURES_DIR;
  std::vector<OrtJob> jobs;
  std::vector<std::string> names;
  std::vector<torch::Tensor> expected;
  for (const auto& [name, entry] : manifest.at("models").items()) {
    torch::jit::Module ref = torch::jit::load(fixtures + "/" + name + "_ref.pt");
    const torch::Tensor x = ref.attr("input").toTensor();
    const auto shape = entry.at("input_shape").get<std::vector<int64_t>>();
    for (const auto& [mode, file] : entry.at("files").items()) {
      if (name == "vit" && mode == "scripted") continue;  // capture refuses it (test_torchvision.cpp)
      INFO(name << " " << mode);
      GraphModule gm = load(fixtures + "/" + file.get<std::string>());
      give_zero_heads_weights(*gm);
      const std::string out = dir + "/" + name + "_" + mode + ".onnx";
      const OnnxExportReport r = export_onnx(*gm, out, OnnxExportOptions({shape}));
      CHECK(fs::exists(out));
      CHECK(r.outputs.size() == 1);  // scripted GoogLeNet's None auxiliary outputs are not outputs
      CHECK(r.quantize_nodes == 0);
      jobs.push_back({out, {x}});
      names.push_back(name + " " + mode);
      expected.push_back(run_tailor(*gm, x));
    }
  }
  CHECK(jobs.size() == 31);
  if (!ort_available()) return;
  const auto results = run_ort(jobs, dir);
  for (size_t j = 0; j < jobs.size(); ++j) {
    INFO(names[j]);
    REQUIRE(results[j].size() == 1);
    CHECK(results[j][0].sizes() == expected[j].sizes());
    CHECK(max_rel(results[j][0], expected[j]) < 1e-4);
    CHECK(expected[j].abs().max().item<double>() > 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("a dynamic batch runs at batch sizes other than the exported one", "[onnx]") {
  const std::string dir = tmp_dir("dynamic"), fixtures = TAILOR_FIXTURES_DIR;
  std::vector<OrtJob> jobs;
  std::vector<torch::Tensor> expected;
  for (const auto& [file, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"resnet18_traced.pt", {1, 3, 224, 224}}, {"vit_traced.pt", {1, 3, 32, 32}},
           {"shufflenet_v2_x0_5_scripted.pt", {1, 3, 224, 224}}}) {
    GraphModule gm = load(fixtures + "/" + file);
    give_zero_heads_weights(*gm);
    const std::string out = dir + "/" + file + ".onnx";
    export_onnx(*gm, out, OnnxExportOptions({shape}).dynamic_batch(true));
    for (int64_t batch : {1, 3}) {
      auto s = shape;
      s[0] = batch;
      const torch::Tensor x = torch::randn(s);
      jobs.push_back({out, {x}});
      expected.push_back(run_tailor(*gm, x));
    }
  }
  if (!ort_available()) return;
  const auto results = run_ort(jobs, dir);
  for (size_t j = 0; j < jobs.size(); ++j) {
    INFO(jobs[j].model << " batch " << jobs[j].inputs[0].size(0));
    CHECK(results[j][0].sizes() == expected[j].sizes());
    CHECK(max_rel(results[j][0], expected[j]) < 1e-4);
  }
}

TEST_CASE("channel-pruned models export as the smaller dense models they are", "[onnx]") {
  const std::string dir = tmp_dir("pruned");
  std::vector<OrtJob> jobs;
  std::vector<torch::Tensor> expected;
  for (const std::string name : {"resnet18", "mobilenet_v2", "fashion-resnet"}) {
    const auto shape = models::make_model(name).input_shape;
    GraphModule gm = models::capture_model(name);
    gm->eval();
    const std::string dense = dir + "/" + name + ".onnx", pruned = dir + "/" + name + "_pruned.onnx";
    export_onnx(*gm, dense, OnnxExportOptions({shape}));
    ChannelPruneOptions po;
    po.ratio = 0.5;
    prune_channels(*gm, {shape}, po);
    export_onnx(*gm, pruned, OnnxExportOptions({shape}));
    INFO(name);
    CHECK(fs::file_size(pruned) < 0.6 * fs::file_size(dense));
    const torch::Tensor x = torch::randn(shape);
    jobs.push_back({pruned, {x}});
    expected.push_back(run_tailor(*gm, x));
  }
  if (!ort_available()) return;
  const auto results = run_ort(jobs, dir);
  for (size_t j = 0; j < jobs.size(); ++j) {
    INFO(jobs[j].model);
    CHECK(max_rel(results[j][0], expected[j]) < 1e-4);
  }
}

TEST_CASE("int8 models export as QDQ graphs that ONNX Runtime runs like tailor", "[onnx]") {
  const std::string dir = tmp_dir("int8");
  const data::Dataset test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), 256);
  const auto calibration = data::calibration_batches("fashion-mnist", {1, 1, 28, 28}, 4, 32);
  std::vector<OrtJob> jobs;
  std::vector<torch::Tensor> expected;
  std::vector<std::string> names;
  for (const std::string name : {"fashion-cnn", "fashion-resnet"})
    for (bool seven_bit : {true, false}) {
      GraphModule gm = models::capture_model(name);
      gm->eval();
      quant::PtqOptions po;
      po.activations = quant::QScheme::activations_u8(seven_bit);
      quant::quantize_static(*gm, calibration, po);
      const std::string out = dir + "/" + name + (seven_bit ? "_u7" : "_u8") + ".onnx";
      const OnnxExportReport r = export_onnx(*gm, out, OnnxExportOptions({{1, 1, 28, 28}}).dynamic_batch(true));
      CHECK(r.quantize_nodes > 0);
      CHECK(r.dequantize_nodes > r.quantize_nodes);  // weights and int32 biases are dequantized too
      jobs.push_back({out, {test.images}});
      expected.push_back(run_tailor(*gm, test.images));
      names.push_back(out);
    }
  if (!ort_available()) return;
  const auto results = run_ort(jobs, dir);
  for (size_t j = 0; j < jobs.size(); ++j) {
    INFO(names[j]);
    const torch::Tensor agree = results[j][0].argmax(1).eq(expected[j].argmax(1)).to(torch::kFloat).mean();
    const double diff = max_rel(results[j][0], expected[j]);
    INFO("agreement " << agree.item<double>() << ", largest difference " << diff);
    // ONNX Runtime's u8 x s8 kernels on x86 CPUs without VNNI may saturate 16-bit sums of full-range (8-bit)
    // activations, as oneDNN's do (docs/quantization.md); 7-bit activations are exact everywhere.
    const bool may_saturate = names[j].find("_u8") != std::string::npos && !quant::cpu_has_vnni();
    CHECK(agree.item<double>() >= (may_saturate ? 0.9 : 0.97));
    // Same grid, same clamps: outputs differ by rounding ties and int32 bias rounding, a few steps at most.
    if (!may_saturate) CHECK(diff < 0.1);
  }
}

TEST_CASE("weight-only int4 exports its dequantization explicitly and runs exactly", "[onnx]") {
  const std::string dir = tmp_dir("int4");
  GraphModule gm = models::capture_model("fashion-cnn");
  gm->eval();
  quant::WeightOnlyOptions wo;
  wo.bits = 4;
  wo.group_size = 32;
  quant::quantize_weights(*gm, {}, wo);
  const std::string out = dir + "/int4.onnx";
  const OnnxExportReport r = export_onnx(*gm, out, OnnxExportOptions({{2, 1, 28, 28}}));
  CHECK(r.quantize_nodes == 0);
  CHECK(r.dequantize_nodes > 0);
  const torch::Tensor x = torch::randn({2, 1, 28, 28});
  const torch::Tensor want = run_tailor(*gm, x);
  if (!ort_available()) return;
  const auto results = run_ort({{out, {x}}}, dir);
  CHECK(max_rel(results[0][0], want) < 1e-4);
}

TEST_CASE("a graph with several outputs exports each as an ONNX output", "[onnx]") {
  const std::string dir = tmp_dir("outputs");
  GraphModule gm = make_graph([](Graph& g, int x) {
    const int r = add(g, ops::kRelu, "r", {x});
    const int s = add(g, ops::kSigmoid, "s", {x});
    const int c = add(g, ops::kSoftmax, "sm", {r}, {{"dim", AttrValue(int64_t{1})}});
    return std::vector<int>{c, s};
  });
  const std::string out = dir + "/two.onnx";
  const OnnxExportReport r = export_onnx(*gm, out, OnnxExportOptions({{2, 5}}));
  CHECK(r.outputs == std::vector<std::string>{"output_0", "output_1"});
  const torch::Tensor x = torch::randn({2, 5});
  torch::NoGradGuard g;
  const auto want = gm->run({x}).toTupleRef().elements();
  if (!ort_available()) return;
  const auto results = run_ort({{out, {x}}}, dir);
  REQUIRE(results[0].size() == 2);
  CHECK(max_rel(results[0][0], want[0].toTensor()) < 1e-6);
  CHECK(max_rel(results[0][1], want[1].toTensor()) < 1e-6);
}

TEST_CASE("ONNX export refuses what ONNX cannot express, naming the node, and writes nothing", "[onnx]") {
  const std::string dir = tmp_dir("bad");
  SECTION("an operator without an ONNX spelling") {
    GraphModule gm = make_graph([](Graph& g, int x) {
      const int dim = add(g, ops::kConstant, "dim", {}, {{"value", AttrValue(int64_t{1})}}, ValueType::Int);
      const int none = add(g, ops::kConstant, "none", {}, {{"value", AttrValue()}}, ValueType::None);
      return std::vector<int>{add(g, ops::kOpaque, "running_total", {x, dim, none},
                                  {{"schema", AttrValue(std::string("aten::cumsum"))}})};
    });
    const std::string out = dir + "/cumsum.onnx";
    std::ofstream(out) << "keep me";
    CHECK_THROWS_WITH(export_onnx(*gm, out, OnnxExportOptions({{2, 5}})),
                      Catch::Contains("running_total") && Catch::Contains("aten::cumsum"));
    std::ifstream in(out);
    std::string kept;
    std::getline(in, kept);
    CHECK(kept == "keep me");
    CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);  // no temporary left
  }
  SECTION("an output folder that does not exist") {
    GraphModule gm = make_graph([](Graph& g, int x) { return std::vector<int>{add(g, ops::kRelu, "r", {x})}; });
    CHECK_THROWS_WITH(export_onnx(*gm, dir + "/missing/m.onnx", OnnxExportOptions({{1, 4}})),
                      Catch::Contains("does not exist"));
    CHECK_FALSE(fs::exists(dir + "/missing"));
  }
  SECTION("a non-tensor output") {
    GraphModule gm = make_graph([](Graph& g, int x) {
      const int zero = add(g, ops::kConstant, "zero", {}, {{"value", AttrValue(int64_t{0})}}, ValueType::Int);
      return std::vector<int>{add(g, ops::kOpaque, "rows", {x, zero}, {{"schema", AttrValue(std::string("aten::size.int"))}},
                                  ValueType::Int)};
    });
    CHECK_THROWS_WITH(export_onnx(*gm, dir + "/size.onnx", OnnxExportOptions({{3, 4}})),
                      Catch::Contains("ONNX outputs are tensors"));
    CHECK_FALSE(fs::exists(dir + "/size.onnx"));
  }
  SECTION("input shapes that do not fit the graph") {
    GraphModule gm = make_graph([](Graph& g, int x) { return std::vector<int>{add(g, ops::kRelu, "r", {x})}; });
    CHECK_THROWS_WITH(export_onnx(*gm, dir + "/r.onnx", OnnxExportOptions({{1, 4}, {1, 4}})),
                      Catch::Contains("one input shape per graph input"));
  }
}
