// Device, link and objective descriptions (YAML files or inline key=value text), and the wire codecs.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include "tailor/core/text.hpp"
#include "tailor/place/place.hpp"
#include "tailor/runtime/backend.hpp"

namespace tailor::place {
namespace {

// One reader for the three description kinds: every error names the source and the key.
class Description {
 public:
  Description(const std::string& yaml, std::string where, const char* kind, const std::vector<std::string>& keys)
      : where_(std::move(where)) {
    try {
      root_ = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
      TAILOR_FAIL(where_, ": not valid YAML: ", e.msg);
    }
    TAILOR_CHECK(root_.IsMap(), where_, ": a ", kind, " description must be a map of keys (", join(keys), ")");
    for (const auto& kv : root_) {
      TAILOR_CHECK(kv.first.IsScalar(), where_, ": a ", kind, " description's keys are names (", join(keys), ")");
      const auto key = kv.first.Scalar();
      TAILOR_CHECK(std::find(keys.begin(), keys.end(), key) != keys.end(), where_, ": unknown ", kind, " key '", key,
                   "'; valid keys: ", join(keys));
    }
  }
  bool has(const char* key) const { return static_cast<bool>(root_[key]); }
  std::string text(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    try {
      return root_[key].as<std::string>();
    } catch (const YAML::Exception&) {
      TAILOR_FAIL(where_, ": '", key, "' must be a string");
    }
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    double v = 0;
    try {
      v = root_[key].as<double>();
    } catch (const YAML::Exception&) {
      TAILOR_FAIL(where_, ": '", key, "' must be a number, not '", root_[key].Scalar(), "'");
    }
    TAILOR_CHECK(std::isfinite(v), where_, ": '", key, "' must be a finite number");
    return v;
  }
  std::optional<double> optional_number(const char* key) const {
    if (!has(key)) return std::nullopt;
    return number(key, 0);
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
  YAML::Node root_;
};

// A file's text, or inline `k=v,k=v` text turned into a YAML map. A name that looks like a file but is missing is
// an error naming it, not an attempt at inline text.
std::pair<std::string, std::string> source_text(const std::string& file_or_inline, const char* kind) {
  TAILOR_CHECK(!file_or_inline.empty(), "empty ", kind, " description");
  std::error_code no_such_file;  // a name too long for a path is inline text, not an error
  if (file_or_inline.find('=') != std::string::npos && !std::filesystem::exists(file_or_inline, no_such_file)) {
    std::string yaml = "{";
    for (const auto& item : tailor::split(file_or_inline)) {
      const auto eq = item.find('=');
      TAILOR_CHECK(eq != std::string::npos, "inline ", kind, " description '", file_or_inline, "': '", item,
                   "' is not key=value");
      yaml += (yaml.size() > 1 ? ", " : "") + item.substr(0, eq) + ": " + item.substr(eq + 1);
    }
    return {yaml + "}", detail::concat(kind, " '", file_or_inline, "'")};
  }
  std::ifstream in(file_or_inline);
  TAILOR_CHECK(in.good(), "cannot read ", kind, " file '", file_or_inline, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return {ss.str(), file_or_inline};
}

std::string stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// 1000 -> "1000", 0.5 -> "0.5": names of inline links, used as folder names.
std::string compact(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

Device Device::parse(const std::string& yaml, const std::string& where) {
  Description d(yaml, where, "device", {"name", "backend", "threads", "isa", "table", "slowdown"});
  Device dev;
  dev.name = d.text("name", "");
  dev.backend = d.text("backend", dev.backend);
  try {
    make_backend(dev.backend);  // an unknown name fails listing the valid ones
  } catch (const Error& e) {
    TAILOR_FAIL(where, ": ", e.message());
  }
  const double threads = d.number("threads", 1);
  TAILOR_CHECK(threads >= 1 && threads <= 4096 && threads == std::floor(threads), where,
               ": 'threads' must be a whole number from 1 to 4096");
  dev.threads = static_cast<int>(threads);
  dev.isa = d.text("isa", "");
  dev.table = d.text("table", "");
  dev.slowdown = d.number("slowdown", 1);
  TAILOR_CHECK(dev.slowdown > 0, where, ": 'slowdown' must be > 0 (a factor on measured times)");
  return dev;
}

Device Device::load(const std::string& file_or_inline) {
  const auto [text, where] = source_text(file_or_inline, "device");
  Device d = parse(text, where);
  const bool is_inline = where.rfind("device '", 0) == 0;
  if (d.name.empty()) d.name = is_inline ? detail::concat(d.backend, "-", d.threads, "t") : stem(where);
  return d;
}

std::string Device::str() const {
  std::string s = detail::concat(name, ": ", backend, " ", threads, threads == 1 ? " thread" : " threads");
  if (!isa.empty()) s += " " + isa;
  if (modelled()) s += detail::concat(" (x", short_number(slowdown), " slowdown, modelled)");
  return s;
}

Link Link::parse(const std::string& yaml, const std::string& where) {
  Description d(yaml, where, "link", {"name", "uplink_mbps", "downlink_mbps", "rtt_ms", "jitter_ms", "source"});
  TAILOR_CHECK(d.has("uplink_mbps"), where, ": a link needs 'uplink_mbps'");
  Link l;
  l.name = d.text("name", "");
  l.uplink_mbps = d.number("uplink_mbps", 0);
  l.downlink_mbps = d.number("downlink_mbps", l.uplink_mbps);
  l.rtt_ms = d.number("rtt_ms", 0);
  l.jitter_ms = d.number("jitter_ms", 0);
  l.source = d.text("source", "");
  TAILOR_CHECK(l.uplink_mbps > 0, where, ": 'uplink_mbps' must be > 0, not ", l.uplink_mbps);
  TAILOR_CHECK(l.downlink_mbps > 0, where, ": 'downlink_mbps' must be > 0, not ", l.downlink_mbps);
  TAILOR_CHECK(l.rtt_ms >= 0, where, ": 'rtt_ms' must be >= 0, not ", l.rtt_ms);
  TAILOR_CHECK(l.jitter_ms >= 0, where, ": 'jitter_ms' must be >= 0, not ", l.jitter_ms);
  return l;
}

Link Link::load(const std::string& file_or_inline) {
  const auto [text, where] = source_text(file_or_inline, "link");
  Link l = parse(text, where);
  if (l.name.empty())
    l.name = where.rfind("link '", 0) == 0 ? detail::concat(compact(l.uplink_mbps), "up-", compact(l.rtt_ms), "ms")
                                            : stem(where);
  return l;
}

std::string Link::str() const {
  return detail::concat(name, ": up ", short_number(uplink_mbps), " Mbit/s, down ", short_number(downlink_mbps),
                        " Mbit/s, RTT ", short_number(rtt_ms), " ms",
                        jitter_ms > 0 ? " +- " + short_number(jitter_ms) + " ms" : "");
}

const char* to_string(Codec codec) {
  switch (codec) {
    case Codec::Fp16: return "fp16";
    case Codec::Int8: return "int8";
    default: return "none";
  }
}

Codec codec_from_string(const std::string& text) {
  if (text == "none" || text.empty()) return Codec::None;
  if (text == "fp16") return Codec::Fp16;
  if (text == "int8") return Codec::Int8;
  TAILOR_FAIL("unknown codec '", text, "'; valid: none, fp16, int8");
}

int64_t wire_bytes(int64_t raw_bytes, const std::string& dtype, Codec codec) {
  if (dtype != "float32" || codec == Codec::None) return raw_bytes;
  const int64_t elements = raw_bytes / 4;
  return codec == Codec::Fp16 ? elements * 2 : elements + 8;  // int8: one byte each, plus scale and zero point
}

EncodedTensor encode(const torch::Tensor& x, Codec codec) {
  if (codec == Codec::None || x.scalar_type() != torch::kFloat) return {x, Codec::None};
  if (codec == Codec::Fp16) return {x.to(torch::kHalf), Codec::Fp16};
  // Asymmetric uint8 over the tensor's range, as a sender would encode it with no calibration.
  const double lo = std::min(0.0, x.min().item<double>()), hi = std::max(0.0, x.max().item<double>());
  const double scale = hi > lo ? (hi - lo) / 255.0 : 1.0;
  const auto zero_point = static_cast<int64_t>(std::nearbyint(-lo / scale));
  return {torch::quantize_per_tensor(x, scale, zero_point, torch::kQUInt8).int_repr(), Codec::Int8, scale, zero_point};
}

torch::Tensor decode(const EncodedTensor& e) {
  switch (e.codec) {
    case Codec::None: return e.data;
    case Codec::Fp16: return e.data.to(torch::kFloat);
    case Codec::Int8:
      TAILOR_CHECK(e.data.scalar_type() == torch::kByte, "an int8-coded tensor must hold uint8 data, not ",
                   e.data.scalar_type());
      TAILOR_CHECK(e.scale > 0 && std::isfinite(e.scale) && e.zero_point >= 0 && e.zero_point <= 255,
                   "an int8-coded tensor needs a positive finite scale and a zero point in [0, 255] (got ", e.scale,
                   ", ", e.zero_point, ")");
      return torch::_make_per_tensor_quantized_tensor(e.data, e.scale, e.zero_point).dequantize();
  }
  return e.data;
}

torch::Tensor through_codec(const torch::Tensor& x, Codec codec) { return decode(encode(x, codec)); }

Objective Objective::parse(const std::string& yaml, const std::string& where) {
  Description d(yaml, where, "objective",
                {"percentile", "latency_ms", "throughput", "min_accuracy", "joules_per_mac", "joules_per_byte",
                 "codec"});
  Objective o;
  o.percentile = d.text("percentile", o.percentile);
  TAILOR_CHECK(o.percentile == "p50" || o.percentile == "p90", where, ": 'percentile' must be p50 or p90, not '",
               o.percentile, "'");
  o.latency_ms = d.optional_number("latency_ms");
  o.throughput = d.optional_number("throughput");
  o.min_accuracy = d.optional_number("min_accuracy");
  o.joules_per_mac = d.optional_number("joules_per_mac");
  o.joules_per_byte = d.optional_number("joules_per_byte");
  TAILOR_CHECK(!o.latency_ms || *o.latency_ms > 0, where, ": 'latency_ms' must be > 0");
  TAILOR_CHECK(!o.throughput || *o.throughput > 0, where, ": 'throughput' must be > 0 (requests per second)");
  TAILOR_CHECK(!o.min_accuracy || (*o.min_accuracy >= 0 && *o.min_accuracy <= 1), where,
               ": 'min_accuracy' is a fraction in [0, 1] (top-1 0.9 for 90%)");
  TAILOR_CHECK(!o.joules_per_mac || *o.joules_per_mac >= 0, where, ": 'joules_per_mac' must be >= 0");
  TAILOR_CHECK(!o.joules_per_byte || *o.joules_per_byte >= 0, where, ": 'joules_per_byte' must be >= 0");
  try {
    o.codec = codec_from_string(d.text("codec", "none"));
  } catch (const Error& e) {
    TAILOR_FAIL(where, ": ", e.message());
  }
  return o;
}

Objective Objective::load(const std::string& file_or_inline) {
  const auto [text, where] = source_text(file_or_inline, "objective");
  return parse(text, where);
}

}  // namespace tailor::place
