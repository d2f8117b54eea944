// Private to src/serve: tensors to and from the Open Inference Protocol's messages (datatype names, raw contents,
// the codec parameters), shared by the server and the client so both read and write one format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <torch/types.h>

#include "grpc_predict_v2.pb.h"
#include "tailor/place/place.hpp"

namespace tailor::serve::wire {

/// HTTP/2 settings both ends use: a stream window and frames large enough that a request of a few megabytes
/// crosses in one flight instead of waiting for window updates (gRPC's defaults start at 64 KiB).
inline constexpr int kStreamWindowBytes = 32 << 20;
inline constexpr int kMaxFrameBytes = (1 << 24) - 1;

/// The name of a gRPC status code ("INVALID_ARGUMENT"), for errors a caller can match.
std::string status_name(int code);

/// OIP datatype names ("FP32", "INT64", ...) for a torch dtype, and back; unknown names throw, listing the valid.
std::string datatype_of(c10::ScalarType type);
c10::ScalarType scalar_type_of(const std::string& datatype);
std::string datatype_of_dtype_name(const std::string& tailor_dtype);  ///< from the IR's "float32", "int64"...

/// Parameters tailor puts on a coded tensor: which codec, the int8 scale (as text, OIP has no float parameter)
/// and zero point.
inline constexpr const char* kCodec = "tailor_codec";
inline constexpr const char* kScale = "tailor_scale";
inline constexpr const char* kZeroPoint = "tailor_zero_point";
/// Response parameters with the server's times in microseconds.
inline constexpr const char* kQueueMicros = "queue_us";
inline constexpr const char* kComputeMicros = "compute_us";

/// The tensor's bytes as raw contents (row-major, little-endian, as the specification says).
std::string raw_bytes(const torch::Tensor& x);

/// Element count of a shape, failing (naming `what`) on negative dimensions or more than `max_elements`.
int64_t checked_numel(const std::vector<int64_t>& shape, int64_t max_elements, const std::string& what);

/// A tensor from raw contents of `datatype` and `shape`, failing when the byte count does not match. The tensor
/// owns a copy.
torch::Tensor from_raw(const std::string& bytes, const std::string& datatype, const std::vector<int64_t>& shape,
                       const std::string& what);
/// A tensor from typed InferTensorContents, failing when the element count does not match.
torch::Tensor from_contents(const inference::InferTensorContents& contents, const std::string& datatype,
                            const std::vector<int64_t>& shape, const std::string& what);

/// A model's inputs or outputs as the server describes them: names, OIP datatypes and shapes (the first dimension
/// of a request may vary).
struct TensorSpecs {
  std::vector<std::string> names, datatypes;
  std::vector<std::vector<int64_t>> shapes;
};

/// Checks a ModelInferRequest's inputs against `in` (count, names, shapes, datatypes, byte counts, codecs, one batch
/// size) and decodes them into `inputs` (in the model's order) and their `shapes`. Returns the reason a request is
/// invalid, naming the input, or "" when it is valid. At most `max_elements` elements per input are accepted.
std::string decode_inputs(const TensorSpecs& in, const inference::ModelInferRequest& request, int64_t max_elements,
                          std::vector<c10::IValue>& inputs, std::vector<std::vector<int64_t>>& shapes);

/// Writes the codec parameters of `encoded` into a tensor's parameter map, and reads them back (Codec::None when
/// absent). Reading validates them, naming `what`.
void put_codec(const place::EncodedTensor& encoded, google::protobuf::Map<std::string, inference::InferParameter>& p);
place::EncodedTensor get_codec(const google::protobuf::Map<std::string, inference::InferParameter>& p,
                               torch::Tensor data, const std::string& what);

}  // namespace tailor::serve::wire
