// How the quantization passes report a run in their provenance record (private to src/quant/passes).
#pragma once

#include "tailor/pass/pass.hpp"
#include "tailor/quant/quant.hpp"

namespace tailor::quant::detail {

inline void add_report_stats(PassContext& context, const QuantReport& r) {
  context.stat("scheme", r.scheme);
  context.stat("layers_quantized", static_cast<int64_t>(r.layers.size()));
  if (r.calibration_batches) context.stat("calibration_batches", r.calibration_batches);
  if (r.equalized_pairs) context.stat("equalized_pairs", r.equalized_pairs);
  if (r.bias_corrected) context.stat("bias_corrected", r.bias_corrected);
  context.stat("report", r.str());
}

}  // namespace tailor::quant::detail
