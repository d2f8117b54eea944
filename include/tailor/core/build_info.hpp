// tailor/core/build_info.hpp: what this tailor was built with (LibTorch, oneDNN, CUDA), for reports
// and for recording next to every measured number.
#pragma once

#include <string>

namespace tailor {

struct BuildInfo {
  std::string tailor_version;
  std::string torch_version;  ///< the LibTorch headers tailor was compiled against
  std::string onednn_version;  ///< empty when built without the oneDNN backend
  bool cuda = false;           ///< built with the CUDA backend
  std::string compiler;
};

BuildInfo build_info();

}  // namespace tailor
