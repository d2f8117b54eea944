// Distillation losses: soft targets (KD), FitNets hints with adapters, attention transfer.
#include "tailor/train/train.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/export/export.hpp"
#include "tailor/capture/capture.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/train/distributed.hpp"

namespace tailor::train {

namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------------------------- losses

torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
  TAILOR_CHECK(temperature > 0, "distillation temperature must be positive, got ", temperature);
  TAILOR_CHECK(student_logits.dim() == 2 && student_logits.sizes() == teacher_logits.sizes(),
               "teacher and student outputs differ: the student returns ", student_logits.sizes(),
               " and the teacher ", teacher_logits.sizes(), "; distillation needs [batch, classes] from both");
  const auto log_ps = torch::log_softmax(student_logits / temperature, 1);
  const auto log_pt = torch::log_softmax(teacher_logits.detach() / temperature, 1);
  return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * (temperature * temperature);
}

torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const torch::Tensor& labels, double temperature, double alpha) {
  TAILOR_CHECK(alpha >= 0 && alpha <= 1, "distillation alpha must be in [0, 1], got ", alpha);
  auto loss = alpha * kd_loss(student_logits, teacher_logits, temperature);
  if (alpha < 1) loss = loss + (1 - alpha) * F::cross_entropy(student_logits, labels);
  return loss;
}

torch::Tensor attention_map(const torch::Tensor& feature, double p) {
  TAILOR_CHECK(feature.dim() >= 3, "attention transfer needs a [batch, channels, ...] feature, got ", feature.sizes());
  const auto a = feature.abs().pow(p).mean(1).flatten(1);
  return F::normalize(a, F::NormalizeFuncOptions().p(2).dim(1));
}

torch::Tensor attention_transfer_loss(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature,
                                      double p) {
  TAILOR_CHECK(student_feature.dim() == teacher_feature.dim() && student_feature.size(0) == teacher_feature.size(0),
               "attention transfer between features of shapes ", student_feature.sizes(), " and ",
               teacher_feature.sizes());
  torch::Tensor s = student_feature;
  if (s.dim() == 4 && s.sizes().slice(2) != teacher_feature.sizes().slice(2))
    s = F::interpolate(s, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>(teacher_feature.sizes().begin() + 2, teacher_feature.sizes().end()))
                              .mode(torch::kBilinear)
                              .align_corners(false));
  TAILOR_CHECK(s.sizes().slice(2) == teacher_feature.sizes().slice(2), "attention transfer: spatial sizes ",
               student_feature.sizes(), " and ", teacher_feature.sizes(), " cannot be matched");
  return (attention_map(s, p) - attention_map(teacher_feature.detach(), p)).pow(2).mean();
}

DistillationLossImpl::DistillationLossImpl(DistillOptions options) : options_(std::move(options)) {
  TAILOR_CHECK(options_.temperature > 0, "distillation temperature must be positive, got ", options_.temperature);
  TAILOR_CHECK(options_.alpha >= 0 && options_.alpha <= 1, "distillation alpha must be in [0, 1], got ",
               options_.alpha);
}

namespace {
const torch::Tensor& tap_of(const std::map<std::string, torch::Tensor>& taps, const std::string& name,
                            const char* who) {
  const auto it = taps.find(name);
  TAILOR_CHECK(it != taps.end(), "the ", who, " has no tap named '", name, "'");
  return it->second;
}

// Resizes a [B, C, H, W] adapter output to the teacher's spatial size (FitNets regressors on mismatched
// resolutions); other ranks must already agree.
torch::Tensor match_spatial(const torch::Tensor& x, const torch::Tensor& like) {
  if (x.dim() != 4 || x.sizes().slice(2) == like.sizes().slice(2)) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{like.size(2), like.size(3)})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}
}  // namespace

void DistillationLossImpl::init(const std::map<std::string, torch::Tensor>& student_taps,
                                const std::map<std::string, torch::Tensor>& teacher_taps) {
  if (initialized_) return;
  for (size_t i = 0; i < options_.hints.size(); ++i) {
    const auto& pair = options_.hints[i];
    const auto& s = tap_of(student_taps, pair.student, "student");
    const auto& t = tap_of(teacher_taps, pair.teacher, "teacher");
    TAILOR_CHECK(s.dim() == t.dim() && s.dim() >= 2 && s.size(0) == t.size(0), "hint '", pair.student, "' -> '",
                 pair.teacher, "': shapes ", s.sizes(), " and ", t.sizes(), " cannot be bridged by an adapter");
    torch::nn::AnyModule adapter;
    if (s.sizes() != t.sizes()) {
      const std::string name = "hint" + std::to_string(i);
      if (s.dim() == 4) {
        adapter = torch::nn::AnyModule(
            register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(s.size(1), t.size(1), 1))));
      } else {
        TAILOR_CHECK(s.sizes().slice(0, s.dim() - 1) == t.sizes().slice(0, t.dim() - 1), "hint '", pair.student,
                     "' -> '", pair.teacher, "': shapes ", s.sizes(), " and ", t.sizes(),
                     " differ outside the last dimension");
        adapter = torch::nn::AnyModule(register_module(name, torch::nn::Linear(s.size(-1), t.size(-1))));
      }
    }
    adapters_.push_back(std::move(adapter));
  }
  for (const auto& pair : options_.attention) {
    tap_of(student_taps, pair.student, "student");
    tap_of(teacher_taps, pair.teacher, "teacher");
  }
  initialized_ = true;
}

DistillationLossImpl::Terms DistillationLossImpl::forward(const torch::Tensor& student_logits,
                                                          const torch::Tensor& teacher_logits,
                                                          const torch::Tensor& labels,
                                                          const std::map<std::string, torch::Tensor>& student_taps,
                                                          const std::map<std::string, torch::Tensor>& teacher_taps) {
  if (!initialized_) init(student_taps, teacher_taps);
  Terms t;
  const auto zero = torch::zeros({}, student_logits.options());
  t.soft = options_.alpha > 0 ? kd_loss(student_logits, teacher_logits, options_.temperature) : zero;
  t.hard = options_.alpha < 1 ? F::cross_entropy(student_logits, labels) : zero;
  t.hint = zero;
  for (size_t i = 0; i < options_.hints.size(); ++i) {
    auto s = tap_of(student_taps, options_.hints[i].student, "student");
    const auto& target = tap_of(teacher_taps, options_.hints[i].teacher, "teacher").detach();
    if (!adapters_[i].is_empty()) s = match_spatial(adapters_[i].forward(s), target);
    t.hint = t.hint + F::mse_loss(s, target);
  }
  t.attention = zero;
  for (const auto& pair : options_.attention)
    t.attention = t.attention + attention_transfer_loss(tap_of(student_taps, pair.student, "student"),
                                                        tap_of(teacher_taps, pair.teacher, "teacher"));
  t.total = options_.alpha * t.soft + (1 - options_.alpha) * t.hard + options_.hint_weight * t.hint +
            options_.attention_weight * t.attention;
  return t;
}

std::vector<std::string> DistillationLossImpl::student_tap_names() const {
  std::vector<std::string> out;
  for (const auto& p : options_.hints) out.push_back(p.student);
  for (const auto& p : options_.attention) out.push_back(p.student);
  return out;
}

std::vector<std::string> DistillationLossImpl::teacher_tap_names() const {
  std::vector<std::string> out;
  for (const auto& p : options_.hints) out.push_back(p.teacher);
  for (const auto& p : options_.attention) out.push_back(p.teacher);
  return out;
}

}  // namespace tailor::train
