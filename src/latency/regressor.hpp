// Internal: the kernel-time regressor of the latency model, gradient-boosted trees from XGBoost's C API.
// Chosen over a linear model because kernel time is not smooth in its configuration (channel counts against
// SIMD blocks, kernels that switch implementation with the shape); trees fit those steps, and predicting log
// time per unit of work keeps a size outside the sampled range scaling linearly instead of saturating.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tailor::latency {

class Regressor {
 public:
  /// Trains on rows of `cols` features (row-major) against targets y.
  static std::unique_ptr<Regressor> train(const std::vector<float>& x, size_t cols, const std::vector<float>& y,
                                          uint64_t seed);
  /// The model as base64 of XGBoost's universal binary JSON; `where` names the table field in errors.
  std::string serialize() const;
  static std::unique_ptr<Regressor> deserialize(const std::string& base64, const std::string& where);
  /// Predicts rows (row-major, `cols` features each).
  std::vector<float> predict(const std::vector<float>& x, size_t cols) const;
  size_t samples() const { return samples_; }
  ~Regressor();
  Regressor(const Regressor&) = delete;
  Regressor& operator=(const Regressor&) = delete;

 private:
  Regressor() = default;
  void* booster_ = nullptr;
  size_t samples_ = 0;
  friend class Model;
};

}  // namespace tailor::latency
