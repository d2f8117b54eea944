// tailor/runtime/isa.hpp: which x86 instruction sets this CPU can run, which one oneDNN kernels (onednn-cpu and
// LibTorch's own oneDNN convolutions) use in this process, and capping it, so that one machine can run and
// profile the kernels a smaller x86 device would run. The cap is process-wide and fixed once oneDNN makes its
// first kernel: set it first (set_isa_cap, or ONEDNN_MAX_CPU_ISA in the environment).
#pragma once

#include <string>
#include <vector>

namespace tailor {

/// The ISA levels oneDNN dispatches on, smallest first: sse41, avx, avx2, avx2_vnni, avx512_core,
/// avx512_core_vnni, avx512_core_bf16, avx512_core_amx.
const std::vector<std::string>& isa_levels();

/// The levels this CPU and OS can run, smallest first (empty on a CPU that is not x86-64).
std::vector<std::string> cpu_isas();

/// The level kernels use in this process: the CPU's best level that does not exceed the cap (set_isa_cap, else
/// ONEDNN_MAX_CPU_ISA or DNNL_MAX_CPU_ISA from the environment, as oneDNN reads them). Does not touch oneDNN.
std::string effective_isa();

/// The level oneDNN itself reports. Reading it fixes oneDNN's level for the process (as making a kernel does),
/// so call it after any set_isa_cap. Equal to effective_isa() unless the environment's cap is malformed.
std::string onednn_isa();

/// Caps the ISA for this process. Throws tailor::Error for an unknown name (listing the levels), for a level this
/// CPU cannot run (listing those it can), and when oneDNN has already fixed a different level because a kernel
/// was made (then set ONEDNN_MAX_CPU_ISA before starting the process). Setting the level in force is a no-op.
void set_isa_cap(const std::string& isa);

/// Whether int8 dot products on `isa` accumulate u8 x s8 pairs without the 16-bit saturation of pre-VNNI
/// instructions (vpmaddubsw): true for *_vnni, avx512_core_bf16 and avx512_core_amx. Without it, u8 activations
/// must stay below 128 (7 bits) for exact results.
bool isa_has_int8_dot(const std::string& isa);

/// Multiply-accumulates per cycle and core on `isa`: {fp32 FMAs, int8 MACs}, from the SIMD width and two vector
/// pipes per core (pre-VNNI int8 takes two multiplies per 32 pairs). For peak-efficiency figures.
struct IsaThroughput {
  double fp32_macs_per_cycle = 0;
  double int8_macs_per_cycle = 0;
};
IsaThroughput isa_throughput(const std::string& isa);

}  // namespace tailor
