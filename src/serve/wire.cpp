// Tensors to and from Open Inference Protocol messages (see wire.hpp).
#include "wire.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/core/text.hpp"
#include "tailor/ir/graph_module.hpp"

namespace tailor::serve::wire {
namespace {

struct DatatypeName {
  const char* name;
  c10::ScalarType type;
};
constexpr DatatypeName kDatatypes[] = {
    {"BOOL", c10::ScalarType::Bool},   {"UINT8", c10::ScalarType::Byte},  {"INT8", c10::ScalarType::Char},
    {"INT16", c10::ScalarType::Short}, {"INT32", c10::ScalarType::Int},   {"INT64", c10::ScalarType::Long},
    {"FP16", c10::ScalarType::Half},   {"FP32", c10::ScalarType::Float},  {"FP64", c10::ScalarType::Double},
    {"BF16", c10::ScalarType::BFloat16},
};

std::string valid_datatypes() {
  std::string out;
  for (const auto& d : kDatatypes) out += std::string(out.empty() ? "" : ", ") + d.name;
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

std::string status_name(int code) {
  static const char* const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                      "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? names[code] : "STATUS_" + std::to_string(code);
}

std::string datatype_of(c10::ScalarType type) {
  for (const auto& d : kDatatypes)
    if (d.type == type) return d.name;
  TAILOR_FAIL("tensors of ", type, " have no Open Inference Protocol datatype");
}

c10::ScalarType scalar_type_of(const std::string& datatype) {
  for (const auto& d : kDatatypes)
    if (datatype == d.name) return d.type;
  TAILOR_FAIL("unknown datatype '", datatype, "' (valid: ", valid_datatypes(), ")");
}

std::string datatype_of_dtype_name(const std::string& tailor_dtype) {
  static const std::pair<const char*, const char*> names[] = {
      {"float32", "FP32"}, {"float16", "FP16"}, {"bfloat16", "BF16"}, {"float64", "FP64"}, {"int64", "INT64"},
      {"int32", "INT32"},  {"int16", "INT16"},  {"int8", "INT8"},     {"uint8", "UINT8"},   {"bool", "BOOL"}};
  for (const auto& [from, to] : names)
    if (tailor_dtype == from) return to;
  return "FP32";  // the IR leaves dtype empty where analysis did not set it; models take float32
}

std::string raw_bytes(const torch::Tensor& x) {
  const auto c = x.cpu().contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

int64_t checked_numel(const std::vector<int64_t>& shape, int64_t max_elements, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    TAILOR_CHECK(d >= 0, what, ": negative dimension in shape ", shape_text(shape));
    TAILOR_CHECK(d == 0 || n <= max_elements / d, what, ": shape ", shape_text(shape), " is larger than the limit of ",
                 max_elements, " elements");
    n *= d;
  }
  return n;
}

torch::Tensor from_raw(const std::string& bytes, const std::string& datatype, const std::vector<int64_t>& shape,
                       const std::string& what) {
  const auto type = scalar_type_of(datatype);
  const int64_t element = static_cast<int64_t>(c10::elementSize(type));
  const int64_t n = checked_numel(shape, std::numeric_limits<int64_t>::max() / 16, what);
  TAILOR_CHECK(static_cast<int64_t>(bytes.size()) == n * element, what, ": ", bytes.size(),
               " bytes of raw contents, but ", datatype, " of shape ", shape_text(shape), " needs ", n * element);
  auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
  if (n) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

torch::Tensor from_contents(const inference::InferTensorContents& c, const std::string& datatype,
                            const std::vector<int64_t>& shape, const std::string& what) {
  const auto type = scalar_type_of(datatype);
  const int64_t n = checked_numel(shape, std::numeric_limits<int64_t>::max() / 16, what);
  auto fill = [&](const auto& field, c10::ScalarType stored) {
    TAILOR_CHECK(field.size() == n, what, ": ", field.size(), " values in contents, but shape ", shape_text(shape),
                 " has ", n);
    using V = typename std::decay_t<decltype(field)>::value_type;
    std::vector<V> copy(field.begin(), field.end());
    return torch::from_blob(copy.data(), shape, torch::TensorOptions().dtype(stored)).to(type).clone();
  };
  switch (type) {
    case c10::ScalarType::Float: return fill(c.fp32_contents(), c10::ScalarType::Float);
    case c10::ScalarType::Double: return fill(c.fp64_contents(), c10::ScalarType::Double);
    case c10::ScalarType::Long: return fill(c.int64_contents(), c10::ScalarType::Long);
    case c10::ScalarType::Int:
    case c10::ScalarType::Short:
    case c10::ScalarType::Char: return fill(c.int_contents(), c10::ScalarType::Int);
    case c10::ScalarType::Byte: {
      TAILOR_CHECK(c.uint_contents().size() == n, what, ": ", c.uint_contents().size(), " values in contents, but shape ",
                   shape_text(shape), " has ", n);
      std::vector<int64_t> copy(c.uint_contents().begin(), c.uint_contents().end());
      return torch::from_blob(copy.data(), shape, torch::kLong).to(type).clone();
    }
    case c10::ScalarType::Bool: {
      TAILOR_CHECK(c.bool_contents().size() == n, what, ": ", c.bool_contents().size(),
                   " values in contents, but shape ", shape_text(shape), " has ", n);
      std::vector<uint8_t> copy(c.bool_contents().begin(), c.bool_contents().end());
      return torch::from_blob(copy.data(), shape, torch::kByte).to(type).clone();
    }
    default: TAILOR_FAIL(what, ": ", datatype, " must be sent as raw contents");
  }
}

void put_codec(const place::EncodedTensor& e, google::protobuf::Map<std::string, inference::InferParameter>& p) {
  if (e.codec == place::Codec::None) return;
  p[kCodec].set_string_param(place::to_string(e.codec));
  if (e.codec == place::Codec::Int8) {
    char scale[40];
    std::snprintf(scale, sizeof scale, "%.17g", e.scale);
    p[kScale].set_string_param(scale);
    p[kZeroPoint].set_int64_param(e.zero_point);
  }
}

place::EncodedTensor get_codec(const google::protobuf::Map<std::string, inference::InferParameter>& p,
                               torch::Tensor data, const std::string& what) {
  place::EncodedTensor e{std::move(data)};
  const auto codec = p.find(kCodec);
  if (codec == p.end()) return e;
  TAILOR_CHECK(codec->second.parameter_choice_case() == inference::InferParameter::kStringParam, what,
               ": parameter '", kCodec, "' must be a string (fp16 or int8)");
  try {
    e.codec = place::codec_from_string(codec->second.string_param());
  } catch (const Error& err) {
    TAILOR_FAIL(what, ": ", err.message());
  }
  const auto expected = e.codec == place::Codec::Fp16 ? torch::kHalf : torch::kByte;
  TAILOR_CHECK(e.codec == place::Codec::None || e.data.scalar_type() == expected, what, ": codec ",
               place::to_string(e.codec), " needs ", datatype_of(expected), " data, not ",
               datatype_of(e.data.scalar_type()));
  if (e.codec == place::Codec::Int8) {
    const auto scale = p.find(kScale), zero = p.find(kZeroPoint);
    TAILOR_CHECK(scale != p.end() && scale->second.parameter_choice_case() == inference::InferParameter::kStringParam,
                 what, ": the int8 codec needs a '", kScale, "' string parameter");
    TAILOR_CHECK(zero != p.end() && zero->second.parameter_choice_case() == inference::InferParameter::kInt64Param,
                 what, ": the int8 codec needs a '", kZeroPoint, "' int64 parameter");
    char* end = nullptr;
    const std::string& text = scale->second.string_param();
    e.scale = std::strtod(text.c_str(), &end);
    TAILOR_CHECK(!text.empty() && end && *end == '\0' && std::isfinite(e.scale) && e.scale > 0, what, ": '", kScale,
                 "' must be a positive number, not '", text, "'");
    e.zero_point = zero->second.int64_param();
    TAILOR_CHECK(e.zero_point >= 0 && e.zero_point <= 255, what, ": '", kZeroPoint, "' must be in [0, 255], not ",
                 e.zero_point);
  }
  return e;
}

std::string decode_inputs(const TensorSpecs& in, const inference::ModelInferRequest& request, int64_t max_elements,
                          std::vector<c10::IValue>& inputs, std::vector<std::vector<int64_t>>& shapes) {
  if (static_cast<size_t>(request.inputs_size()) != in.names.size())
    return "expected " + std::to_string(in.names.size()) + " inputs (" + join(in.names) + "), got " +
           std::to_string(request.inputs_size());
  if (request.raw_input_contents_size() != 0 && request.raw_input_contents_size() != request.inputs_size())
    return std::to_string(request.raw_input_contents_size()) + " raw contents for " +
           std::to_string(request.inputs_size()) + " inputs";
  inputs.assign(in.names.size(), c10::IValue());
  shapes.assign(in.names.size(), {});
  std::vector<bool> seen(in.names.size(), false);
  for (int k = 0; k < request.inputs_size(); ++k) {
    const auto& t = request.inputs(k);
    const auto pos = std::find(in.names.begin(), in.names.end(), t.name()) - in.names.begin();
    if (pos == static_cast<long>(in.names.size()))
      return "no input named '" + t.name() + "' (inputs: " + join(in.names) + ")";
    if (seen[pos]) return "input '" + t.name() + "' is given twice";
    seen[pos] = true;
    const std::string what = "input '" + t.name() + "'";
    const std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
    const auto& expected = in.shapes[pos];
    bool shape_ok = shape.size() == expected.size() && !shape.empty();
    for (size_t d = 1; shape_ok && d < shape.size(); ++d) shape_ok = shape[d] == expected[d];
    if (!shape_ok || shape[0] <= 0)
      return what + ": shape " + shape_to_string(shape) + ", but the model takes " + shape_to_string(expected) +
             " (the first dimension may vary)";
    try {
      checked_numel(shape, max_elements, what);
      torch::Tensor data = request.raw_input_contents_size()
                               ? from_raw(request.raw_input_contents(k), t.datatype(), shape, what)
                               : from_contents(t.contents(), t.datatype(), shape, what);
      const auto encoded = get_codec(t.parameters(), std::move(data), what);
      torch::Tensor x = place::decode(encoded);
      const auto want = scalar_type_of(in.datatypes[pos]);
      if (x.scalar_type() != want)
        return what + ": datatype " +
               (encoded.codec == place::Codec::None ? t.datatype() : datatype_of(x.scalar_type())) +
               ", but the model takes " + in.datatypes[pos];
      inputs[pos] = x;
      shapes[pos] = shape;
    } catch (const Error& e) {
      return e.message();
    }
  }
  for (size_t d = 1; d < shapes.size(); ++d)
    if (shapes[d][0] != shapes[0][0])
      return "inputs disagree on the batch size (" + std::to_string(shapes[0][0]) + " and " +
             std::to_string(shapes[d][0]) + ")";
  return "";
}

}  // namespace tailor::serve::wire
