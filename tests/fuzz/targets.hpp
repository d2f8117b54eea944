// tests/fuzz/targets.hpp: every reader tailor owns, as a fuzz target that takes arbitrary bytes. The libFuzzer
// binary (scripts/fuzz.sh) and the normal test suite (which replays the seed corpora and every past crash) call the
// same functions. A target's contract: bad bytes raise tailor::Error with a message; anything else escaping (another
// exception type, a failed round trip, a sanitizer report, a crash) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tailor::fuzz {

/// Raised when a target's own invariant fails (e.g. a parsed file that does not read back the same after writing).
struct InvariantBroken : std::logic_error {
  using std::logic_error::logic_error;
};

struct Target {
  const char* name;
  const char* reads;  ///< what the bytes are, for scripts/fuzz.sh --list
  void (*run)(const uint8_t* data, size_t size);
};

/// Every target, in a fixed order; the CLI `TAILOR_FUZZ_TARGET` names one.
const std::vector<Target>& targets();
const Target& target(const std::string& name);  ///< throws std::invalid_argument listing the names

/// Runs one input: returns "" when the target accepted it or refused it with tailor::Error, else what escaped
/// (the exception type and message). Sanitizer reports and crashes are not caught; they stop the process.
std::string run_one(const Target& target, const uint8_t* data, size_t size);

/// A folder that the targets writing files use (under /dev/shm when it exists); made once per process.
const std::string& scratch_dir();

}  // namespace tailor::fuzz
