// The fuzz targets in the normal suite: every seed and every input that once crashed a reader (tests/fuzz/seeds,
// tests/fuzz/regressions, one folder per target) must be accepted or refused with tailor::Error, nothing else.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "fuzz/targets.hpp"
#include "tailor/core/error.hpp"
#include "tailor/models/space.hpp"

namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("fuzz seeds and past crashes: every reader refuses bad bytes with tailor::Error", "[fuzz]") {
  const fs::path root = fs::path(TAILOR_SOURCE_DIR) / "tests" / "fuzz";
  for (const auto& t : tailor::fuzz::targets()) {
    int seeds = 0;
    for (const char* folder : {"seeds", "regressions"}) {
      const fs::path dir = root / folder / t.name;
      if (!fs::exists(dir)) continue;
      for (const auto& f : fs::directory_iterator(dir)) {
        const auto b = bytes_of(f.path());
        INFO("target " << t.name << ", input " << f.path().string());
        CHECK(tailor::fuzz::run_one(t, b.data(), b.size()) == "");
        seeds += std::string(folder) == "seeds";
      }
    }
    INFO("target " << t.name);
    CHECK(seeds > 0);  // scripts/fuzz.sh starts from these; tests/fuzz/make_seeds.py writes them
  }
}

TEST_CASE("fuzz targets: empty and binary garbage inputs are refused cleanly", "[fuzz]") {
  const std::vector<std::vector<uint8_t>> inputs = {
      {}, {0}, {0xff, 0xfe, 0x00, 0x7b}, {'{', '}'}, {'[', ']'}, {'P', 'K', 3, 4, 0, 0}, std::vector<uint8_t>(300, '{')};
  for (const auto& t : tailor::fuzz::targets())
    for (const auto& in : inputs) {
      INFO("target " << t.name << ", " << in.size() << " bytes");
      CHECK(tailor::fuzz::run_one(t, in.data(), in.size()) == "");
    }
}

TEST_CASE("whole numbers in tailor's JSON files: a fraction or an out-of-range number is refused naming the field",
          "[fuzz]") {
  // nlohmann reads 2.5 as 2 and 1e300 with undefined behaviour; every reader checks its whole numbers instead.
  const fs::path seeds = fs::path(TAILOR_SOURCE_DIR) / "tests" / "fuzz" / "seeds";
  auto seed = [&](const char* file) {
    const auto b = bytes_of(seeds / file);
    return nlohmann::json::parse(b.begin(), b.end());
  };
  auto refusal = [](const char* target, const nlohmann::json& j) -> std::string {
    const std::string text = j.dump();
    try {
      tailor::fuzz::target(target).run(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    } catch (const tailor::Error& e) {
      return e.what();
    }
    return "accepted";
  };
  using Catch::Matchers::Contains;
  auto table = seed("latency-table/table.json");
  table["target"]["threads"] = 1.5;
  CHECK_THAT(refusal("latency-table", table), Contains("field 'target.threads'") && Contains("whole number"));
  table = seed("latency-table/table.json");
  table["models"][0]["kernels"] = 1e300;
  CHECK_THAT(refusal("latency-table", table), Contains("kernels") && Contains("whole number"));

  auto manifest = seed("manifest/tiny.json");
  manifest["variants"][0]["params"] = 47.5;
  CHECK_THAT(refusal("manifest", manifest), Contains("variant card 'tiny'") && Contains("'params'"));
  manifest = seed("manifest/tiny.json");
  manifest["variants"][0]["input_shapes"][0][2] = -6;
  CHECK_THAT(refusal("manifest", manifest), Contains("'input_shapes'") && Contains("out of range"));

  auto graph = seed("graph-json/cnn.pt.json");
  graph["values"][0]["shape"][1] = 1e300;
  CHECK_THAT(refusal("graph-json", graph), Contains("value shape") && Contains("whole number"));
  graph = seed("graph-json/cnn.pt.json");
  graph["version"] = 1.0;
  CHECK_THAT(refusal("graph-json", graph), Contains("'version'") && Contains("whole number"));

  auto plan = seed("plan/lan-1g.json");
  plan["chosen"]["placement"]["up_bytes"] = -144;
  CHECK_THAT(refusal("plan", plan), Contains("up_bytes") && Contains("out of range"));

  CHECK_THROWS_WITH(tailor::models::ArchConfig::from_json(
                        R"({"family": "resnet", "resolution": 28, "stem": 8, "stages": [{"depth": 2.5, "width": 8}]})"),
                    Contains("'depth' must be a whole number"));
}
