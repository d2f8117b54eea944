// ISA levels as oneDNN defines them: each level is a set of features, and a level is usable under a cap when
// its features are a subset of the cap's (so avx2_vnni is not under avx512_core, as in oneDNN).
#include "tailor/runtime/isa.hpp"

#include "tailor/core/text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include "tailor/core/error.hpp"

#if TAILOR_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace tailor {

namespace {

enum Feature : unsigned {
  kSse41 = 1u << 0,
  kAvx = 1u << 1,
  kAvx2 = 1u << 2,
  kVnni256 = 1u << 3,
  kAvx512 = 1u << 4,
  kVnni512 = 1u << 5,
  kBf16 = 1u << 6,
  kAmx = 1u << 7,
};

struct Level {
  const char* name;
  unsigned features;
};

constexpr unsigned kAvx2Set = kSse41 | kAvx | kAvx2;
constexpr unsigned kAvx512Set = kAvx2Set | kAvx512;
const Level kLevels[] = {
    {"sse41", kSse41},
    {"avx", kSse41 | kAvx},
    {"avx2", kAvx2Set},
    {"avx2_vnni", kAvx2Set | kVnni256},
    {"avx512_core", kAvx512Set},
    {"avx512_core_vnni", kAvx512Set | kVnni512},
    {"avx512_core_bf16", kAvx512Set | kVnni512 | kBf16},
    {"avx512_core_amx", kAvx512Set | kVnni512 | kBf16 | kAmx},
};

unsigned cpu_features() {
  unsigned f = 0;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.1")) f |= kSse41;
  if (__builtin_cpu_supports("avx")) f |= kAvx;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= kAvx2;
  if (__builtin_cpu_supports("avxvnni")) f |= kVnni256;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    f |= kAvx512;
  if (__builtin_cpu_supports("avx512vnni")) f |= kVnni512;
  if (__builtin_cpu_supports("avx512bf16")) f |= kBf16;
  if (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") && __builtin_cpu_supports("amx-bf16"))
    f |= kAmx;
#endif
  return f;
}

const Level* find_level(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const Level& l : kLevels)
    if (lower == l.name) return &l;
  return nullptr;
}


#if TAILOR_WITH_ONEDNN
// The C++ enum has no string form; the level names are oneDNN's own spellings.
const std::pair<const char*, dnnl::cpu_isa> kDnnlLevels[] = {
    {"sse41", dnnl::cpu_isa::sse41},
    {"avx", dnnl::cpu_isa::avx},
    {"avx2", dnnl::cpu_isa::avx2},
    {"avx2_vnni", dnnl::cpu_isa::avx2_vnni},
    {"avx512_core", dnnl::cpu_isa::avx512_core},
    {"avx512_core_vnni", dnnl::cpu_isa::avx512_core_vnni},
    {"avx512_core_bf16", dnnl::cpu_isa::avx512_core_bf16},
    {"avx512_core_amx", dnnl::cpu_isa::avx512_core_amx},
};
#endif

std::mutex cap_mutex;
std::string cap_set;  // by set_isa_cap

// The cap from the environment, as oneDNN reads it ("ALL" or unset: no cap).
const Level* environment_cap() {
  for (const char* var : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}) {
    const char* v = std::getenv(var);
    if (v && *v) return find_level(v);  // unknown values (ALL, typos) cap nothing, as in oneDNN
  }
  return nullptr;
}

}  // namespace

std::string onednn_isa() {
#if TAILOR_WITH_ONEDNN
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  for (const auto& [name, value] : kDnnlLevels)
    if (value == isa) return name;
  return "other";
#else
  return effective_isa();
#endif
}

const std::vector<std::string>& isa_levels() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Level& l : kLevels) n.push_back(l.name);
    return n;
  }();
  return names;
}

std::vector<std::string> cpu_isas() {
  const unsigned have = cpu_features();
  std::vector<std::string> out;
  for (const Level& l : kLevels)
    if ((l.features & have) == l.features) out.push_back(l.name);
  return out;
}

std::string effective_isa() {
  const Level* cap = nullptr;
  {
    std::lock_guard<std::mutex> lock(cap_mutex);
    if (!cap_set.empty()) cap = find_level(cap_set);
  }
  if (!cap) cap = environment_cap();
  const unsigned have = cpu_features();
  std::string best;
  for (const Level& l : kLevels)
    if ((l.features & have) == l.features && (!cap || (l.features & cap->features) == l.features)) best = l.name;
  return best.empty() ? "none" : best;
}

void set_isa_cap(const std::string& isa) {
  const Level* level = find_level(isa);
  TAILOR_CHECK(level, "unknown ISA '", isa, "'; valid ISAs: ", join(isa_levels()), " (this CPU runs ",
               join(cpu_isas()), ")");
  const auto runnable = cpu_isas();
  TAILOR_CHECK(std::find(runnable.begin(), runnable.end(), level->name) != runnable.end(), "ISA '", level->name,
               "' is not available on this CPU; it runs ", join(runnable));
#if TAILOR_WITH_ONEDNN
  const std::string upper = [&] {
    std::string u = level->name;
    std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
    return u;
  }();
  dnnl::cpu_isa want = dnnl::cpu_isa::all;
  for (const auto& [name, value] : kDnnlLevels)
    if (std::string(name) == level->name) want = value;
  // oneDNN 2.6 accepts a new cap silently once it has dispatched, and keeps the old level: read it back.
  try {
    dnnl::set_max_cpu_isa(want);
  } catch (const dnnl::error&) {
  }
  const std::string in_force = onednn_isa();
  TAILOR_CHECK(in_force == level->name, "cannot cap the ISA at ", level->name, ": oneDNN has already made kernels for ",
               in_force, " in this process; set ONEDNN_MAX_CPU_ISA=", upper,
               " in the environment, or cap the ISA before compiling or running anything");
#endif
  std::lock_guard<std::mutex> lock(cap_mutex);
  cap_set = level->name;
}

bool isa_has_int8_dot(const std::string& isa) {
  const Level* l = find_level(isa);
  return l && (l->features & (kVnni256 | kVnni512 | kAmx)) != 0;
}

IsaThroughput isa_throughput(const std::string& isa) {
  const Level* l = find_level(isa);
  if (!l) return {};
  const double lanes = (l->features & kAvx512) ? 16 : (l->features & kAvx) ? 8 : 4;
  const double fp32 = 2 * lanes;  // two FMA pipes
  // int8: 4 pairs per fp32 lane. VNNI: one vpdpbusd per 4 pairs; before VNNI: vpmaddubsw + vpmaddwd.
  double int8 = (l->features & (kVnni256 | kVnni512)) ? 2 * lanes * 4 : lanes * 4;
  if (l->features & kAmx) int8 = 1024;  // one TMUL per core: 1024 int8 MACs per cycle
  return {fp32, int8};
}

}  // namespace tailor
