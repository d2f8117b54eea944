// tailor/export/onnx.hpp: writes a GraphModule as an ONNX model (opset 17) that ONNX Runtime, TensorRT and
// OpenVINO load: float graphs as float ops, fake-quantized graphs as QDQ (QuantizeLinear/DequantizeLinear with
// int8 weight initializers), parameter names kept as initializer names, tailor's provenance in metadata_props.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// Options of an ONNX export.
/// Example: `OnnxExportOptions({{1, 3, 224, 224}}).dynamic_batch(true)`
struct OnnxExportOptions {
  explicit OnnxExportOptions(std::vector<std::vector<int64_t>> input_shapes) : input_shapes_(std::move(input_shapes)) {}
  /// Shapes (batch included) at which shape arithmetic is folded and the export is checked. Required.
  TORCH_ARG(std::vector<std::vector<int64_t>>, input_shapes);
  /// Dimension 0 of every input becomes the symbolic `batch`, and shape arithmetic that grows with it is
  /// computed in the graph. Default: false (every dimension fixed).
  TORCH_ARG(bool, dynamic_batch) = false;
  /// The default ONNX opset; 17 is the only one written (LayerNormalization needs it; ONNX 1.12 stops at 17).
  TORCH_ARG(int64_t, opset) = 17;
  /// Run ONNX's checker and its strict shape inference on the result. Default: true.
  TORCH_ARG(bool, check) = true;
};

/// What an export wrote, for reports.
struct OnnxExportReport {
  int64_t nodes = 0;
  int64_t initializers = 0;
  int64_t quantize_nodes = 0;    ///< QuantizeLinear
  int64_t dequantize_nodes = 0;  ///< DequantizeLinear
  std::vector<std::string> inputs, outputs;
  int64_t bytes = 0;
};

/// The serialized ModelProto. Fails naming the node (and its op) that ONNX cannot express.
std::string to_onnx(const GraphModuleImpl& module, const OnnxExportOptions& options, OnnxExportReport* report = nullptr);

/// Writes `to_onnx(...)` to `path` under a temporary name and renames it when complete: a failure (an op ONNX
/// cannot express, a missing folder, a full disk) leaves nothing at `path`.
OnnxExportReport export_onnx(const GraphModuleImpl& module, const std::string& path, const OnnxExportOptions& options);

/// True when this build of tailor has the ONNX exporter (Debian: libonnx-dev at build time).
bool onnx_export_available();

}  // namespace tailor
