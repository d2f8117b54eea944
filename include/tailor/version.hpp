// tailor/version.hpp: the package version, one place for CMake, Conan and code to read it from.
#pragma once

#define TAILOR_VERSION_MAJOR 0
#define TAILOR_VERSION_MINOR 1
#define TAILOR_VERSION_PATCH 0
#define TAILOR_VERSION_STRING "0.1.0"

namespace tailor {
/// The version of the tailor package this header belongs to, e.g. "0.1.0".
inline const char* version() { return TAILOR_VERSION_STRING; }
}  // namespace tailor
