// The libFuzzer entry points: TAILOR_FUZZ_TARGET names the target (scripts/fuzz.sh sets it). An input that lets
// anything but tailor::Error escape aborts, so libFuzzer saves it as a crash.
#include <cstdio>
#include <cstdlib>

#include "targets.hpp"

namespace {
const tailor::fuzz::Target* selected = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* name = std::getenv("TAILOR_FUZZ_TARGET");
  try {
    if (!name || !*name) throw std::invalid_argument("set TAILOR_FUZZ_TARGET to the target to fuzz");
    selected = &tailor::fuzz::target(name);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tailor_fuzz: %s\n", e.what());
    for (const auto& t : tailor::fuzz::targets()) std::fprintf(stderr, "  %-14s %s\n", t.name, t.reads);
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string escaped = tailor::fuzz::run_one(*selected, data, size);
  if (!escaped.empty()) {
    std::fprintf(stderr, "tailor_fuzz: target '%s': %s\n", selected->name, escaped.c_str());
    std::abort();
  }
  return 0;
}
