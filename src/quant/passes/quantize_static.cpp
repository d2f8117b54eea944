// Pass quantize-static: calibrated post-training int8 (tailor::quant::quantize_static).
#include "tailor/pass/pass.hpp"
#include "tailor/quant/quant.hpp"

#include "report_stats.hpp"

namespace tailor::quant {
namespace {

class StaticQuantPass : public Pass {
 public:
  EnumOption observer{this, "observer", PtqOptions{}.observer.kind, {"minmax", "moving-minmax", "percentile", "mse", "entropy"},
                      "activation observer"};
  Option<double> percentile{this, "percentile", PtqOptions{}.observer.percentile, "percentile observer: which percentile"};
  EnumOption weight_method{this, "weight_method", PtqOptions{}.weight_method, {"minmax", "mse"}, "weight ranges"};
  Option<bool> per_channel{this, "per_channel", PtqOptions{}.weights.per_channel,
                           "one weight scale per output channel (false: one per layer)"};
  EnumOption reduce_range{this, "reduce_range", PtqOptions{}.activations.reduce_range ? "true" : "false",
                          {"true", "false", "auto"},
                          "7-bit activations: true (exact on every x86 CPU), false (8 bits: VNNI CPUs; requantized to "
                          "7 bits where compiled for one without), auto (as this process's ISA)"};
  Option<bool> equalize{this, "equalize", PtqOptions{}.equalize, "cross-layer equalization first"};
  Option<bool> bias_correction{this, "bias_correction", PtqOptions{}.bias_correction, "empirical bias correction"};
  ListOption<std::string> skip{this, "skip", PtqOptions{}.skip, "layers kept in float"};

  PassInfo info() const override {
    PassInfo i{"quantize-static", "calibrated post-training int8: u8 activations and s8 per-channel weights at conv/linear"};
    i.needs.calibration = true;
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    PtqOptions o;
    o.observer.kind = observer;
    o.observer.percentile = percentile;
    o.weight_method = weight_method;
    o.weights.per_channel = per_channel;
    o.activations.reduce_range = *reduce_range == "auto" ? !cpu_has_vnni() : *reduce_range == "true";
    o.equalize = equalize;
    o.bias_correction = bias_correction;
    o.skip = skip;
    o.progress = !context.quiet;
    const QuantReport r = quantize_static(module, context.calibration, o);
    detail::add_report_stats(context, r);
    return true;
  }
};
}  // namespace
}  // namespace tailor::quant

TAILOR_REGISTER_PASS(quantize_static, tailor::quant::StaticQuantPass);
