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

namespace {

// XGBoost's UBJSON reader trusts the lengths inside the bytes (a damaged length asks for gigabytes, then reads past
// the buffer), so the structure is walked here first: every length and count must fit in what is left.
class UbjsonCheck {
 public:
  explicit UbjsonCheck(const std::string& bytes) : b_(bytes) {}
  std::string why() {
    try {
      value(0);
      if (at_ != b_.size()) return std::to_string(b_.size() - at_) + " bytes after the end of the model";
      return "";
    } catch (const std::string& reason) {
      return reason + " at byte " + std::to_string(at_);
    }
  }

 private:
  const std::string& b_;
  size_t at_ = 0;

  uint8_t next() {
    if (at_ >= b_.size()) throw std::string("truncated");
    return static_cast<uint8_t>(b_[at_++]);
  }
  void skip(uint64_t n) {
    if (n > b_.size() - at_) throw std::string("a length of " + std::to_string(n) + " past the end");
    at_ += n;
  }
  static int size_of(uint8_t marker) {
    switch (marker) {
      case 'Z': case 'N': case 'T': case 'F': return 0;
      case 'i': case 'U': case 'C': return 1;
      case 'I': return 2;
      case 'l': case 'd': return 4;
      case 'L': case 'D': return 8;
      default: return -1;
    }
  }
  uint64_t length(uint8_t marker) {
    const int n = size_of(marker);
    if (marker != 'i' && marker != 'U' && marker != 'I' && marker != 'l' && marker != 'L')
      throw std::string("a length with marker ") + std::to_string(marker);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | next();
    if (n < 8 && marker != 'U' && (v >> (8 * n - 1)) != 0) throw std::string("a negative length");
    if ((v >> 63) != 0) throw std::string("a negative length");
    return v;
  }
  void typed(uint8_t marker, int depth) {
    if (marker == 'S' || marker == 'H') return skip(length(next()));
    if (marker == '[' || marker == '{') return container(marker, depth + 1);
    const int n = size_of(marker);
    if (n < 0) throw std::string("unknown marker ") + std::to_string(marker);
    skip(static_cast<uint64_t>(n));
  }
  void value(int depth) { typed(next(), depth); }
  void container(uint8_t open, int depth) {
    if (depth > 64) throw std::string("nesting deeper than 64");
    const uint8_t close = open == '[' ? ']' : '}';
    int type = -1;
    if (at_ < b_.size() && b_[at_] == '$') {
      ++at_;
      type = next();
      if (at_ >= b_.size() || b_[at_] != '#') throw std::string("a typed container without a count");
    }
    if (at_ < b_.size() && b_[at_] == '#') {
      ++at_;
      const uint64_t count = length(next());
      const int each = type >= 0 ? size_of(static_cast<uint8_t>(type)) : -1;
      if (each > 0 && count > (b_.size() - at_) / static_cast<uint64_t>(each))
        throw std::string("a count of " + std::to_string(count) + " past the end");
      if (each <= 0 && count > b_.size() - at_) throw std::string("a count of " + std::to_string(count) + " past the end");
      for (uint64_t i = 0; i < count; ++i) {
        if (open == '{') skip(length(next()));
        if (type >= 0) typed(static_cast<uint8_t>(type), depth);
        else value(depth);
      }
      return;
    }
    while (true) {
      if (at_ >= b_.size()) throw std::string("truncated");
      if (static_cast<uint8_t>(b_[at_]) == close) {
        ++at_;
        return;
      }
      if (open == '{') skip(length(next()));
      value(depth);
    }
  }
};

}  // namespace

std::unique_ptr<Regressor> Regressor::deserialize(const std::string& base64, const std::string& where) {
  const std::string bytes = base64_decode(base64, where);
  const std::string damage = UbjsonCheck(bytes).why();
  TAILOR_CHECK(damage.empty(), where, ": not a valid regressor (the XGBoost model is damaged: ", damage, ")");
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
