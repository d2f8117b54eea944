// Recipe files: YAML parsed with FILE:LINE:COLUMN positions, passes and options checked against the registry.
#include "tailor/recipe/recipe.hpp"

#include "tailor/core/text.hpp"
#include "tailor/runtime/isa.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include "tailor/capture/capture.hpp"
#include "tailor/core/error.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/export/export.hpp"
#include "tailor/export/onnx.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/place/simulate.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/train/train.hpp"
#include "tailor/version.hpp"

#include "internal.hpp"
#include "tailor/latency/latency.hpp"

namespace fs = std::filesystem;

namespace tailor::recipe {

std::string PassSpec::str() const {
  std::string s = name;
  if (!options.empty()) {
    s += "{";
    for (size_t i = 0; i < options.size(); ++i) s += (i ? "," : "") + options[i].first + "=" + options[i].second;
    s += "}";
  }
  return s;
}

// ------------------------------------------------------------------------------------------------ parsing

namespace {

// A recipe names files; a name the filesystem cannot even look up (too long, a loop) counts as missing.
bool exists_quietly(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}


struct Parser {
  std::string file;

  std::string where(const YAML::Node& n) const {
    const auto m = n.Mark();
    if (m.is_null()) return file;
    return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }
  template <typename... Args>
  [[noreturn]] void fail(const YAML::Node& n, const Args&... args) const {
    TAILOR_FAIL(where(n), ": ", args...);
  }
  void keys(const YAML::Node& map, const std::string& what, const std::vector<std::string>& valid) const {
    if (!map.IsMap()) fail(map, what, " must be a mapping with keys: ", join(valid));
    for (const auto& kv : map) {
      const auto key = kv.first.as<std::string>();
      if (std::find(valid.begin(), valid.end(), key) == valid.end())
        fail(kv.first, "unknown key '", key, "' in ", what, "; valid keys: ", join(valid));
    }
  }
  template <typename T>
  T as(const YAML::Node& n, const std::string& what, const char* type) const {
    if (!n.IsScalar()) fail(n, what, " must be ", type);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(n, what, " must be ", type, ", got '", n.Scalar(), "'");
    }
  }
  double number(const YAML::Node& n, const std::string& what) const { return as<double>(n, what, "a number"); }
  int64_t integer(const YAML::Node& n, const std::string& what) const { return as<int64_t>(n, what, "an integer"); }
  std::string text(const YAML::Node& n, const std::string& what) const { return as<std::string>(n, what, "a string"); }

  std::string option_value(const YAML::Node& n, const std::string& what) const {
    if (n.IsScalar()) return n.Scalar();
    if (n.IsSequence()) {
      std::vector<std::string> parts;
      for (const auto& x : n) parts.push_back(tailor::detail::print_text(text(x, what)));
      return "[" + join(parts, ",") + "]";
    }
    fail(n, what, " must be a value or a list of values");
  }

  // A pass: "name" or {name: {option: value, ...}}. Checked against the registry now, so a typo fails before
  // anything runs.
  PassSpec pass(const YAML::Node& n) const {
    PassSpec p;
    p.where = where(n);
    YAML::Node opts;
    if (n.IsScalar()) {
      p.name = n.Scalar();
    } else if (n.IsMap() && n.size() == 1) {
      p.name = n.begin()->first.as<std::string>();
      opts = n.begin()->second;
    } else {
      fail(n, "a pass must be a name or {name: {option: value}}");
    }
    std::shared_ptr<Pass> made;
    try {
      made = make_pass(p.name);
    } catch (const Error& e) {
      fail(n, e.message());
    }
    if (opts && !opts.IsNull()) {
      if (!opts.IsMap()) fail(opts, "the options of pass '", p.name, "' must be a mapping");
      for (const auto& kv : opts) {
        const auto key = kv.first.as<std::string>();
        const auto value = option_value(kv.second, "option '" + key + "' of pass '" + p.name + "'");
        try {
          made->options().set(key, value);
        } catch (const Error& e) {
          std::vector<std::string> valid;
          for (const OptionBase* o : made->options().all()) valid.push_back(o->key());
          fail(kv.second, "pass '", p.name, "': ", e.message(), " (options of '", p.name, "': ", join(valid), ")");
        }
        p.options.emplace_back(key, value);
      }
    }
    p.needs = made->info().needs;
    return p;
  }
  std::vector<PassSpec> pipeline(const YAML::Node& n, const std::string& what) const {
    if (n.IsNull()) return {};
    if (!n.IsSequence()) fail(n, what, " must be a list of passes");
    std::vector<PassSpec> out;
    for (const auto& p : n) out.push_back(pass(p));
    return out;
  }
  std::string variant_name(const YAML::Node& n, const std::string& name) const {
    if (name.empty() || name == "baseline" ||
        !std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; }))
      fail(n, "variant name '", name, "' must be non-empty letters, digits, '-', '_' or '.' (and not 'baseline')");
    return name;
  }
};

// A description given as a file (relative to the recipe), inline key=value text, or a YAML map in the recipe.
template <class Description>
Description description(const Parser& P, const YAML::Node& n, const fs::path& dir, const std::string& what) {
  try {
    if (n.IsMap()) {
      YAML::Emitter out;
      out << n;
      return Description::parse(out.c_str(), P.where(n) + ": " + what);
    }
    std::string text = P.text(n, what);
    if (text.find('=') == std::string::npos && fs::path(text).is_relative() && !exists_quietly(text)) text = (dir / text).string();
    return Description::load(text);
  } catch (const Error& e) {
    P.fail(n, what, ": ", e.message());
  }
}

PlacementSpec placement(const Parser& P, const YAML::Node& n, const fs::path& dir, const std::string& isa) {
  P.keys(n, "placement", {"edge", "cloud", "links", "objective", "fleet"});
  PlacementSpec spec;
  for (const char* key : {"edge", "cloud"})
    if (!n[key]) P.fail(n, "placement needs '", key, "' (a device file, or e.g. backend=onednn-cpu,threads=1)");
  spec.edge = description<place::Device>(P, n["edge"], dir, "placement.edge");
  spec.cloud = description<place::Device>(P, n["cloud"], dir, "placement.cloud");
  for (const auto* d : {&spec.edge, &spec.cloud})
    if (!d->isa.empty() && d->isa != isa)
      P.fail(n[d == &spec.edge ? "edge" : "cloud"], "device '", d->name, "' names ISA ", d->isa, " but the recipe ",
             isa.empty() ? "profiles at this CPU's best ISA" : "caps the ISA at " + isa,
             "; a run has one ISA: set profile.isa, or profile the device with `tailor profile --isa ... --card`");
  const auto links = n["links"];
  if (!links || !links.IsSequence() || links.size() == 0) P.fail(n, "placement.links must be a list of links");
  for (const auto& l : links) spec.links.push_back(description<place::Link>(P, l, dir, "placement.links"));
  std::set<std::string> names;
  for (size_t i = 0; i < spec.links.size(); ++i)
    if (!names.insert(spec.links[i].name).second)
      P.fail(links[i], "two links named '", spec.links[i].name, "' (each gets a plan folder of that name)");
  if (const auto o = n["objective"]) spec.objective = description<place::Objective>(P, o, dir, "placement.objective");
  if (const auto f = n["fleet"]) {
    P.keys(f, "placement.fleet", {"devices", "executors", "arrivals"});
    PlacementSpec::Fleet fleet;
    if (const auto d = f["devices"]) {
      if (!d.IsSequence() || d.size() == 0) P.fail(d, "placement.fleet.devices must be a list of fleet sizes");
      fleet.devices.clear();
      for (const auto& x : d) {
        int v = 0;
        try {
          v = x.as<int>();
        } catch (const YAML::Exception&) {
        }
        if (v <= 0) P.fail(x, "placement.fleet.devices: '", YAML::Dump(x), "' is not a positive number of devices");
        fleet.devices.push_back(v);
      }
    }
    if (const auto e = f["executors"]) {
      try {
        fleet.executors = e.as<int>();
      } catch (const YAML::Exception&) {
        fleet.executors = 0;
      }
      if (fleet.executors <= 0) P.fail(e, "placement.fleet.executors must be a positive integer");
    }
    if (const auto a = f["arrivals"]) {
      fleet.arrivals = a.as<std::string>();
      try {
        place::Arrivals::parse(fleet.arrivals);
      } catch (const Error& err) {
        P.fail(a, "placement.fleet.arrivals: ", err.message());
      }
    }
    spec.fleet = fleet;
  }
  return spec;
}

}  // namespace

Recipe parse_recipe(const std::string& path) {
  TAILOR_CHECK(exists_quietly(path), "recipe '", path, "' does not exist");
  Parser P{path};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    TAILOR_FAIL(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
  }
  P.keys(root, "the recipe", {"name", "model", "input", "data", "sweep", "variants", "profile", "goals", "output",
                                   "placement"});
  Recipe r;
  r.file = path;
  const fs::path dir = fs::path(path).parent_path();
  r.name = root["name"] ? P.text(root["name"], "name") : fs::path(path).stem().string();

  const auto model = root["model"];
  if (!model) TAILOR_FAIL(path, ": the recipe needs a 'model' (file: PATH or zoo: NAME)");
  P.keys(model, "model", {"file", "zoo", "width", "train", "seed"});
  if (model["file"] && model["zoo"]) P.fail(model, "model: give 'file' or 'zoo', not both");
  if (model["file"]) {
    fs::path f = P.text(model["file"], "model.file");
    if (f.is_relative() && !exists_quietly(f)) f = dir / f;
    if (!exists_quietly(f)) P.fail(model["file"], "model file '", model["file"].Scalar(), "' does not exist");
    r.model_file = f.string();
  } else if (model["zoo"]) {
    r.zoo = P.text(model["zoo"], "model.zoo");
    if (!models::is_model_name(r.zoo))
      P.fail(model["zoo"], "unknown zoo model '", r.zoo, "'; valid: ", join(models::model_names()));
  } else {
    P.fail(model, "model: give 'file' or 'zoo'");
  }
  if (model["width"]) r.width = P.number(model["width"], "model.width");
  if (model["seed"]) r.seed = static_cast<uint64_t>(P.integer(model["seed"], "model.seed"));
  if (const auto t = model["train"]) {
    P.keys(t, "model.train", {"epochs", "lr", "limit"});
    if (t["epochs"]) r.train_epochs = static_cast<int>(P.integer(t["epochs"], "model.train.epochs"));
    if (t["lr"]) r.train_lr = P.number(t["lr"], "model.train.lr");
    if (t["limit"]) r.train_limit = P.integer(t["limit"], "model.train.limit");
  }

  if (const auto in = root["input"]) {
    if (!in.IsSequence() || in.size() == 0) P.fail(in, "input must be a shape such as [1, 1, 28, 28]");
    for (const auto& d : in) r.input_shape.push_back(P.integer(d, "input"));
  } else if (!r.zoo.empty()) {
    r.input_shape = models::make_model(r.zoo, models::ZooOptions().width(r.width)).input_shape;
  } else {
    TAILOR_FAIL(path, ": 'input' (e.g. [1, 3, 224, 224]) is required for a model file");
  }

  if (const auto d = root["data"]) {
    if (d.IsScalar()) {
      r.data = d.Scalar();
    } else {
      P.keys(d, "data", {"name", "eval_limit", "calibration_batches", "calibration_batch_size"});
      if (d["name"]) r.data = P.text(d["name"], "data.name");
      if (d["eval_limit"]) r.eval_limit = P.integer(d["eval_limit"], "data.eval_limit");
      if (d["calibration_batches"]) r.calibration_batches = P.integer(d["calibration_batches"], "data.calibration_batches");
      if (d["calibration_batch_size"])
        r.calibration_batch_size = P.integer(d["calibration_batch_size"], "data.calibration_batch_size");
    }
    if (r.data != "fashion-mnist" && r.data != "none")
      P.fail(d, "unknown data '", r.data, "'; valid: fashion-mnist, none (size and latency only)");
  }
  if (r.data == "none" && r.train_epochs > 0) P.fail(model["train"], "model.train needs data (data: fashion-mnist)");

  std::set<std::string> names;
  auto add_variant = [&](const YAML::Node& at, VariantSpec v) {
    if (!names.insert(v.name).second) P.fail(at, "two variants are named '", v.name, "'");
    if (r.data == "none")
      for (const auto& p : v.pipeline)
        if (p.needs.training_data || p.needs.labels)
          P.fail(at, "pass '", p.name, "' needs data (data: fashion-mnist): labelled images");
    r.variants.push_back(std::move(v));
  };
  if (const auto sweep = root["sweep"]) {
    if (!sweep.IsMap() || sweep.size() == 0) P.fail(sweep, "sweep must map axes to {choice: [passes]}");
    std::vector<std::vector<std::pair<std::string, std::vector<PassSpec>>>> axes;
    std::vector<YAML::Node> axis_nodes;
    for (const auto& axis : sweep) {
      const auto an = axis.first.as<std::string>();
      if (!axis.second.IsMap() || axis.second.size() == 0)
        P.fail(axis.second, "sweep axis '", an, "' must map choice names to lists of passes");
      std::vector<std::pair<std::string, std::vector<PassSpec>>> choices;
      for (const auto& c : axis.second)
        choices.emplace_back(P.variant_name(c.first, c.first.as<std::string>()),
                             P.pipeline(c.second, "choice '" + c.first.as<std::string>() + "' of axis '" + an + "'"));
      axes.push_back(std::move(choices));
      axis_nodes.push_back(axis.first);
    }
    std::vector<size_t> idx(axes.size(), 0);
    while (true) {
      VariantSpec v;
      for (size_t a = 0; a < axes.size(); ++a) {
        v.name += (a ? "-" : "") + axes[a][idx[a]].first;
        for (const auto& p : axes[a][idx[a]].second) v.pipeline.push_back(p);
      }
      if (!v.pipeline.empty()) add_variant(sweep, std::move(v));  // all-empty choices are the baseline itself
      size_t a = axes.size();
      while (a > 0 && ++idx[a - 1] == axes[a - 1].size()) idx[--a] = 0;
      if (a == 0) break;
    }
  }
  if (const auto vs = root["variants"]) {
    if (!vs.IsSequence()) P.fail(vs, "variants must be a list of {name, pipeline}");
    for (const auto& v : vs) {
      P.keys(v, "a variant", {"name", "pipeline"});
      if (!v["name"] || !v["pipeline"]) P.fail(v, "a variant needs 'name' and 'pipeline'");
      add_variant(v, {P.variant_name(v["name"], P.text(v["name"], "variant name")), P.pipeline(v["pipeline"], "pipeline")});
    }
  }
  if (r.variants.empty()) P.fail(root, "the recipe has no variants: give a 'sweep' or 'variants'");

  if (const auto p = root["profile"]) {
    P.keys(p, "profile", {"backends", "threads", "batch", "max_seconds", "rounds", "isa", "latency_tables"});
    if (const auto b = p["backends"]) {
      if (!b.IsSequence() || b.size() == 0) P.fail(b, "profile.backends must be a list, e.g. [onednn-cpu, libtorch-cpu]");
      r.backends.clear();
      const auto valid = backend_names();
      for (const auto& x : b) {
        const auto name = P.text(x, "backend");
        if (std::find(valid.begin(), valid.end(), name) == valid.end())
          P.fail(x, "unknown backend '", name, "'; valid backends: ", join(valid));
        const auto reason = make_backend(name)->unavailable_reason();
        if (!reason.empty()) P.fail(x, "backend '", name, "' cannot run here: ", reason);
        r.backends.push_back(name);
      }
    }
    if (p["threads"]) r.threads = static_cast<int>(P.integer(p["threads"], "profile.threads"));
    if (p["batch"]) r.batch = P.integer(p["batch"], "profile.batch");
    if (p["max_seconds"]) r.max_seconds = P.number(p["max_seconds"], "profile.max_seconds");
    if (p["isa"]) {
      r.isa = P.text(p["isa"], "profile.isa");
      if (std::find(isa_levels().begin(), isa_levels().end(), r.isa) == isa_levels().end())
        P.fail(p["isa"], "profile.isa: unknown ISA '", r.isa, "'; valid ISAs: ", join(isa_levels(), ", "));
    }
    if (p["rounds"]) {
      r.rounds = static_cast<int>(P.integer(p["rounds"], "profile.rounds"));
      if (r.rounds < 1) P.fail(p["rounds"], "profile.rounds must be at least 1, got ", r.rounds);
    }
    if (const auto t = p["latency_tables"]) {
      if (!t.IsMap()) P.fail(t, "profile.latency_tables must map backends to a table file or a list of them");
      for (const auto& kv : t) {
        const auto b = kv.first.as<std::string>();
        if (std::find(r.backends.begin(), r.backends.end(), b) == r.backends.end())
          P.fail(kv.first, "latency table for '", b, "', which the recipe does not profile (", join(r.backends), ")");
        std::vector<YAML::Node> files;
        if (kv.second.IsSequence())
          for (const auto& f : kv.second) files.push_back(f);
        else
          files.push_back(kv.second);
        std::set<std::string> dtypes;
        for (const auto& node : files) {
          fs::path f = P.text(node, "profile.latency_tables." + b);
          if (f.is_relative() && !exists_quietly(f)) f = dir / f;
          latency::Target target;
          try {
            target = latency::Model::load(f.string()).target();
          } catch (const Error& e) {
            P.fail(node, e.message());
          }
          if (target.backend != b) P.fail(node, "latency table '", f.string(), "' was built for ", target.backend, ", not ", b);
          if (!dtypes.insert(target.dtype).second)
            P.fail(node, "two latency tables for ", target.dtype, " variants on ", b);
          r.latency_tables[b].push_back(f.string());
        }
      }
    }
  }
  if (const auto g = root["goals"]) {
    P.keys(g, "goals", {"max_accuracy_drop", "latency_ms", "predicted_latency_ms"});
    if (g["max_accuracy_drop"]) {
      r.max_accuracy_drop = P.number(g["max_accuracy_drop"], "goals.max_accuracy_drop");
      if (r.data == "none") P.fail(g["max_accuracy_drop"], "an accuracy goal needs data (data: fashion-mnist)");
    }
    if (const auto l = g["latency_ms"]) {
      if (!l.IsMap()) P.fail(l, "goals.latency_ms must map backends to milliseconds");
      for (const auto& kv : l) {
        const auto b = kv.first.as<std::string>();
        if (std::find(r.backends.begin(), r.backends.end(), b) == r.backends.end())
          P.fail(kv.first, "latency goal for '", b, "', which the recipe does not profile (", join(r.backends), ")");
        r.latency_ms[b] = P.number(kv.second, "goals.latency_ms." + b);
      }
    }
    if (const auto l = g["predicted_latency_ms"]) {
      if (!l.IsMap()) P.fail(l, "goals.predicted_latency_ms must map backends to milliseconds");
      for (const auto& kv : l) {
        const auto b = kv.first.as<std::string>();
        if (!r.latency_tables.count(b))
          P.fail(kv.first, "a predicted-latency goal for '", b, "' needs profile.latency_tables." + b);
        r.predicted_latency_ms[b] = P.number(kv.second, "goals.predicted_latency_ms." + b);
      }
    }
  }
  if (const auto o = root["output"]) {
    if (o.IsMap()) {
      P.keys(o, "output", {"folder", "formats"});
      if (o["folder"]) r.output = P.text(o["folder"], "output.folder");
      if (const auto f = o["formats"]) {
        if (!f.IsSequence() || f.size() == 0) P.fail(f, "output.formats must be a list, e.g. [torchscript, onnx]");
        r.formats.clear();
        for (const auto& x : f) {
          const auto format = P.text(x, "output.formats");
          if (format != "torchscript" && format != "onnx") P.fail(x, "unknown format '", format, "'; valid: torchscript, onnx");
          if (format == "onnx" && !onnx_export_available())
            P.fail(x, "this tailor was built without ONNX export (install libonnx-dev and rebuild)");
          if (std::find(r.formats.begin(), r.formats.end(), format) == r.formats.end()) r.formats.push_back(format);
        }
        // TorchScript is what tailor itself profiles and resumes from; it is always written.
        if (std::find(r.formats.begin(), r.formats.end(), "torchscript") == r.formats.end())
          r.formats.insert(r.formats.begin(), "torchscript");
      }
    } else {
      r.output = P.text(o, "output");
    }
  }
  if (const auto p = root["placement"]) r.placement = placement(P, p, dir, r.isa);
  return r;
}

}  // namespace tailor::recipe
