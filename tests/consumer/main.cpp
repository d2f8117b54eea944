// Consumer of the installed package: captures a zoo model, checks its counts, exports and reloads it, and
// exports it as ONNX.
#include <cstdio>
#include <filesystem>

#include <tailor/tailor.hpp>

int main() {
  std::printf("tailor %s (LibTorch %s)\n", tailor::version(), tailor::build_info().torch_version.c_str());
  tailor::GraphModule gm = tailor::models::capture_model("fashion-cnn");
  const tailor::CostReport cost = tailor::analyze(*gm, {{1, 1, 28, 28}});
  std::printf("fashion-cnn: %lld params, %lld MACs\n", static_cast<long long>(cost.params),
              static_cast<long long>(cost.macs));
  const auto path = (std::filesystem::temp_directory_path() / "tailor_consumer.pt").string();
  tailor::save(*gm, path);
  tailor::GraphModule back = tailor::load(path);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 1, 28, 28});
  const bool same = torch::equal(gm->forward(x), back->forward(x));
  std::filesystem::remove(path);
  std::printf("export round trip: %s\n", same ? "identical" : "DIFFERENT");
  // ONNX export links from the installed package too (where the package was built with it).
  size_t onnx_bytes = 1;
  if (tailor::onnx_export_available()) {
    onnx_bytes = tailor::to_onnx(*gm, tailor::OnnxExportOptions({{1, 1, 28, 28}})).size();
    std::printf("ONNX export: %zu bytes\n", onnx_bytes);
  }
  return same && cost.params == 421738 && onnx_bytes > 0 ? 0 : 1;
}
