// Compression recipes: parsing with positions, the resumable runner, goals and Pareto fronts, and the HTML
// report (see tailor/recipe/recipe.hpp).
#include "tailor/recipe/recipe.hpp"
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
#include "tailor/ir/analysis.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/train/train.hpp"
#include "tailor/version.hpp"

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

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
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
      for (const auto& x : n) parts.push_back(text(x, what));
      return join(parts, ";");
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
          for (const auto& spec : made->options().specs()) valid.push_back(spec.key);
          fail(kv.second, "pass '", p.name, "': ", e.message(), " (options of '", p.name, "': ", join(valid), ")");
        }
        p.options.emplace_back(key, value);
      }
    }
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

}  // namespace

Recipe parse_recipe(const std::string& path) {
  TAILOR_CHECK(fs::exists(path), "recipe '", path, "' does not exist");
  Parser P{path};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    TAILOR_FAIL(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
  }
  P.keys(root, "the recipe", {"name", "model", "input", "data", "sweep", "variants", "profile", "goals", "output"});
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
    if (f.is_relative() && !fs::exists(f)) f = dir / f;
    if (!fs::exists(f)) P.fail(model["file"], "model file '", model["file"].Scalar(), "' does not exist");
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
        if (p.name == "distill" || p.name == "finetune") P.fail(at, "pass '", p.name, "' needs data (data: fashion-mnist)");
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
    P.keys(p, "profile", {"backends", "threads", "batch", "max_seconds", "rounds", "isa"});
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
  }
  if (const auto g = root["goals"]) {
    P.keys(g, "goals", {"max_accuracy_drop", "latency_ms"});
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
  }
  if (root["output"]) r.output = P.text(root["output"], "output");
  return r;
}

// ------------------------------------------------------------------------------------------------ running

namespace {

const LatencyProfile* profile_of(const VariantCard& c, const std::string& backend) {
  const auto it = c.profiles.find(backend);
  return it == c.profiles.end() ? nullptr : &it->second;
}

bool meets_goals(const Recipe& r, const VariantCard& c, const VariantCard& base) {
  if (r.max_accuracy_drop && c.accuracy && base.accuracy &&
      100 * (*base.accuracy - *c.accuracy) > *r.max_accuracy_drop + 1e-9)
    return false;
  for (const auto& [b, budget] : r.latency_ms) {
    const auto* p = profile_of(c, b);
    if (!p || p->latency.p50_ms > budget) return false;
  }
  return true;
}

std::string fmt_ms(double v) {
  char b[32];
  std::snprintf(b, sizeof b, v < 1 ? "%.3f" : v < 10 ? "%.2f" : "%.1f", v);
  return b;
}

std::string human(double v) {
  const char* units[] = {"", "K", "M", "G"};
  int u = 0;
  while (std::abs(v) >= 1000 && u < 3) {
    v /= 1000;
    ++u;
  }
  char b[32];
  std::snprintf(b, sizeof b, u ? "%.2f%s" : "%.0f%s", v, units[u]);
  return b;
}

// A failed variant's card has no file and no sizes of its own: print a dash, not a zero.
std::string size_or_dash(const VariantCard& c, int64_t v, const char* unit) {
  return c.name == "baseline" || !c.file.empty() ? human(static_cast<double>(v)) + unit : std::string("-");
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace

std::vector<std::string> pareto_front(const Manifest& m, const std::string& backend) {
  std::vector<const VariantCard*> cards;
  for (const auto& c : m.variants)
    if (profile_of(c, backend)) cards.push_back(&c);
  std::vector<std::string> front;
  for (const auto* c : cards) {
    const double lat = profile_of(*c, backend)->latency.p50_ms;
    const double acc = c->accuracy.value_or(0);
    bool dominated = false;
    for (const auto* o : cards) {
      if (o == c) continue;
      const double ol = profile_of(*o, backend)->latency.p50_ms, oa = o->accuracy.value_or(0);
      if (ol <= lat && oa >= acc && (ol < lat || oa > acc)) dominated = true;
    }
    if (!dominated) front.push_back(c->name);
  }
  std::sort(front.begin(), front.end(), [&](const std::string& a, const std::string& b) {
    return profile_of(*m.find(a), backend)->latency.p50_ms < profile_of(*m.find(b), backend)->latency.p50_ms;
  });
  return front;
}

std::string render_report(const Recipe& r, const Manifest& m, const std::vector<std::string>& kept) {
  const VariantCard* base = m.find("baseline");
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tailor report: " << html_escape(r.name)
    << "</title>\n<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
       "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "td:first-child,th:first-child{text-align:left}tr.kept{background:#e8f6e8}.flag{color:#b00;text-align:left;max-width:260px}td.pipe{text-align:left;max-width:340px;word-break:break-word}"
       "h2{margin-top:1.6em}.note{color:#555;font-size:14px}svg{background:#fff;border:1px solid #ddd}</style>"
       "</head><body>\n";
  h << "<h1>" << html_escape(r.name) << "</h1>\n<p class=\"note\">Recipe <code>" << html_escape(r.file)
    << "</code>, tailor " << m.tailor_version << ", " << m.created << ". Accuracy: top-1 on "
    << (base && base->accuracy ? html_escape(base->accuracy_data) : "no data") << ". Latency: p50 at batch "
    << r.batch << ", " << (r.threads > 0 ? std::to_string(r.threads) : "all") << " thread(s)"
    << (r.rounds > 1 ? ", the median of " + std::to_string(r.rounds) + " rounds in which all variants were timed in turn"
                     : std::string())
    << ".</p>\n";
  if (!r.latency_ms.empty() || r.max_accuracy_drop) {
    h << "<p><b>Goals:</b> ";
    if (r.max_accuracy_drop) h << "at most " << *r.max_accuracy_drop << " point(s) below the baseline; ";
    for (const auto& [b, v] : r.latency_ms) h << "p50 &le; " << v << " ms on " << b << "; ";
    h << (kept.empty() ? "<b>no variant meets them.</b>" : std::to_string(kept.size()) + " variant(s) meet them (green).")
      << "</p>\n";
  }
  h << "<table><tr><th>variant</th><th>pipeline</th><th>params</th><th>MACs</th><th>weights</th><th>top-1 %</th>";
  for (const auto& b : r.backends) h << "<th>" << b << " p50 ms</th>";
  h << "<th>flags</th></tr>\n";
  std::map<std::string, std::string> written;  // each variant's pipeline as the recipe wrote it
  for (const auto& v : r.variants) {
    std::string t;
    for (const auto& p : v.pipeline) t += (t.empty() ? "" : ", ") + p.str();
    written[v.name] = t;
  }
  for (const auto& c : m.variants) {
    const bool k = std::find(kept.begin(), kept.end(), c.name) != kept.end();
    std::string pipe = written.count(c.name) ? written[c.name] : "";
    if (c.name == "baseline")
      pipe = !r.zoo.empty() ? r.zoo + (r.train_epochs > 0 ? " trained " + std::to_string(r.train_epochs) + " epoch(s)" : "")
                            : r.model_file;
    auto count = [&](int64_t v, const char* unit) { return size_or_dash(c, v, unit); };
    h << "<tr" << (k ? " class=\"kept\"" : "") << "><td>" << html_escape(c.name) << "</td><td class=\"pipe\">"
      << html_escape(pipe) << "</td><td>" << count(c.params, "") << "</td><td>" << count(c.macs, "") << "</td><td>"
      << count(c.weight_bytes, "B") << "</td><td>" << (c.accuracy ? fmt_ms(100 * *c.accuracy) : "-") << "</td>";
    for (const auto& b : r.backends) {
      const auto* p = profile_of(c, b);
      h << "<td>" << (p ? fmt_ms(p->latency.p50_ms) : "-") << "</td>";
    }
    h << "<td class=\"flag\">" << html_escape(join(c.flags, "; ")) << "</td></tr>\n";
  }
  h << "</table>\n";
  for (const auto& b : r.backends) {
    const auto front = pareto_front(m, b);
    std::vector<const VariantCard*> pts;
    for (const auto& c : m.variants)
      if (profile_of(c, b)) pts.push_back(&c);
    if (pts.empty()) continue;
    double xmax = 0, ymin = 100, ymax = 0;
    for (const auto* c : pts) {
      xmax = std::max(xmax, profile_of(*c, b)->latency.p50_ms);
      const double a = 100 * c->accuracy.value_or(0);
      ymin = std::min(ymin, a);
      ymax = std::max(ymax, a);
    }
    // Budget and floor are drawn when they fall near the measured points; far away they would squash the
    // plot, so the caption gives them instead.
    std::string off_chart;
    const bool draw_budget = r.latency_ms.count(b) && r.latency_ms.at(b) <= 2 * xmax;
    if (draw_budget) xmax = std::max(xmax, r.latency_ms.at(b));
    else if (r.latency_ms.count(b)) off_chart += " Latency budget " + fmt_ms(r.latency_ms.at(b)) + " ms (off the chart).";
    double floor_acc = -1;
    if (r.max_accuracy_drop && base && base->accuracy) {
      const double f = 100 * *base->accuracy - *r.max_accuracy_drop;
      if (f >= ymin - std::max(2.0, ymax - ymin)) {
        floor_acc = f;
        ymin = std::min(ymin, floor_acc);
      } else {
        off_chart += " Accuracy floor " + fmt_ms(f) + "% (off the chart).";
      }
    }
    xmax *= 1.1;
    const double pad = std::max(0.5, (ymax - ymin) * 0.1);
    ymin -= pad;
    ymax += pad;
    const double W = 720, H = 420, L = 60, R = 20, T = 20, B = 50;
    auto X = [&](double v) { return L + (W - L - R) * v / xmax; };
    auto Y = [&](double v) { return T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin)); };
    h << "<h2>" << b << ": accuracy vs latency</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W
      << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H << "\" font-size=\"12\">\n";
    h << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>"
      << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>\n";
    for (int i = 0; i <= 5; ++i) {
      const double xv = xmax * i / 5, yv = ymin + (ymax - ymin) * i / 5;
      h << "<text x=\"" << X(xv) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << fmt_ms(xv) << "</text>"
        << "<text x=\"" << L - 6 << "\" y=\"" << Y(yv) + 4 << "\" text-anchor=\"end\">" << fmt_ms(yv) << "</text>\n";
    }
    h << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">p50 latency (ms), batch "
      << r.batch << "</text><text x=\"14\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 14 " << (T + H - B) / 2
      << ")\" text-anchor=\"middle\">top-1 %</text>\n";
    if (draw_budget)
      h << "<line x1=\"" << X(r.latency_ms.at(b)) << "\" y1=\"" << T << "\" x2=\"" << X(r.latency_ms.at(b)) << "\" y2=\""
        << H - B << "\" stroke=\"#c60\" stroke-dasharray=\"5,4\"/><text x=\"" << X(r.latency_ms.at(b)) - 4 << "\" y=\""
        << T + 12 << "\" text-anchor=\"end\" fill=\"#c60\">latency budget</text>\n";
    if (floor_acc >= 0)
      h << "<line x1=\"" << L << "\" y1=\"" << Y(floor_acc) << "\" x2=\"" << W - R << "\" y2=\"" << Y(floor_acc)
        << "\" stroke=\"#c60\" stroke-dasharray=\"5,4\"/><text x=\"" << W - R - 4 << "\" y=\"" << Y(floor_acc) - 4
        << "\" text-anchor=\"end\" fill=\"#c60\">accuracy floor</text>\n";
    std::string poly;
    for (const auto& n : front) {
      const auto* c = m.find(n);
      poly += std::to_string(X(profile_of(*c, b)->latency.p50_ms)) + "," + std::to_string(Y(100 * c->accuracy.value_or(0))) + " ";
    }
    h << "<polyline points=\"" << poly << "\" fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\"/>\n";
    // Variants of nearly equal latency and accuracy (e.g. fp32 and weight-only int4) sit on one spot: their
    // labels are stacked downwards instead of printed over each other.
    struct Label {
      double x0, x1, y;
    };
    std::vector<Label> labels;
    for (const auto* c : pts) {
      const bool on = std::find(front.begin(), front.end(), c->name) != front.end();
      const double x = X(profile_of(*c, b)->latency.p50_ms), y = Y(100 * c->accuracy.value_or(0));
      const double width = 7.0 * static_cast<double>(c->name.size());
      const bool left = x + 7 + width > W - R;
      const double x0 = left ? x - 7 - width : x + 7, x1 = x0 + width;
      double ly = y - 6;
      for (bool moved = true; moved;) {
        moved = false;
        for (const auto& l : labels)
          if (x0 < l.x1 + 4 && l.x0 < x1 + 4 && std::abs(l.y - ly) < 13) {
            ly = l.y + 14;
            moved = true;
          }
      }
      labels.push_back({x0, x1, ly});
      h << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"" << (on ? "#2a7" : "#888") << "\"/>"
        << "<text x=\"" << (left ? x - 7 : x + 7) << "\" y=\"" << ly << "\"" << (left ? " text-anchor=\"end\"" : "")
        << ">" << html_escape(c->name) << "</text>\n";
    }
    h << "</svg>\n<p class=\"note\">Green: the Pareto front on " << b << " (no other variant is both faster and more "
      << "accurate): " << html_escape(join(front)) << "." << off_chart << "</p>\n";
  }
  h << "<p class=\"note\">Variant files are in <code>variants/</code>; every card, with full latency profiles and "
       "provenance, is in <code>manifest.json</code>.</p>\n</body></html>\n";
  return h.str();
}

RunResult run_recipe(const Recipe& r, const RunOptions& opt) {
  const std::string out = !opt.output.empty() ? opt.output : !r.output.empty() ? r.output : "tailor-out/" + r.name;
  const fs::path variants_dir = fs::path(out) / "variants";
  fs::create_directories(variants_dir);
  const std::string manifest_path = (fs::path(out) / "manifest.json").string();
  const std::string steps_path = (fs::path(out) / ".tailor-steps.json").string();
  const bool log = !opt.quiet;
  // Before training or loading runs any kernel: oneDNN fixes its ISA with the first one.
  if (!r.isa.empty()) set_isa_cap(r.isa);
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  // What each finished step was computed from: a step is reused only when its key is unchanged.
  nlohmann::json steps = nlohmann::json::object();
  Manifest manifest;
  if (opt.resume && fs::exists(steps_path) && fs::exists(manifest_path)) {
    try {
      std::ifstream in(steps_path);
      steps = nlohmann::json::parse(in);
      manifest = Manifest::load(manifest_path);
    } catch (const std::exception&) {
      steps = nlohmann::json::object();
      manifest = Manifest{};
    }
  }
  manifest.tailor_version = std::string(version());
  {
    const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    manifest.created = b;
  }
  std::ostringstream base_key;
  base_key << r.model_file << "|" << r.zoo << "|" << r.width << "|" << r.train_epochs << "|" << r.train_lr << "|"
           << r.train_limit << "|" << r.seed << "|" << r.data << "|" << r.eval_limit << "|" << r.batch << "|"
           << r.threads << "|" << join(r.backends);
  if (!r.isa.empty()) base_key << "|isa=" << r.isa;
  if (!r.model_file.empty()) base_key << "|" << fs::file_size(r.model_file) << "|" << fs::last_write_time(r.model_file).time_since_epoch().count();

  const bool has_data = r.data == "fashion-mnist";
  data::Dataset test;
  std::vector<torch::Tensor> calibration, calibration_labels;
  if (has_data) {
    test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), r.eval_limit);
    const auto calib = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(),
                                                r.calibration_batches * r.calibration_batch_size);
    for (const auto& b : data::batches(calib, r.calibration_batch_size, false)) {
      calibration.push_back(b.images);
      calibration_labels.push_back(b.labels);
    }
  } else {
    torch::manual_seed(0);
    auto s = r.input_shape;
    s[0] = r.calibration_batch_size;
    for (int64_t i = 0; i < r.calibration_batches; ++i) calibration.push_back(torch::randn(s));
  }
  const int threads = r.threads > 0 ? r.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int64_t> shape = r.input_shape;
  shape[0] = r.batch;

  RunResult result;
  const size_t total = r.variants.size() + 1;
  size_t done = 0;
  auto finish_card = [&](GraphModuleImpl& m, VariantCard& card, const std::string& file) {
    torch::NoGradGuard g;
    m.eval();
    card.input_shapes = {r.input_shape};
    card.set_costs(analyze(m, {r.input_shape}));
    if (has_data) {
      card.accuracy = data::top1_accuracy([&](const at::Tensor& x) { return m.forward(x); }, test, 500);
      card.accuracy_data = "Fashion-MNIST test split (" + std::to_string(test.size()) + " images)";
    }
    save(m, file);
    card.file = fs::relative(file, out).string();
    card.file_bytes = static_cast<int64_t>(fs::file_size(file));
    for (const auto& b : r.backends) {
      ProfileOptions po;
      po.threads = threads;
      po.batches = {r.batch};
      po.max_seconds = r.max_seconds;
      po.node_runs = 3;
      po.isa = r.isa;
      card.profiles[b] = profile(m, b, shape, po);
    }
  };
  auto step_done = [&](const std::string& name, const std::string& key, const VariantCard& card) {
    manifest.upsert(card);
    manifest.save(manifest_path);
    steps[name] = key;
    write_file_atomically(steps_path, steps.dump(2));
    ++done;
    if (log) {
      const double el = elapsed();
      std::fprintf(stderr, "[%zu/%zu] %s: %s%s; %.0f s elapsed, ~%.0f s left\n", done, total, name.c_str(),
                   card.accuracy ? ("top-1 " + fmt_ms(100 * *card.accuracy) + "%, ").c_str() : "",
                   [&] {
                     std::string s;
                     for (const auto& [b, p] : card.profiles) s += (s.empty() ? "" : ", ") + b + " " + fmt_ms(p.latency.p50_ms) + " ms";
                     return s;
                   }().c_str(),
                   el, el / static_cast<double>(done) * static_cast<double>(total - done));
    }
  };
  auto reusable = [&](const std::string& name, const std::string& key) {
    const auto* card = manifest.find(name);
    return opt.resume && steps.contains(name) && steps[name] == key && card && !card->file.empty() &&
           fs::exists(fs::path(out) / card->file);
  };

  // ---- baseline
  const std::string base_file = (variants_dir / "baseline.pt").string();
  if (reusable("baseline", base_key.str())) {
    ++done;
    ++result.reused;
    if (log) std::fprintf(stderr, "[%zu/%zu] baseline: finished in an earlier run, reused\n", done, total);
  } else {
    GraphModule base{nullptr};
    if (!r.zoo.empty()) {
      base = models::capture_model(r.zoo, models::ZooOptions().width(r.width).seed(r.seed));
      if (r.train_epochs > 0) {
        if (log) std::fprintf(stderr, "training the baseline %s for %d epoch(s)\n", r.zoo.c_str(), r.train_epochs);
        const auto train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), r.train_limit);
        train::TrainOptions to;
        to.epochs = r.train_epochs;
        to.lr = r.train_lr;
        to.seed = r.seed;
        to.progress = log;
        train::finetune(base, train, nullptr, to);
      }
    } else {
      base = load(r.model_file);
    }
    VariantCard card;
    card.name = "baseline";
    finish_card(*base, card, base_file);
    step_done("baseline", base_key.str(), card);
  }
  const VariantCard base_card = *manifest.find("baseline");

  // ---- variants. A variant whose pipeline extends a finished variant's starts from that variant's model (its
  // parent): c50-int8 quantizes c50-fp32 instead of pruning and distilling again.
  std::vector<std::pair<std::string, std::vector<std::string>>> finished = {{"baseline", {}}};
  for (const auto& v : r.variants) {
    std::vector<PassSpec> passes = v.pipeline;
    std::vector<std::string> texts;
    for (auto& p : passes) {
      auto has = [&](const char* k) {
        return std::any_of(p.options.begin(), p.options.end(), [&](const auto& o) { return o.first == k; });
      };
      // Distill from the baseline unless told otherwise; keep channel counts at widths backends run fast.
      if (p.name == "distill" && !has("teacher")) p.options.emplace_back("teacher", base_file);
      if (p.name == "prune-channels" && !has("round_to")) p.options.emplace_back("round_to", "8");
      texts.push_back(p.str());
    }
    std::string text;
    for (const auto& t : texts) text += (text.empty() ? "" : ",") + t;
    const std::string key = base_key.str() + "|" + text;
    size_t parent_index = 0;
    for (size_t i = 0; i < finished.size(); ++i) {
      const auto& pt = finished[i].second;
      if (pt.size() < texts.size() && pt.size() > finished[parent_index].second.size() &&
          std::equal(pt.begin(), pt.end(), texts.begin()))
        parent_index = i;
    }
    const std::string parent_name = finished[parent_index].first;
    const size_t skip = finished[parent_index].second.size();
    if (reusable(v.name, key)) {
      finished.emplace_back(v.name, texts);
      ++done;
      ++result.reused;
      if (log) std::fprintf(stderr, "[%zu/%zu] %s: finished in an earlier run, reused\n", done, total, v.name.c_str());
      continue;
    }
    std::string rest;
    for (size_t i = skip; i < texts.size(); ++i) rest += (rest.empty() ? "" : ",") + texts[i];
    const VariantCard parent_card = *manifest.find(parent_name);
    if (log) std::fprintf(stderr, "%s: %s%s\n", v.name.c_str(), parent_name == "baseline" ? "" : (parent_name + " + ").c_str(), rest.c_str());
    VariantCard card;
    card.name = v.name;
    card.parent = parent_name;
    card.provenance = parent_card.provenance;
    const std::string file = (variants_dir / (v.name + ".pt")).string();
    try {
      GraphModule m = load((fs::path(out) / parent_card.file).string());
      PassContext ctx;
      ctx.input_shapes = {r.input_shape};
      ctx.calibration = calibration;
      ctx.calibration_labels = calibration_labels;
      ctx.quiet = !log;
      ctx.seed = r.seed;
      parse_pipeline(rest)->run(*m, ctx);
      for (const auto& rec : ctx.records) card.provenance.push_back(rec);
      finish_card(*m, card, file);
    } catch (const std::exception& e) {
      // One failed variant costs only itself: it gets a card that says why, a stale file of an earlier run is
      // removed so OUT never holds a model its card does not describe, and the next run retries it. Variants
      // extending it start from its nearest finished ancestor (and usually fail at the same pass, saying so).
      std::string why = e.what();
      if (const auto* te = dynamic_cast<const Error*>(&e)) why = te->message();
      if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) why = ce->what_without_backtrace();
      VariantCard failed;
      failed.name = v.name;
      failed.parent = parent_name;
      failed.provenance = parent_card.provenance;
      failed.input_shapes = {r.input_shape};
      failed.flags.push_back("failed: " + why);
      fs::remove(file);
      manifest.upsert(failed);
      manifest.save(manifest_path);
      steps.erase(v.name);
      write_file_atomically(steps_path, steps.dump(2));
      result.failed.emplace_back(v.name, why);
      ++done;
      if (log) std::fprintf(stderr, "[%zu/%zu] %s: FAILED (%s): %s\n", done, total, v.name.c_str(), r.file.c_str(), why.c_str());
      continue;
    }
    finished.emplace_back(v.name, texts);
    step_done(v.name, key, card);
  }

  // ---- latency compared fairly: the p50 of one model drifts between measurements minutes apart on a small shared
  // machine (0.095-0.156 ms for the same 0.1 ms model on the 2-core VM), so every variant is timed again in
  // interleaved rounds on each backend and the cards keep the median round; the flags below use these numbers.
  std::vector<VariantCard*> ran;
  std::vector<GraphModule> loaded;
  for (auto& c : manifest.variants)
    if (!c.file.empty()) {
      ran.push_back(&c);
      loaded.push_back(load((fs::path(out) / c.file).string()));
    }
  if (r.rounds > 1 && ran.size() > 1) {
    if (log) std::fprintf(stderr, "timing the %zu variants again in %d interleaved rounds per backend\n", ran.size(), r.rounds);
    std::vector<const GraphModuleImpl*> modules;
    for (const auto& m : loaded) modules.push_back(m.get());
    ProfileOptions po;
    po.threads = threads;
    po.max_seconds = r.max_seconds;
    po.isa = r.isa;
    for (const auto& b : r.backends) {
      const auto stats = time_interleaved(modules, b, shape, po, r.rounds);
      for (size_t i = 0; i < ran.size(); ++i) {
        auto it = ran[i]->profiles.find(b);
        if (it == ran[i]->profiles.end()) continue;
        it->second.latency = stats[i];
        for (auto& t : it->second.throughput)
          if (t.batch == r.batch) {
            t.p50_ms = stats[i].p50_ms;
            t.samples_per_s = 1000.0 * static_cast<double>(t.batch) / stats[i].p50_ms;
          }
      }
    }
  }

  // ---- flags, goals, Pareto front, report
  for (auto& c : manifest.variants) {
    std::vector<std::string> keep;
    for (const auto& f : c.flags)
      if (f.rfind("goal:", 0) != 0 && f.rfind("not faster", 0) != 0 && f.rfind("under 5%", 0) != 0)
        keep.push_back(f);
    c.flags = keep;
    const VariantCard* parent = c.parent.empty() || c.file.empty() ? nullptr : manifest.find(c.parent);
    for (const auto& b : r.backends) {
      const auto* mine = profile_of(c, b);
      const auto* theirs = parent ? profile_of(*parent, b) : nullptr;
      if (!mine || !theirs) continue;
      // Even timed side by side, two runs of one model differ by a few percent here: a speed-up under 5% is
      // reported as none rather than trusted.
      const double a = mine->latency.p50_ms, p = theirs->latency.p50_ms;
      const std::string vs = " (" + fmt_ms(a) + " vs " + fmt_ms(p) + " ms)";
      if (a >= p)
        c.flags.push_back("not faster than parent " + c.parent + " on " + b + vs);
      else if (a > 0.95 * p)
        c.flags.push_back("under 5% faster than parent " + c.parent + " on " + b + vs + ": within noise");
    }
    if (r.max_accuracy_drop && c.accuracy && base_card.accuracy &&
        100 * (*base_card.accuracy - *c.accuracy) > *r.max_accuracy_drop + 1e-9)
      c.flags.push_back("goal: " + fmt_ms(100 * (*base_card.accuracy - *c.accuracy)) + " points below the baseline");
    for (const auto& [b, budget] : r.latency_ms) {
      const auto* p = profile_of(c, b);
      if (p && p->latency.p50_ms > budget)
        c.flags.push_back("goal: over the " + fmt_ms(budget) + " ms budget on " + b);
    }
  }
  // Kept: variants meeting every goal and on the Pareto front of some profiled backend, fastest first on the
  // first backend.
  std::set<std::string> on_front;
  for (const auto& b : r.backends)
    for (const auto& n : pareto_front(manifest, b)) on_front.insert(n);
  for (const auto& c : manifest.variants)
    if (on_front.count(c.name) && meets_goals(r, c, base_card)) result.kept.push_back(c.name);
  const std::string first = r.backends.front();
  std::sort(result.kept.begin(), result.kept.end(), [&](const std::string& a, const std::string& b) {
    return profile_of(*manifest.find(a), first)->latency.p50_ms < profile_of(*manifest.find(b), first)->latency.p50_ms;
  });
  manifest.save(manifest_path);
  result.report = (fs::path(out) / "report.html").string();
  write_file_atomically(result.report, render_report(r, manifest, result.kept));

  std::ostringstream t;
  char line[512];
  std::snprintf(line, sizeof line, "%-22s %9s %9s %10s %8s", "variant", "params", "MACs", "weights", "top-1 %");
  t << line;
  for (const auto& b : r.backends) {
    std::snprintf(line, sizeof line, " %14s", (b + " ms").c_str());
    t << line;
  }
  t << "  notes\n";
  for (const auto& c : manifest.variants) {
    auto count = [&](int64_t v, const char* unit) { return size_or_dash(c, v, unit); };
    std::snprintf(line, sizeof line, "%-22s %9s %9s %10s %8s", c.name.c_str(), count(c.params, "").c_str(),
                  count(c.macs, "").c_str(), count(c.weight_bytes, "B").c_str(),
                  c.accuracy ? fmt_ms(100 * *c.accuracy).c_str() : "-");
    t << line;
    for (const auto& b : r.backends) {
      const auto* p = profile_of(c, b);
      std::snprintf(line, sizeof line, " %14s", p ? fmt_ms(p->latency.p50_ms).c_str() : "-");
      t << line;
    }
    const bool k = std::find(result.kept.begin(), result.kept.end(), c.name) != result.kept.end();
    t << "  " << (k ? "[kept] " : "") << join(c.flags, "; ") << "\n";
  }
  if (r.max_accuracy_drop || !r.latency_ms.empty())
    t << (result.kept.empty() ? "No variant meets the goals; everything measured is in the report.\n"
                              : "Meeting the goals, fastest first: " + join(result.kept) + "\n");
  else
    t << "Pareto front (" << first << "), fastest first: " << join(result.kept) << "\n";
  result.summary = t.str();
  result.manifest = manifest;
  return result;
}

}  // namespace tailor::recipe
