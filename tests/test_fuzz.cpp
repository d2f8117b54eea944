// The fuzz targets in the normal suite: every seed and every input that once crashed a reader (tests/fuzz/seeds,
// tests/fuzz/regressions, one folder per target) must be accepted or refused with tailor::Error, nothing else.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "fuzz/targets.hpp"

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
