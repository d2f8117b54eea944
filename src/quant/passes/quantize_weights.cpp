// Pass quantize-weights: weight-only int8/int4 by round to nearest or GPTQ (tailor::quant::quantize_weights).
#include "tailor/pass/pass.hpp"
#include "tailor/quant/quant.hpp"

#include "report_stats.hpp"

namespace tailor::quant {
namespace {

class WeightQuantPass : public Pass {
 public:
  Option<int64_t> bits{this, "bits", WeightOnlyOptions{}.bits, "weight bits (8 or 4)"};
  Option<int64_t> group_size{this, "group_size", WeightOnlyOptions{}.group_size,
                             "weights per scale along a row; 0: one scale per output channel; -1: per channel at 8 "
                             "bits, 128 below"};
  EnumOption method{this, "method", WeightOnlyOptions{}.method, {"rtn", "gptq"}, "rtn (round to nearest) or gptq (needs calibration data)"};
  EnumOption symmetric{this, "symmetric", "auto", {"auto", "true", "false"},
                       "zero point 0: auto (symmetric at 8 bits, asymmetric below), true, false"};
  Option<double> damp{this, "damp", WeightOnlyOptions{}.damp, "GPTQ dampening"};
  ListOption<std::string> skip{this, "skip", WeightOnlyOptions{}.skip, "layers kept in float"};

  PassInfo info() const override {
    PassInfo i{"quantize-weights", "weight-only int8/int4 (group-wise) by round-to-nearest or GPTQ"};
    i.needs.calibration = *method == "gptq";
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    WeightOnlyOptions o;
    o.bits = static_cast<int>(*bits);
    o.group_size = group_size;
    o.method = method;
    if (*symmetric != "auto") o.symmetric = *symmetric == "true";
    o.damp = damp;
    o.skip = skip;
    o.progress = !context.quiet;
    const QuantReport r = quantize_weights(module, context.calibration, o);
    detail::add_report_stats(context, r);
    return true;
  }
};
}  // namespace
}  // namespace tailor::quant

TAILOR_REGISTER_PASS(quantize_weights, tailor::quant::WeightQuantPass);
