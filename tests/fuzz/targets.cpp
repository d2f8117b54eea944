// The fuzz targets (see targets.hpp). Where a reader has a writer, the target also checks the round trip: what
// was accepted must write out and read back to the same text, so the fuzzer finds silent corruption as well as
// crashes.
#include "targets.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <typeinfo>

#include <cxxabi.h>
#include <torch/script.h>

#include "tailor/capture/capture.hpp"
#include "tailor/core/error.hpp"
#include "tailor/core/text.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/graph.hpp"
#include "tailor/ir/graph_module.hpp"
#include "tailor/ir/provenance.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/models/space.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/nas/nas.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/place/place.hpp"
#include "tailor/place/simulate.hpp"
#include "tailor/profile/profiler.hpp"
#include "tailor/recipe/recipe.hpp"
#include "tailor/variant/card.hpp"

#if TAILOR_WITH_SERVE
#include "../../src/serve/wire.hpp"
#include "tailor/serve/serve.hpp"
#endif

namespace tailor::fuzz {
namespace {

std::string text_of(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

void expect_same(const std::string& what, const std::string& first, const std::string& again) {
  if (first != again)
    throw InvariantBroken(what + " does not read back the same:\n  first:  " + first.substr(0, 400) +
                          "\n  second: " + again.substr(0, 400));
}

std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("fuzz harness: cannot write " + path);
  return path;
}

// --- text forms

void pipeline(const uint8_t* data, size_t size) {
  const auto p = parse_pipeline(text_of(data, size));
  const std::string first = p->str();
  expect_same("pipeline text", first, parse_pipeline(first)->str());
}

void shape(const uint8_t* data, size_t size) {
  const auto s = parse_shape(text_of(data, size));
  expect_same("shape", shape_to_string(s), shape_to_string(parse_shape(shape_to_string(s))));
}

void arch_config(const uint8_t* data, size_t size) {
  const std::string text = text_of(data, size);
  if (!text.empty() && text[0] == '{') {
    const auto c = models::ArchConfig::from_json(text);
    expect_same("architecture JSON", c.to_json(), models::ArchConfig::from_json(c.to_json()).to_json());
    return;
  }
  const auto c = models::ArchConfig::parse(text);
  expect_same("architecture text", c.str(), models::ArchConfig::parse(c.str()).str());
}

void search_space(const uint8_t* data, size_t size) {
  const auto s = models::SearchSpace::from_json(text_of(data, size));
  expect_same("search space JSON", s.to_json(), models::SearchSpace::from_json(s.to_json()).to_json());
}

void target_text(const uint8_t* data, size_t size) { nas::parse_target(text_of(data, size)); }

// The first byte picks the reader, the rest is its text: device, link and objective YAML (files and inline
// key=value forms) and fleet arrivals.
void place_files(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const std::string text = text_of(data + 1, size - 1);
  switch (data[0] % 7) {
    case 0: place::Device::parse(text, "<fuzz>"); break;
    case 1: place::Link::parse(text, "<fuzz>"); break;
    case 2: place::Objective::parse(text, "<fuzz>"); break;
    case 3: if (text.find('=') != std::string::npos) place::Device::load(text); break;
    case 4: if (text.find('=') != std::string::npos) place::Link::load(text); break;
    case 5: if (text.find('=') != std::string::npos) place::Objective::load(text); break;
    default:
      if (text.rfind("trace:", 0) != 0) place::Arrivals::parse(text);  // trace:FILE reads a file: not from bytes
  }
}

#if TAILOR_WITH_SERVE
void model_spec(const uint8_t* data, size_t size) { serve::ModelSpec::parse(text_of(data, size)); }
#endif

// --- JSON files

void manifest(const uint8_t* data, size_t size) {
  const auto m = Manifest::from_json(text_of(data, size));
  expect_same("manifest", m.to_json(), Manifest::from_json(m.to_json()).to_json());
}

void profile_json(const uint8_t* data, size_t size) {
  const std::string text = text_of(data, size);
  if (!text.empty() && text[0] == '[') {
    const auto records = provenance_from_json(text);
    expect_same("provenance", provenance_to_json(records), provenance_to_json(provenance_from_json(provenance_to_json(records))));
    return;
  }
  const auto p = LatencyProfile::from_json(text);
  expect_same("latency profile", p.to_json(), LatencyProfile::from_json(p.to_json()).to_json());
}

void graph_json(const uint8_t* data, size_t size) {
  const auto g = Graph::from_json(text_of(data, size));
  expect_same("graph JSON", g.to_json(), Graph::from_json(g.to_json()).to_json());
}

void latency_table(const uint8_t* data, size_t size) {
  const auto m = latency::Model::from_json(text_of(data, size), "<fuzz>");
  expect_same("latency table", m.to_json(), latency::Model::from_json(m.to_json(), "<fuzz>").to_json());
}

// A plan as the simulator reads it, then a short simulation of each placement it describes.
void plan(const uint8_t* data, size_t size) {
  const auto setup = place::fleet_setup(text_of(data, size), "<fuzz>");
  for (auto s : setup.scenarios) {
    s.requests = 40;
    place::simulate_fleet(s, {1, 3}, setup.objective);
  }
}

// --- files read through the filesystem

void recipe_yaml(const uint8_t* data, size_t size) { tailor::recipe::parse_recipe(write_scratch("recipe.yaml", data, size)); }

// The first two bytes split the rest into an IDX image file and an IDX label file.
void idx(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const size_t split = std::min<size_t>(size - 2, (size_t(data[0]) << 8) | data[1]);
  const std::vector<uint8_t> images(data + 2, data + 2 + split), labels(data + 2 + split, data + size);
  data::decode_idx(images, labels, "images", "labels");
}

void archive(const uint8_t* data, size_t size) { tailor::load(write_scratch("archive.pt", data, size)); }

// The bytes as the embedded graph of a real archive (the fashion-cnn of the zoo), loaded through tailor::load,
// which must match the graph with the archive's tensors.
void archive_graph(const uint8_t* data, size_t size) {
  static std::mutex mutex;
  static torch::jit::Module scripted = [] {
    GraphModule m = models::load_model("fashion-cnn");
    return to_torchscript(*m);
  }();
  std::ostringstream bytes;
  {
    std::lock_guard<std::mutex> lock(mutex);
    scripted.save(bytes, {{kEmbeddedGraphFile, text_of(data, size)}, {kProvenanceFile, ""}});
  }
  const std::string b = bytes.str();
  tailor::load(write_scratch("archive_graph.pt", reinterpret_cast<const uint8_t*>(b.data()), b.size()));
}

#if TAILOR_WITH_SERVE
// A ModelInferRequest as the server receives it, decoded against a model with an FP32 image and an INT64 input.
void oip_request(const uint8_t* data, size_t size) {
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;  // gRPC refuses these before tailor sees them
  serve::wire::TensorSpecs in;
  in.names = {"image", "ids"};
  in.datatypes = {"FP32", "INT64"};
  in.shapes = {{1, 3, 4, 4}, {1, 2}};
  std::vector<c10::IValue> inputs;
  std::vector<std::vector<int64_t>> shapes;
  const std::string error = serve::wire::decode_inputs(in, request, 1 << 16, inputs, shapes);
  if (!error.empty()) return;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& t = inputs[i].toTensor();
    if (t.sizes().vec() != shapes[i] || serve::wire::datatype_of(t.scalar_type()) != in.datatypes[i])
      throw InvariantBroken("decoded input '" + in.names[i] + "' has shape " + shape_to_string(t.sizes().vec()) +
                            ", expected " + shape_to_string(shapes[i]));
  }
}
#endif

std::string demangled(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"pipeline", "pipeline text (tailor convert --pipeline)", pipeline},
      {"shape", "input shapes (--input 1x3x224x224)", shape},
      {"recipe", "recipe YAML (tailor compress)", recipe_yaml},
      {"manifest", "manifest JSON (manifest.json of a recipe or tailor profile --card)", manifest},
      {"profile", "a latency profile or provenance JSON (inside manifests and archives)", profile_json},
      {"graph-json", "the tailor graph JSON embedded in archives", graph_json},
      {"archive-graph", "a real TorchScript archive whose embedded graph JSON is these bytes (tailor::load)",
       archive_graph},
      {"archive", "a TorchScript archive file (tailor::load)", archive},
      {"idx", "Fashion-MNIST IDX image and label files", idx},
      {"latency-table", "latency table JSON (tailor latency build)", latency_table},
      {"arch-config", "architecture text and JSON (tailor latency predict, search results)", arch_config},
      {"search-space", "search space JSON (--space FILE)", search_space},
      {"target", "latency targets (onednn-cpu:2:avx2)", target_text},
      {"place", "device, link and objective YAML and inline forms; fleet arrivals", place_files},
      {"plan", "plan.json (tailor place -o), simulated", plan},
#if TAILOR_WITH_SERVE
      {"model-spec", "tailor serve --model NAME=FILE,...", model_spec},
      {"oip-request", "an Open Inference Protocol ModelInferRequest as tailor serve decodes it", oip_request},
#endif
  };
  return all;
}

const Target& target(const std::string& name) {
  std::string names;
  for (const auto& t : targets()) {
    if (name == t.name) return t;
    names += std::string(names.empty() ? "" : ", ") + t.name;
  }
  throw std::invalid_argument("unknown fuzz target '" + name + "' (targets: " + names + ")");
}

std::string run_one(const Target& target, const uint8_t* data, size_t size) {
  try {
    target.run(data, size);
    return "";
  } catch (const Error&) {
    return "";
  } catch (const std::exception& e) {
    return demangled(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

const std::string& scratch_dir() {
  struct Scratch {
    std::string path;
    Scratch() {
      const std::filesystem::path base =
          std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
      path = (base / ("tailor-fuzz-" + std::to_string(::getpid()))).string();
      std::filesystem::create_directories(path);
    }
    ~Scratch() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const Scratch scratch;
  return scratch.path;
}

}  // namespace tailor::fuzz
