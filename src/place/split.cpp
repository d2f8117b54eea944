// Splitting a model at a placement's cut into an edge part and a cloud part, running the two as the runtime
// would, and writing a plan's files.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../core/json_number.hpp"
#include "../ir/attr_ivalue.hpp"
#include "tailor/capture/capture.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/place/place.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor::place {
namespace {

bool is_structure(const std::string& kind) { return kind == ops::kParam || kind == ops::kConstant; }

// A static attribute holding a non-tensor value computed at the plan's shape, so the cloud part needs no shapes
// from the edge.
AttrValue baked(const c10::IValue& v, const std::string& name) {
  if (auto a = detail::attr_from_ivalue(v)) return *a;
  TAILOR_FAIL("value '", name, "' crosses the cut but is neither a tensor nor a constant (", v.tagKind(),
              "); choose a cut that keeps it on one side");
}

// A part of `module`: the kept compute nodes and the params and constants they read; `inputs` become the part's
// inputs (by name), `constants` are baked, `outputs` are returned in order.
GraphModule extract(const GraphModuleImpl& module, const std::set<int>& keep, const std::vector<int>& inputs,
                    const std::map<int, c10::IValue>& constants, const std::vector<int>& outputs) {
  const Graph& g = module.graph();
  Graph part;
  std::map<int, int> remap;
  auto copy_value_info = [&](int from, int to) {
    const Value& v = g.value(from);
    Value& n = part.value(to);
    n.name = v.name;
    n.shape = v.shape;
    n.dtype = v.dtype;
  };
  for (int v : inputs) {
    remap[v] = part.add_input(g.value(v).name, g.value(v).type);
    copy_value_info(v, remap[v]);
  }
  for (const auto& [v, value] : constants) {
    Node c;
    c.kind = ops::kConstant;
    c.name = g.value(v).name;
    c.attrs["value"] = baked(value, g.value(v).name);
    const int id = part.add_node(c, {g.value(v).type});
    remap[v] = part.node(id).outputs[0];
    copy_value_info(v, remap[v]);
  }
  std::set<int> needed = keep;  // and the structure nodes they read
  for (int id : keep)
    for (int v : g.node(id).inputs)
      if (const int p = g.value(v).producer; p >= 0 && is_structure(g.node(p).kind) && !remap.count(v)) needed.insert(p);
  std::set<std::string> tensor_names;
  for (int id : g.order()) {
    if (!needed.count(id)) continue;
    const Node& n = g.node(id);
    Node copy = n;
    copy.inputs.clear();
    for (int v : n.inputs) {
      auto it = remap.find(v);
      TAILOR_INTERNAL_ASSERT(it != remap.end(), "node ", n.name, " of a split part reads value ", g.value(v).name,
                             " that the part neither computes nor receives");
      copy.inputs.push_back(it->second);
    }
    std::vector<ValueType> types;
    for (int v : n.outputs) types.push_back(g.value(v).type);
    const int nid = part.add_node(copy, types);
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      remap[n.outputs[k]] = part.node(nid).outputs[k];
      copy_value_info(n.outputs[k], part.node(nid).outputs[k]);
    }
    if (n.kind == ops::kParam) tensor_names.insert(n.s("name"));
  }
  std::vector<int> outs;
  for (int v : outputs) outs.push_back(remap.at(v));
  part.set_outputs(outs);
  part.verify();
  std::map<std::string, torch::Tensor> tensors;
  std::vector<std::string> buffers;
  for (const auto& name : tensor_names) {
    tensors[name] = module.tensor(name);
    if (module.is_buffer(name)) buffers.push_back(name);
  }
  GraphModule gm(std::move(part), tensors, buffers);
  gm->mutable_provenance() = module.provenance();
  gm->eval();
  return gm;
}

std::vector<torch::Tensor> tensors_of(const c10::IValue& v) {
  if (v.isTensor()) return {v.toTensor()};
  std::vector<torch::Tensor> out;
  for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
  return out;
}

}  // namespace

SplitModel split(const GraphModuleImpl& module, const CutGraph& graph, const std::vector<bool>& on_edge) {
  TAILOR_CHECK(on_edge.size() == graph.nodes.size(), "placement has ", on_edge.size(), " sites for ",
               graph.nodes.size(), " nodes");
  const Graph& g = module.graph();
  std::map<std::string, bool> edge_by_name;
  for (size_t i = 0; i < graph.nodes.size(); ++i) edge_by_name[graph.nodes[i]] = on_edge[i];
  std::set<int> edge_nodes, cloud_nodes;
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (is_structure(n.kind)) continue;
    auto it = edge_by_name.find(n.name);
    TAILOR_CHECK(it != edge_by_name.end(), "node '", n.name, "' is not in the plan's graph (was the plan made for "
                 "another variant?)");
    (it->second ? edge_nodes : cloud_nodes).insert(id);
  }
  auto on_edge_side = [&](int value) {
    const int p = g.value(value).producer;
    return p < 0 || edge_nodes.count(p) > 0 || is_structure(g.node(p).kind);
  };
  SplitModel parts;
  std::vector<int> cut, baked_values, edge_outs, cloud_outs;
  for (int id : cloud_nodes)
    for (int v : g.node(id).inputs) {
      const int p = g.value(v).producer;
      if (p >= 0 && is_structure(g.node(p).kind)) continue;
      if (!on_edge_side(v)) continue;
      auto& list = g.value(v).type == ValueType::Tensor ? cut : baked_values;
      if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
    }
  for (int id : edge_nodes)
    for (int v : g.node(id).inputs)
      TAILOR_CHECK(on_edge_side(v), "node '", g.node(id).name, "' runs on the edge but reads '", g.value(v).name,
                   "' from the cloud: not a valid placement");
  std::sort(cut.begin(), cut.end());
  for (int v : g.outputs()) (on_edge_side(v) ? edge_outs : cloud_outs).push_back(v);

  std::map<int, c10::IValue> constants;
  if (!baked_values.empty() && !cloud_nodes.empty()) {
    auto& mutable_module = const_cast<GraphModuleImpl&>(module);
    std::vector<c10::IValue> inputs;
    for (int v : g.inputs()) {
      const auto& shape = g.value(v).shape;
      TAILOR_CHECK(!shape.empty(), "input '", g.value(v).name, "' has no shape: plan at a known input shape");
      inputs.emplace_back(torch::randn(shape));
    }
    torch::NoGradGuard no_grad;
    const auto values = mutable_module.run_all_values(inputs);
    for (int v : baked_values) constants[v] = values.at(v);
  }
  const bool any_cloud = !cloud_nodes.empty();
  if (!edge_nodes.empty() || !any_cloud) {
    std::vector<int> outs = edge_outs;
    if (any_cloud) outs.insert(outs.end(), cut.begin(), cut.end());
    parts.edge = extract(module, edge_nodes, g.inputs(), {}, outs);
  }
  if (any_cloud) {
    std::vector<int> cloud_inputs = cut;
    parts.cloud = extract(module, cloud_nodes, cloud_inputs, constants, cloud_outs);
  }
  // Each part records the shapes it was cut at, so that it can be compiled (and served) on its own.
  std::map<std::string, const CutGraph::Tensor*> by_name;
  for (const auto& t : graph.tensors) by_name[t.name] = &t;
  for (auto* part : {&parts.edge, &parts.cloud}) {
    if (!*part) continue;
    Graph& pg = (**part)->mutable_graph();
    std::vector<std::vector<int64_t>> shapes;
    for (int v : pg.inputs()) {
      Value& value = pg.value(v);
      const auto it = by_name.find(value.name);
      if (value.shape.empty() && it != by_name.end() && it->second->is_tensor) value.shape = it->second->shape;
      if (value.dtype.empty() && it != by_name.end()) value.dtype = it->second->dtype;
      shapes.push_back(value.shape);
    }
    try {
      (**part)->infer_shapes(shapes);
    } catch (const Error&) {
      // A part whose shapes cannot be inferred still runs; serving it then needs its shapes given.
    }
  }
  for (int v : cut) parts.cut.push_back(g.value(v).name);
  for (int v : edge_outs) parts.edge_outputs.push_back(g.value(v).name);
  for (int v : cloud_outs) parts.cloud_outputs.push_back(g.value(v).name);
  parts.output_order.clear();
  for (int v : g.outputs()) parts.output_order.push_back(g.value(v).name);
  return parts;
}

c10::IValue run_split(SplitModel& parts, const std::vector<c10::IValue>& inputs, Codec codec) {
  std::map<std::string, torch::Tensor> named;
  std::vector<c10::IValue> cloud_inputs;
  if (parts.edge) {
    const auto outs = tensors_of((*parts.edge)->run(inputs));
    TAILOR_INTERNAL_ASSERT(outs.size() == parts.edge_outputs.size() + (parts.cloud ? parts.cut.size() : 0),
                           "edge part returned ", outs.size(), " tensors");
    for (size_t i = 0; i < parts.edge_outputs.size(); ++i) named[parts.edge_outputs[i]] = outs[i];
    if (parts.cloud)
      for (size_t i = 0; i < parts.cut.size(); ++i)
        cloud_inputs.emplace_back(through_codec(outs[parts.edge_outputs.size() + i], codec));
  } else {
    for (const auto& x : inputs) cloud_inputs.emplace_back(through_codec(x.toTensor(), codec));
  }
  if (parts.cloud) {
    const auto outs = tensors_of((*parts.cloud)->run(cloud_inputs));
    // The replies cross the link too, and the planner prices them with the codec.
    for (size_t i = 0; i < parts.cloud_outputs.size(); ++i) named[parts.cloud_outputs[i]] = through_codec(outs[i], codec);
  }
  std::vector<c10::IValue> result;
  for (const auto& name : parts.output_order) result.emplace_back(named.at(name));
  if (result.size() == 1) return result[0];
  return c10::ivalue::Tuple::create(std::move(result));
}

void export_plan(const Plan& plan, const GraphModuleImpl& module, const std::string& folder) {
  namespace fs = std::filesystem;
  const VariantPlan& v = plan.chosen;
  SplitModel parts = split(module, v.graph, v.best.on_edge);
  // Composition check on the plan's input shape before anything is written.
  std::vector<c10::IValue> inputs;
  for (const auto& shape : v.graph.input_shapes) inputs.emplace_back(torch::randn(shape));
  torch::NoGradGuard no_grad;
  auto& whole = const_cast<GraphModuleImpl&>(module);
  const auto expected = tensors_of(whole.run(inputs));
  const auto got = tensors_of(run_split(parts, inputs));
  TAILOR_INTERNAL_ASSERT(expected.size() == got.size(), "split parts return ", got.size(), " outputs, the model ",
                         expected.size());
  double max_rel = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_rel = std::max(max_rel, ((got[i] - expected[i]).abs().max() / expected[i].abs().max().clamp_min(1e-12))
                                    .item<double>());
  TAILOR_INTERNAL_ASSERT(max_rel <= 1e-5, "the split parts differ from the model by ", max_rel);
  std::map<std::string, std::string> files;
  if (parts.edge) files["edge.pt"] = to_archive(**parts.edge);
  if (parts.cloud) files["cloud.pt"] = to_archive(**parts.cloud);
  nlohmann::json j = nlohmann::json::parse(plan.to_json());
  j["parts"] = {{"edge", parts.edge ? "edge.pt" : ""},
                {"cloud", parts.cloud ? "cloud.pt" : ""},
                {"cut", parts.cut},
                {"edge_outputs", parts.edge_outputs},
                {"cloud_outputs", parts.cloud_outputs},
                {"outputs", parts.output_order},
                {"input_shapes", v.graph.input_shapes},
                {"codec", to_string(plan.objective.codec)},
                {"composition_max_rel_diff", max_rel}};
  files["plan.json"] = j.dump(2) + "\n";
  std::error_code ec;
  fs::create_directories(folder, ec);
  TAILOR_CHECK(!ec, "cannot create the plan folder '", folder, "': ", ec.message());
  for (const auto& [name, bytes] : files) write_file_atomically((fs::path(folder) / name).string(), bytes);
  // A plan of another shape may have left a part this one does not have.
  for (const char* stale : {"edge.pt", "cloud.pt"})
    if (!files.count(stale)) fs::remove(fs::path(folder) / stale, ec);
}

PlanFolder PlanFolder::read(const std::string& folder) {
  namespace fs = std::filesystem;
  PlanFolder p;
  p.folder = folder;
  p.path = (fs::path(folder) / "plan.json").string();
  std::ifstream in(p.path);
  TAILOR_CHECK(in.good(), "cannot read the plan '", p.path, "' (write one with tailor place -o ", folder, ")");
  std::stringstream text;
  text << in.rdbuf();
  p.json = text.str();
  std::string key;
  try {
    const nlohmann::json j = nlohmann::json::parse(p.json);
    TAILOR_CHECK(j.value("format", "") == "tailor-plan", "'", p.path, "' is not a tailor plan (format '",
                 j.value("format", ""), "')");
    for (const char* k : {"parts", "chosen", "link", "edge", "cloud"})
      TAILOR_CHECK(j.contains(k), "plan '", p.path, "' has no '", k, "'");
    // A plan's device is a device description (JSON is YAML) plus what the planner derived from it.
    auto device = [&](const char* site) {
      key = site;
      nlohmann::json d = j.at(site);
      d.erase("modelled");
      Device dev = Device::parse(d.dump(), "plan '" + p.path + "', '" + key + "'");
      if (dev.name.empty()) dev.name = site;
      return dev;
    };
    p.edge = device("edge");
    p.cloud = device("cloud");
    key = "parts";
    const nlohmann::json& parts = j.at("parts");
    p.input_shapes = detail::json_shapes(parts.at("input_shapes"), "plan '" + p.path + "': 'parts.input_shapes'");
    for (auto [site, file] : {std::pair{"edge", &p.edge_part}, std::pair{"cloud", &p.cloud_part}}) {
      const std::string name = parts.value(site, "");
      if (name.empty()) continue;
      *file = (fs::path(folder) / name).string();
      TAILOR_CHECK(fs::exists(*file), "plan '", p.path, "' names the ", site, " part '", name,
                   "', which is not in the folder");
    }
    p.cut = parts.at("cut").get<std::vector<std::string>>();
    p.edge_outputs = parts.at("edge_outputs").get<std::vector<std::string>>();
    p.cloud_outputs = parts.at("cloud_outputs").get<std::vector<std::string>>();
    p.outputs = parts.at("outputs").get<std::vector<std::string>>();
    p.codec = codec_from_string(parts.value("codec", "none"));
    key = "link";
    p.link = Link::parse(j.at("link").dump(), "plan '" + p.path + "', 'link'");
    key = "chosen";
    const nlohmann::json& chosen = j.at("chosen");
    p.predicted_ms = chosen.at("placement").at("predicted").at("total_ms").get<double>();
    for (const auto& e : chosen.value("exits", nlohmann::json::array()))
      p.exits.push_back({e.at("output").get<std::string>(), e.at("threshold").get<double>()});
  } catch (const nlohmann::json::exception& e) {
    TAILOR_FAIL("plan '", p.path, "'", key.empty() ? "" : ", '" + key + "'", ": ", e.what());
  }
  return p;
}

const Device& PlanFolder::device_of(const std::string& part) const {
  TAILOR_CHECK(part == "edge" || part == "cloud", "a plan's parts are 'edge' and 'cloud', not '", part, "'");
  return part == "edge" ? edge : cloud;
}

const std::string& PlanFolder::file_of(const std::string& part) const {
  TAILOR_CHECK(part == "edge" || part == "cloud", "a plan's parts are 'edge' and 'cloud', not '", part, "'");
  return part == "edge" ? edge_part : cloud_part;
}

std::unique_ptr<Executable> PlanFolder::compile(const std::string& part) const {
  const std::string& file = file_of(part);
  TAILOR_CHECK(!file.empty(), "plan '", path, "' has no ", part, " part");
  const Device& device = device_of(part);
  GraphModule module = tailor::load(file);
  CompileOptions co;
  co.threads = device.threads;
  co.isa = device.isa;
  if (part == "edge") {
    co.input_shapes = input_shapes;
  } else {
    for (int v : module->graph().inputs()) co.input_shapes.push_back(module->graph().value(v).shape);
  }
  return tailor::compile(device.backend, *module, co);
}

}  // namespace tailor::place
