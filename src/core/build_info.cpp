#include "tailor/core/build_info.hpp"

#include <torch/version.h>

#include "tailor/version.hpp"

#if TAILOR_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace tailor {

BuildInfo build_info() {
  BuildInfo info;
  info.tailor_version = version();
  info.torch_version = TORCH_VERSION;
#if TAILOR_WITH_ONEDNN
  const dnnl_version_t* v = dnnl_version();
  info.onednn_version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
#endif
  info.cuda = TAILOR_WITH_CUDA != 0;
#if defined(__clang__)
  info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  info.compiler = "gcc " __VERSION__;
#endif
  return info;
}

}  // namespace tailor
