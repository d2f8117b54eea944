// Captures a C++ model, folds its batch norms with a pipeline, prints its costs and exports it.
//   ./inspect_zoo [resnet18|mobilenet_v2|fashion-cnn] [out.pt]
#include <iostream>

#include <tailor/tailor.hpp>

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "resnet18";
  try {
    tailor::GraphModule model = tailor::models::capture_model(name);
    const auto shape = tailor::models::make_model(name).input_shape;

    tailor::PassContext context;
    context.input_shapes = {shape};
    auto pipeline = tailor::parse_pipeline("fold-batch-norm,remove-dropout,dce");
    pipeline->run(*model, context);
    for (const auto& r : context.records)
      std::cout << r.pass << ": params " << r.params_before << " -> " << r.params_after << "\n";

    const tailor::CostReport cost = tailor::analyze(*model, {shape});
    std::cout << name << ": " << cost.params << " params, " << cost.macs << " MACs\n";
    if (argc > 2) tailor::save(*model, argv[2]);
  } catch (const tailor::Error& e) {
    std::cerr << "error: " << e.message() << "\n";
    return 1;
  }
  return 0;
}
