// Kernel keys and features: the canonical description the latency model looks kernels up by.
#include "tailor/runtime/kernel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <charconv>

namespace tailor {
namespace {

void put_dims(std::string& out, const std::vector<int64_t>& dims) {
  char buf[24];
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) out += 'x';
    const auto end = std::to_chars(buf, buf + sizeof buf, dims[i]).ptr;
    out.append(buf, end);
  }
}

double dim(const std::vector<int64_t>& shape, size_t i) { return i < shape.size() ? static_cast<double>(shape[i]) : 0; }

// Channels and spatial size of an activation: NCHW for rank 4, N x C for rank 2, the last dimension otherwise.
struct Geometry {
  double channels = 0, height = 0, width = 0;
};
Geometry geometry(const std::vector<int64_t>& shape) {
  if (shape.size() == 4) return {dim(shape, 1), dim(shape, 2), dim(shape, 3)};
  if (shape.size() == 3) return {dim(shape, 1), dim(shape, 2), 1};
  if (!shape.empty()) return {dim(shape, shape.size() - 1), 1, 1};
  return {};
}

double log2p(double x) { return std::log2(1.0 + std::max(0.0, x)); }

}  // namespace

std::string Kernel::key() const {
  std::string out;
  out.reserve(160);
  append_key(out);
  return out;
}

void Kernel::append_key(std::string& out) const {
  // Plain appends: search loops build millions of keys.
  out += op;
  out += '|';
  out += impl;
  out += '|';
  out += dtype;
  out += '|';
  out += post_ops;
  out += '|';
  out += layout;
  out += "|in=";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) out += ',';
    put_dims(out, inputs[i]);
  }
  out += "|out=";
  put_dims(out, output);
  auto field = [&](const char* name, const std::vector<int64_t>& dims) {
    if (dims.empty()) return;
    out += name;
    put_dims(out, dims);
  };
  field("|w=", weight);
  field("|s=", stride);
  field("|p=", padding);
  field("|d=", dilation);
  if (groups != 1) out += "|g=" + std::to_string(groups);
  // ATen kernels are told apart by what they compute.
  if (op == "aten") {
    out += '|';
    out += kind;
  }
}

const std::vector<std::string>& kernel_feature_names() {
  static const std::vector<std::string> names = {
      "log2_macs", "log2_bytes", "log2_out_elements", "in_channels", "out_channels", "in_height", "in_width",
      "out_height", "out_width", "kernel_h", "kernel_w", "stride", "groups", "depthwise", "post_ops", "sum",
      "int8", "u8_out", "layout_block", "batch", "inputs"};
  return names;
}

std::vector<float> Kernel::features() const {
  const std::vector<int64_t> none;
  const Geometry in = geometry(inputs.empty() ? none : inputs[0]);
  const Geometry out = geometry(output);
  double out_elements = output.empty() ? 0 : 1;
  for (int64_t d : output) out_elements *= static_cast<double>(d);
  double kernel_h = 0, kernel_w = 0;
  if (weight.size() == 4) {
    kernel_h = dim(weight, 2);
    kernel_w = dim(weight, 3);
  } else if (weight.size() == 3) {
    kernel_h = dim(weight, 2);
    kernel_w = 1;
  }
  const double post = post_ops.empty() ? 0 : 1 + static_cast<double>(std::count(post_ops.begin(), post_ops.end(), '+'));
  const bool sum = post_ops.rfind("add", 0) == 0;
  const bool int8 = dtype.find("u8") != std::string::npos || dtype.find("s8") != std::string::npos;
  const bool u8_out = dtype.size() >= 2 && dtype.compare(dtype.size() - 2, 2, "u8") == 0;
  double block = 0;
  if (layout != "plain" && !layout.empty()) block = std::atof(layout.c_str());
  return {static_cast<float>(log2p(macs)),
          static_cast<float>(log2p(bytes)),
          static_cast<float>(log2p(out_elements)),
          static_cast<float>(in.channels),
          static_cast<float>(out.channels),
          static_cast<float>(in.height),
          static_cast<float>(in.width),
          static_cast<float>(out.height),
          static_cast<float>(out.width),
          static_cast<float>(kernel_h),
          static_cast<float>(kernel_w),
          static_cast<float>(stride.empty() ? 1 : stride[0]),
          static_cast<float>(groups),
          static_cast<float>(groups > 1 && groups == in.channels ? 1 : 0),
          static_cast<float>(post),
          static_cast<float>(sum ? 1 : 0),
          static_cast<float>(int8 ? 1 : 0),
          static_cast<float>(u8_out ? 1 : 0),
          static_cast<float>(block),
          static_cast<float>(output.empty() ? 0 : output[0]),
          static_cast<float>(inputs.size())};
}

}  // namespace tailor
