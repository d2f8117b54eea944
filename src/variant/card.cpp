#include "tailor/variant/card.hpp"

#include <ctime>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"

#include "tailor/export/export.hpp"
#include "tailor/version.hpp"

namespace tailor {

using nlohmann::json;

void VariantCard::set_costs(const CostReport& costs) {
  input_shapes = costs.input_shapes;
  params = costs.params;
  macs = costs.macs;
  weight_bytes = costs.weight_bytes;
}

void VariantCard::add_profile(LatencyProfile profile) {
  std::string key = profile.backend;
  for (const auto& [k, q] : profiles)
    if (q.backend == profile.backend && q.threads == profile.threads && q.isa == profile.isa) {
      key = k;
      break;
    }
  if (profiles.count(key) && (profiles[key].threads != profile.threads || profiles[key].isa != profile.isa))
    key = profile.backend + ":" + std::to_string(profile.threads) + "t:" + profile.isa;
  profiles[key] = std::move(profile);
}

namespace {

json card_json(const VariantCard& c) {
  const json prov = json::parse(provenance_to_json(c.provenance));
  json profiles = json::object();
  for (const auto& [backend, p] : c.profiles) profiles[backend] = json::parse(p.to_json());
  json j = {{"name", c.name},     {"file", c.file},
            {"parent", c.parent}, {"provenance", prov},
            {"input_shapes", c.input_shapes},
            {"params", c.params}, {"macs", c.macs},
            {"weight_bytes", c.weight_bytes}, {"file_bytes", c.file_bytes},
            {"accuracy", c.accuracy ? json(*c.accuracy) : json(nullptr)},
            {"accuracy_data", c.accuracy_data},
            {"profiles", profiles}, {"flags", c.flags}};
  if (!c.predicted_ms.empty()) j["predicted_latency_ms"] = c.predicted_ms;
  if (!c.onnx_file.empty()) j["onnx_file"] = c.onnx_file;
  return j;
}

VariantCard card_from(const json& j, const std::string& where) {
  VariantCard c;
  try {
    c.name = j.at("name").get<std::string>();
    c.file = j.value("file", "");
    c.onnx_file = j.value("onnx_file", "");
    c.parent = j.value("parent", "");
    c.provenance = provenance_from_json(j.value("provenance", json::array()).dump());
    const std::string card = "variant card '" + c.name + "'";
    c.input_shapes = tailor::detail::json_shapes(j.value("input_shapes", json::array()), card + ": 'input_shapes'");
    c.params = tailor::detail::json_whole_or(j, "params", 0, card, 0);
    c.macs = tailor::detail::json_whole_or(j, "macs", 0, card, 0);
    c.weight_bytes = tailor::detail::json_whole_or(j, "weight_bytes", 0, card, 0);
    c.file_bytes = tailor::detail::json_whole_or(j, "file_bytes", 0, card, 0);
    if (j.contains("accuracy") && !j["accuracy"].is_null()) c.accuracy = j["accuracy"].get<double>();
    c.accuracy_data = j.value("accuracy_data", "");
    const json profiles = j.value("profiles", json::object());
    for (const auto& [backend, p] : profiles.items())
      c.profiles[backend] = LatencyProfile::from_json(p.dump());
    c.flags = j.value("flags", std::vector<std::string>{});
    c.predicted_ms = j.value("predicted_latency_ms", std::map<std::string, double>{});
  } catch (const json::exception& e) {
    TAILOR_FAIL(where, ": variant card is missing or mistypes a key: ", e.what());
  }
  return c;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

json parse_or_fail(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    TAILOR_FAIL(what, ": not valid JSON: ", e.what());
  }
}

}  // namespace

std::string VariantCard::to_json() const { return card_json(*this).dump(2); }

VariantCard VariantCard::from_json(const std::string& text) {
  return card_from(parse_or_fail(text, "variant card"), "variant card");
}

const VariantCard* Manifest::find(const std::string& name) const {
  for (const auto& v : variants)
    if (v.name == name) return &v;
  return nullptr;
}

void Manifest::upsert(VariantCard card) {
  for (auto& v : variants)
    if (v.name == card.name) {
      v = std::move(card);
      return;
    }
  variants.push_back(std::move(card));
}

std::string Manifest::to_json() const {
  json vs = json::array();
  for (const auto& v : variants) vs.push_back(card_json(v));
  json j = {{"format", "tailor-manifest/1"},
            {"tailor_version", tailor_version.empty() ? std::string(TAILOR_VERSION_STRING) : tailor_version},
            {"created", created.empty() ? utc_now() : created},
            {"variants", vs}};
  return j.dump(2);
}

Manifest Manifest::from_json(const std::string& text) {
  const json j = parse_or_fail(text, "manifest");
  Manifest m;
  TAILOR_CHECK(j.is_object() && j.contains("variants") && j["variants"].is_array(),
               "manifest: expected an object with a 'variants' array");
  m.tailor_version = j.value("tailor_version", "");
  m.created = j.value("created", "");
  for (size_t i = 0; i < j["variants"].size(); ++i)
    m.variants.push_back(card_from(j["variants"][i], "manifest variants[" + std::to_string(i) + "]"));
  return m;
}

void Manifest::save(const std::string& path) const { write_file_atomically(path, to_json() + "\n"); }

Manifest Manifest::load(const std::string& path) {
  std::ifstream in(path);
  TAILOR_CHECK(in.good(), "cannot read manifest '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const Error& e) {
    TAILOR_FAIL(path, ": ", e.what());
  }
}

}  // namespace tailor
