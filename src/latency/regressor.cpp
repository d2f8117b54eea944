// The kernel-time regressor: XGBoost boosted trees, trained and queried through the C API.
#include "regressor.hpp"

#include <cmath>

#include <xgboost/c_api.h>

#include "tailor/core/error.hpp"

namespace tailor::latency {
namespace {

void check(int status, const char* what) {
  TAILOR_CHECK(status == 0, "latency model: could not ", what, ": ", XGBGetLastError());
}

struct Matrix {
  DMatrixHandle h = nullptr;
  Matrix(const std::vector<float>& x, size_t cols) {
    check(XGDMatrixCreateFromMat(x.data(), x.size() / cols, cols, NAN, &h), "create a feature matrix");
  }
  ~Matrix() {
    if (h) XGDMatrixFree(h);
  }
};

const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const char* data, size_t n) {
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint8_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint8_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= static_cast<uint8_t>(data[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& where) {
  int table[256];
  for (int& t : table) t = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = i;
  TAILOR_CHECK(text.size() % 4 == 0, where, ": not base64 (length ", text.size(), " is not a multiple of 4)");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        ++pad;
        v <<= 6;
        continue;
      }
      const int d = table[static_cast<uint8_t>(c)];
      TAILOR_CHECK(d >= 0 && pad == 0, where, ": not base64 (character ", i + j, ")");
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 255);
    if (pad < 2) out += static_cast<char>((v >> 8) & 255);
    if (pad < 1) out += static_cast<char>(v & 255);
  }
  return out;
}

}  // namespace

std::unique_ptr<Regressor> Regressor::train(const std::vector<float>& x, size_t cols, const std::vector<float>& y,
                                            uint64_t seed) {
  TAILOR_INTERNAL_ASSERT(cols > 0 && x.size() == y.size() * cols, "regressor rows and targets disagree");
  Matrix m(x, cols);
  check(XGDMatrixSetFloatInfo(m.h, "label", y.data(), y.size()), "set the training targets");
  std::unique_ptr<Regressor> r(new Regressor());
  r->samples_ = y.size();
  BoosterHandle b = nullptr;
  check(XGBoosterCreate(&m.h, 1, &b), "create a booster");
  r->booster_ = b;
  const std::string seed_text = std::to_string(seed % 2147483647);
  double mean = 0;
  for (float v : y) mean += v;
  const std::string base = std::to_string(mean / static_cast<double>(y.size()));
  // Small data: shallow trees, shrinkage and subsampling against overfitting one noisy measurement; one thread,
  // so that training never competes with a measurement and results repeat exactly.
  const std::pair<const char*, const char*> params[] = {
      {"objective", "reg:squarederror"}, {"tree_method", "hist"}, {"max_depth", "6"}, {"eta", "0.1"},
      {"subsample", "0.8"}, {"colsample_bytree", "0.9"}, {"min_child_weight", "2"}, {"nthread", "1"},
      {"verbosity", "0"}, {"seed", seed_text.c_str()}, {"base_score", base.c_str()}};
  for (const auto& [k, v] : params) check(XGBoosterSetParam(b, k, v), "set a booster parameter");
  const int rounds = y.size() < 50 ? 60 : 200;
  for (int i = 0; i < rounds; ++i) check(XGBoosterUpdateOneIter(b, i, m.h), "train the booster");
  return r;
}

std::vector<float> Regressor::predict(const std::vector<float>& x, size_t cols) const {
  if (x.empty()) return {};
  Matrix m(x, cols);
  bst_ulong n = 0;
  const float* out = nullptr;
  check(XGBoosterPredict(booster_, m.h, 0, 0, 0, &n, &out), "predict");
  return std::vector<float>(out, out + n);
}

std::string Regressor::serialize() const {
  bst_ulong n = 0;
  const char* data = nullptr;
  check(XGBoosterSaveModelToBuffer(booster_, R"({"format": "ubj"})", &n, &data), "save a booster");
  return base64_encode(data, n);
}

std::unique_ptr<Regressor> Regressor::deserialize(const std::string& base64, const std::string& where) {
  const std::string bytes = base64_decode(base64, where);
  std::unique_ptr<Regressor> r(new Regressor());
  BoosterHandle b = nullptr;
  check(XGBoosterCreate(nullptr, 0, &b), "create a booster");
  r->booster_ = b;
  TAILOR_CHECK(XGBoosterLoadModelFromBuffer(b, bytes.data(), bytes.size()) == 0, where,
               ": not a valid regressor (", XGBGetLastError(), ")");
  XGBoosterSetParam(b, "nthread", "1");
  return r;
}

Regressor::~Regressor() {
  if (booster_) XGBoosterFree(booster_);
}

}  // namespace tailor::latency
