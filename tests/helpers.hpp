// Shared by the test files: comparisons and the fixture manifest.
#pragma once

#include <fstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace tailor::test {

/// Largest absolute difference relative to the largest magnitude of `b`.
inline double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

/// The tensor itself, or the first element of a tuple (GoogLeNet's named tuple).
inline torch::Tensor first_tensor(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor();
  REQUIRE(v.isTuple());
  return v.toTupleRef().elements().at(0).toTensor();
}

/// The torchvision fixtures' manifest.json, written by tests/fixtures/make_fixtures.py.
inline nlohmann::json fixture_manifest() {
  std::ifstream in(std::string(TAILOR_FIXTURES_DIR) + "/manifest.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace tailor::test
