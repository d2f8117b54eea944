// Real models nobody here wrote: every torchvision classification model in the fixture manifest,
// traced and scripted by PyTorch, captured, run, checked against PyTorch's outputs and counts, exported and
// reloaded, trained one step, and batch-norm folded.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::test;

namespace {

int64_t conv_linear_macs(const CostReport& r) {
  int64_t total = 0;
  for (const auto& n : r.nodes)
    if (n.kind == ops::kConv || n.kind == ops::kLinear) total += n.macs;
  return total;
}

}  // namespace

TEST_CASE("torchvision models: capture, outputs, counts, export, gradients and BN folding") {
  const auto m = fixture_manifest();
  const std::string dir = TAILOR_FIXTURES_DIR;
  std::filesystem::create_directories(TAILOR_TEST_TMP);
  torch::manual_seed(0);
  for (const auto& [name, entry] : m.at("models").items()) {
    torch::jit::Module ref = torch::jit::load(dir + "/" + name + "_ref.pt");
    const torch::Tensor x = ref.attr("input").toTensor();
    const torch::Tensor y = ref.attr("output").toTensor();
    const auto shape = entry.at("input_shape").get<std::vector<int64_t>>();
    for (const auto& [mode, file] : entry.at("files").items()) {
      DYNAMIC_SECTION(name << " " << mode) {
        const std::string path = dir + "/" + file.get<std::string>();
        if (name == "vit" && mode == "scripted") {
          // Known limitation: scripted nn.MultiheadAttention branches on the input's rank (query.dim() == 3),
          // which capture cannot decide without an input shape. It must fail clearly, not crash.
          CHECK_THROWS_WITH(load(path), Catch::Contains("data-dependent control flow"));
          continue;
        }
        GraphModule gm = load(path);
        gm->eval();
        {
          torch::NoGradGuard g;
          const torch::Tensor out = first_tensor(gm->run({x}));
          CHECK(max_rel(out, y) < 1e-5);

          const CostReport r = analyze(*gm, {shape});
          CHECK(r.params == entry.at("params").get<int64_t>());
          CHECK(conv_linear_macs(r) == entry.at("conv_linear_macs").get<int64_t>());
          CHECK(r.macs >= conv_linear_macs(r));

          // Export, reload in stock LibTorch and in tailor.
          const std::string path = std::string(TAILOR_TEST_TMP) + "/" + name + "_" + mode + "_export.pt";
          save(*gm, path);
          torch::jit::Module stock = torch::jit::load(path);
          stock.eval();
          CHECK(max_rel(first_tensor(stock.forward({x})), y) < 1e-5);
          GraphModule back = load(path);
          CHECK(back->graph().str() == gm->graph().str());
          CHECK(torch::equal(first_tensor(back->run({x})), out));
          std::filesystem::remove(path);
        }
        // Gradients flow to every parameter that the forward reads.
        {
          gm->zero_grad();
          first_tensor(gm->run({x})).square().mean().backward();
          int64_t missing = 0;
          for (const auto& p : gm->named_parameters())
            if (!p.value().grad().defined()) {
              UNSCOPED_INFO("no gradient for " << p.key());
              ++missing;
            }
          CHECK(missing == 0);
        }
        // Folding batch norm keeps the function.
        {
          torch::NoGradGuard g;
          const bool had_bn = [&] {
            for (int id : gm->graph().order())
              if (gm->graph().node(id).kind == ops::kBatchNorm) return true;
            return false;
          }();
          CHECK(fold_batch_norm(*gm) == had_bn);
          CHECK(max_rel(first_tensor(gm->run({x})), y) < 1e-4);
        }
      }
    }
  }
}
