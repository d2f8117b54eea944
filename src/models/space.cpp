// Architecture configurations and search spaces: text and JSON forms, sampling and mutation.
#include "tailor/models/space.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"
#include "tailor/core/error.hpp"
#include "tailor/core/text.hpp"

namespace tailor::models {
namespace {

int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t out = std::max(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (out < 0.9 * v) out += divisor;
  return out;
}

// Reads a positive integer at text[pos...], advancing pos; fails naming the token.
int64_t read_int(const std::string& text, size_t& pos, const std::string& token, const char* what) {
  size_t end = pos;
  while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
  TAILOR_CHECK(end > pos, "architecture stage '", token, "': expected the ", what, " as a number at '",
               text.substr(pos), "' (stages are {depth}x{width}k{kernel}[e{expand}][s{stride}], e.g. 2x64k3s2)");
  // Nine digits at most: every size of an architecture is far below that, and stoll cannot overflow.
  TAILOR_CHECK(end - pos <= 9, "architecture stage '", token, "': the ", what, " '", text.substr(pos, end - pos),
               "' is too large");
  const int64_t v = std::stoll(text.substr(pos, end - pos));
  TAILOR_CHECK(v > 0, "architecture stage '", token, "': the ", what, " must be positive");
  pos = end;
  return v;
}

StageConfig parse_stage(const std::string& token) {
  StageConfig s;
  size_t pos = 0;
  s.depth = read_int(token, pos, token, "depth");
  TAILOR_CHECK(pos < token.size() && token[pos] == 'x', "architecture stage '", token, "': expected 'x' after the depth");
  ++pos;
  s.width = read_int(token, pos, token, "width");
  std::set<char> seen;
  while (pos < token.size()) {
    const char key = token[pos++];
    TAILOR_CHECK(key == 'k' || key == 'e' || key == 's', "architecture stage '", token, "': unknown field '", key,
                 "' (k kernel, e expansion, s stride)");
    TAILOR_CHECK(seen.insert(key).second, "architecture stage '", token, "': field '", key, "' given twice");
    const int64_t v = read_int(token, pos, token, key == 'k' ? "kernel" : key == 'e' ? "expansion" : "stride");
    (key == 'k' ? s.kernel : key == 'e' ? s.expand : s.stride) = v;
  }
  TAILOR_CHECK(s.kernel % 2 == 1, "architecture stage '", token, "': the kernel must be odd (3, 5, 7), got ", s.kernel);
  return s;
}

void check_config(const ArchConfig& a, const std::string& text) {
  TAILOR_CHECK(a.family == "resnet" || a.family == "mobilenet", "architecture '", text, "': unknown family '", a.family,
               "'; the families are resnet, mobilenet");
  TAILOR_CHECK(!a.stages.empty(), "architecture '", text, "' has no stages");
  TAILOR_CHECK(a.resolution >= 8 && a.resolution <= 4096, "architecture '", text, "': resolution ", a.resolution,
               " is out of range [8, 4096]");
}

}  // namespace

std::string ArchConfig::str() const {
  std::string out = family + "@" + std::to_string(resolution) + ":" + std::to_string(stem) + ":";
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageConfig& s = stages[i];
    out += (i ? "," : "") + std::to_string(s.depth) + "x" + std::to_string(s.width) + "k" + std::to_string(s.kernel);
    if (s.expand != 1) out += "e" + std::to_string(s.expand);
    if (s.stride != 1) out += "s" + std::to_string(s.stride);
  }
  if (family == "mobilenet") out += ":" + std::to_string(head);
  return out;
}

ArchConfig ArchConfig::parse(const std::string& text) {
  ArchConfig a;
  const size_t at = text.find('@');
  TAILOR_CHECK(at != std::string::npos && at > 0, "architecture '", text,
               "': expected family@resolution:stem:stages[:head], e.g. ", resnet18_config().str());
  a.family = text.substr(0, at);
  const std::vector<std::string> parts = split(text.substr(at + 1), ':');
  TAILOR_CHECK(parts.size() == 3 || parts.size() == 4, "architecture '", text, "': expected resolution:stem:stages[:head] after '@', got ",
               parts.size(), " fields");
  auto number = [&](const std::string& s, const char* what) {
    size_t pos = 0;
    const int64_t v = read_int(s, pos, s, what);
    TAILOR_CHECK(pos == s.size(), "architecture '", text, "': the ", what, " '", s, "' is not a number");
    return v;
  };
  a.resolution = number(parts[0], "resolution");
  a.stem = number(parts[1], "stem width");
  for (const std::string& token : split(parts[2], ',')) a.stages.push_back(parse_stage(token));
  if (parts.size() == 4) {
    TAILOR_CHECK(a.family == "mobilenet", "architecture '", text, "': only the mobilenet family has a head width");
    a.head = number(parts[3], "head width");
  }
  check_config(a, text);
  return a;
}

std::string ArchConfig::to_json() const {
  nlohmann::json j;
  j["family"] = family;
  j["resolution"] = resolution;
  j["stem"] = stem;
  if (family == "mobilenet") j["head"] = head;
  for (const StageConfig& s : stages)
    j["stages"].push_back({{"depth", s.depth}, {"width", s.width}, {"kernel", s.kernel}, {"expand", s.expand},
                           {"stride", s.stride}});
  j["text"] = str();
  return j.dump();
}

ArchConfig ArchConfig::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
    ArchConfig a;
    a.family = j.at("family").get<std::string>();
    const char* const where = "architecture JSON";
    auto whole = [&](const nlohmann::json& o, const char* key) {
      return tailor::detail::json_whole(o.at(key), detail::concat(where, ": '", key, "'"));
    };
    a.resolution = whole(j, "resolution");
    a.stem = whole(j, "stem");
    a.head = tailor::detail::json_whole_or(j, "head", a.head, where);
    for (const auto& s : j.at("stages")) {
      StageConfig st;
      st.depth = whole(s, "depth");
      st.width = whole(s, "width");
      st.kernel = tailor::detail::json_whole_or(s, "kernel", 3, where);
      st.expand = tailor::detail::json_whole_or(s, "expand", 1, where);
      st.stride = tailor::detail::json_whole_or(s, "stride", 1, where);
      TAILOR_CHECK(st.depth > 0 && st.width > 0 && st.kernel > 0 && st.expand > 0 && st.stride > 0,
                   "architecture JSON: stage values must be positive");
      a.stages.push_back(st);
    }
    check_config(a, a.str());
    return a;
  } catch (const nlohmann::json::exception& e) {
    TAILOR_FAIL("architecture JSON: ", e.what());
  }
}

ArchConfig resnet18_config() { return ArchConfig::parse("resnet@224:64:2x64k3,2x128k3s2,2x256k3s2,2x512k3s2"); }
ArchConfig resnet50_config() {
  return ArchConfig::parse("resnet@224:64:3x64k3e4,4x128k3e4s2,6x256k3e4s2,3x512k3e4s2");
}
ArchConfig mobilenet_v2_config(double width) {
  // torchvision's inverted-residual settings: expansion, channels, depth, stride.
  const int64_t settings[][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  ArchConfig a;
  a.family = "mobilenet";
  a.stem = make_divisible(32 * width);
  a.head = make_divisible(1280 * std::max(1.0, width));
  for (const auto& s : settings) a.stages.push_back({s[2], make_divisible(s[1] * width), 3, s[0], s[3]});
  return a;
}

std::vector<std::string> SearchSpace::names() { return {"resnet", "mobilenet", "fashion-resnet", "fashion-mobilenet"}; }

SearchSpace SearchSpace::named(const std::string& name) {
  SearchSpace sp;
  sp.name = name;
  sp.resolutions = {64, 96, 128, 160};
  if (name == "resnet") {
    sp.family = "resnet";
    sp.stems = {16, 32, 48, 64};
    const int64_t base[] = {64, 128, 256, 512};
    for (int i = 0; i < 4; ++i) {
      Stage st;
      st.depths = {1, 2, 3, 4};
      for (double m : {0.25, 0.5, 0.75, 1.0}) st.widths.push_back(make_divisible(base[i] * m));
      st.kernels = {3, 5};
      st.expands = {1, 4};
      st.stride = i == 0 ? 1 : 2;
      sp.stages.push_back(st);
    }
    sp.heads = {1280};
    return sp;
  }
  if (name == "mobilenet") {
    sp.family = "mobilenet";
    sp.stems = {16, 24, 32, 40};
    const int64_t base[][2] = {{16, 1}, {24, 2}, {32, 2}, {64, 2}, {96, 1}, {160, 2}, {320, 1}};
    for (int i = 0; i < 7; ++i) {
      Stage st;
      st.depths = i == 0 || i == 6 ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2, 3, 4};
      for (double m : {0.5, 0.75, 1.0, 1.25}) st.widths.push_back(make_divisible(base[i][0] * m));
      st.kernels = {3, 5, 7};
      st.expands = i == 0 ? std::vector<int64_t>{1} : std::vector<int64_t>{3, 4, 6};
      st.stride = base[i][1];
      sp.stages.push_back(st);
    }
    sp.heads = {640, 960, 1280};
    return sp;
  }
  if (name == "fashion-resnet") {
    sp.family = "resnet";
    sp.resolutions = {28};
    sp.in_channels = 1;
    sp.classes = 10;
    sp.stems = {8, 12, 16};
    const std::vector<int64_t> widths[] = {{8, 12, 16}, {16, 24, 32}, {32, 48, 64}};
    for (int i = 0; i < 3; ++i) {
      Stage st;
      st.depths = {1, 2};
      st.widths = widths[i];
      st.kernels = {3, 5};
      st.expands = {1};
      st.stride = i == 0 ? 1 : 2;
      sp.stages.push_back(st);
    }
    sp.heads = {1280};
    return sp;
  }
  if (name == "fashion-mobilenet") {
    sp.family = "mobilenet";
    sp.resolutions = {28};
    sp.in_channels = 1;
    sp.classes = 10;
    sp.stems = {8, 16};
    const std::vector<int64_t> widths[] = {{8, 12, 16}, {16, 24, 32}, {32, 48, 64}};
    for (int i = 0; i < 3; ++i) {
      Stage st;
      st.depths = i == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 2, 3};
      st.widths = widths[i];
      st.kernels = {3, 5, 7};
      st.expands = {3, 4, 6};
      st.stride = i == 0 ? 1 : 2;
      sp.stages.push_back(st);
    }
    sp.heads = {128, 256};
    return sp;
  }
  TAILOR_FAIL("unknown search space '", name, "'; the spaces are: ", join(names(), ", "));
}

namespace {
template <typename T>
T pick(const std::vector<T>& choices, std::mt19937_64& rng) {
  return choices[std::uniform_int_distribution<size_t>(0, choices.size() - 1)(rng)];
}
}  // namespace

ArchConfig SearchSpace::sample(std::mt19937_64& rng) const {
  ArchConfig a;
  a.family = family;
  a.resolution = pick(resolutions, rng);
  a.stem = pick(stems, rng);
  a.head = pick(heads, rng);
  for (const Stage& st : stages)
    a.stages.push_back({pick(st.depths, rng), pick(st.widths, rng), pick(st.kernels, rng), pick(st.expands, rng), st.stride});
  return a;
}

ArchConfig SearchSpace::mutate(const ArchConfig& parent, std::mt19937_64& rng, double p) const {
  TAILOR_CHECK(contains(parent), "search space '", name, "' does not contain ", parent.str());
  std::bernoulli_distribution flip(p);
  for (int attempt = 0; attempt < 100; ++attempt) {
    ArchConfig a = parent;
    if (flip(rng)) a.resolution = pick(resolutions, rng);
    if (flip(rng)) a.stem = pick(stems, rng);
    if (flip(rng)) a.head = pick(heads, rng);
    for (size_t i = 0; i < stages.size(); ++i) {
      if (flip(rng)) a.stages[i].depth = pick(stages[i].depths, rng);
      if (flip(rng)) a.stages[i].width = pick(stages[i].widths, rng);
      if (flip(rng)) a.stages[i].kernel = pick(stages[i].kernels, rng);
      if (flip(rng)) a.stages[i].expand = pick(stages[i].expands, rng);
    }
    if (!(a == parent)) return a;
  }
  return sample(rng);  // a space with a single configuration
}

bool SearchSpace::contains(const ArchConfig& a) const { return why_not(a).empty(); }

namespace {
std::string choices_text(const std::vector<int64_t>& v) {
  std::string out;
  for (int64_t x : v) out += (out.empty() ? "" : ", ") + std::to_string(x);
  return out;
}
}  // namespace

std::string SearchSpace::why_not(const ArchConfig& a) const {
  auto in = [](const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  auto bad = [&](const std::string& part, int64_t value, const std::vector<int64_t>& choices) {
    return part + " " + std::to_string(value) + " is not one of " + choices_text(choices);
  };
  if (a.family != family) return "family '" + a.family + "' is not the space's '" + family + "'";
  if (a.stages.size() != stages.size())
    return std::to_string(a.stages.size()) + " stages, the space has " + std::to_string(stages.size());
  if (!in(resolutions, a.resolution)) return bad("resolution", a.resolution, resolutions);
  if (!in(stems, a.stem)) return bad("stem", a.stem, stems);
  if (family == "mobilenet" && !in(heads, a.head)) return bad("head", a.head, heads);
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageConfig& s = a.stages[i];
    const std::string at = "stage " + std::to_string(i + 1) + " ";
    if (!in(stages[i].depths, s.depth)) return bad(at + "depth", s.depth, stages[i].depths);
    if (!in(stages[i].widths, s.width)) return bad(at + "width", s.width, stages[i].widths);
    if (!in(stages[i].kernels, s.kernel)) return bad(at + "kernel", s.kernel, stages[i].kernels);
    if (!in(stages[i].expands, s.expand)) return bad(at + "expansion", s.expand, stages[i].expands);
    if (s.stride != stages[i].stride) return bad(at + "stride", s.stride, {stages[i].stride});
  }
  return "";
}

namespace {
ArchConfig extreme(const SearchSpace& sp, bool largest) {
  auto pick = [largest](const std::vector<int64_t>& v) {
    return largest ? *std::max_element(v.begin(), v.end()) : *std::min_element(v.begin(), v.end());
  };
  ArchConfig a;
  a.family = sp.family;
  a.resolution = pick(sp.resolutions);
  a.stem = pick(sp.stems);
  a.head = pick(sp.heads);
  for (const auto& st : sp.stages)
    a.stages.push_back({pick(st.depths), pick(st.widths), pick(st.kernels), pick(st.expands), st.stride});
  return a;
}
}  // namespace

std::string SearchSpace::to_json() const {
  nlohmann::json j;
  j["name"] = name;
  j["family"] = family;
  j["resolutions"] = resolutions;
  j["stems"] = stems;
  j["heads"] = heads;
  j["in_channels"] = in_channels;
  j["classes"] = classes;
  for (const Stage& st : stages)
    j["stages"].push_back({{"depths", st.depths}, {"widths", st.widths}, {"kernels", st.kernels},
                           {"expands", st.expands}, {"stride", st.stride}});
  return j.dump();
}

SearchSpace SearchSpace::from_json(const std::string& text) {
  SearchSpace sp;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    sp.name = j.at("name").get<std::string>();
    sp.family = j.at("family").get<std::string>();
    auto whole = [](const nlohmann::json& o, const char* key) {
      return tailor::detail::json_whole(o.at(key), detail::concat("search space JSON: '", key, "'"));
    };
    auto wholes = [](const nlohmann::json& o, const char* key) {
      return tailor::detail::json_wholes(o.at(key), detail::concat("search space JSON: '", key, "'"));
    };
    sp.resolutions = wholes(j, "resolutions");
    sp.stems = wholes(j, "stems");
    sp.heads = wholes(j, "heads");
    sp.in_channels = whole(j, "in_channels");
    sp.classes = whole(j, "classes");
    for (const auto& st : j.at("stages")) {
      Stage s;
      s.depths = wholes(st, "depths");
      s.widths = wholes(st, "widths");
      s.kernels = wholes(st, "kernels");
      s.expands = wholes(st, "expands");
      s.stride = whole(st, "stride");
      sp.stages.push_back(s);
    }
  } catch (const nlohmann::json::exception& e) {
    TAILOR_FAIL("search space JSON: ", e.what());
  }
  TAILOR_CHECK(sp.family == "resnet" || sp.family == "mobilenet", "search space JSON: unknown family '", sp.family,
               "' (resnet, mobilenet)");
  TAILOR_CHECK(!sp.stages.empty() && !sp.resolutions.empty() && !sp.stems.empty() && !sp.heads.empty(),
               "search space JSON: '", sp.name, "' has an empty list of choices");
  for (const Stage& st : sp.stages)
    TAILOR_CHECK(!st.depths.empty() && !st.widths.empty() && !st.kernels.empty() && !st.expands.empty(),
                 "search space JSON: '", sp.name, "' has a stage with an empty list of choices");
  // Choices become layer sizes: each must be positive and small enough to build (kernels odd, strides 1 or 2).
  auto positive = [&](const std::vector<int64_t>& v, const char* what, int64_t most) {
    for (int64_t x : v)
      TAILOR_CHECK(x > 0 && x <= most, "search space JSON: '", sp.name, "': ", what, " ", x, " is outside 1..", most);
  };
  positive(sp.resolutions, "resolution", 4096);
  positive(sp.stems, "stem width", 1 << 14);
  for (int64_t h : sp.heads)
    TAILOR_CHECK(h >= 0 && h <= (1 << 14), "search space JSON: '", sp.name, "': head width ", h, " is outside 0..16384");
  TAILOR_CHECK(sp.in_channels > 0 && sp.in_channels <= 1024 && sp.classes > 1 && sp.classes <= 1 << 20,
               "search space JSON: '", sp.name, "': ", sp.in_channels, " input channels and ", sp.classes,
               " classes are not a classification task");
  for (const Stage& st : sp.stages) {
    positive(st.depths, "depth", 64);
    positive(st.widths, "width", 1 << 14);
    positive(st.kernels, "kernel size", 15);
    positive(st.expands, "expansion ratio", 16);
    for (int64_t k : st.kernels)
      TAILOR_CHECK(k % 2 == 1, "search space JSON: '", sp.name, "': kernel size ", k, " is even (kernels are odd)");
    TAILOR_CHECK(st.stride == 1 || st.stride == 2, "search space JSON: '", sp.name, "': stride ", st.stride,
                 " (strides are 1 or 2)");
  }
  return sp;
}

ArchConfig SearchSpace::largest() const { return extreme(*this, true); }
ArchConfig SearchSpace::smallest() const { return extreme(*this, false); }
ZooOptions SearchSpace::zoo_options(uint64_t seed) const {
  return ZooOptions().in_channels(in_channels).num_classes(classes).seed(seed);
}

}  // namespace tailor::models
