// Known answers for the graph IR, cost analysis, serialization and the pass machinery.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "tailor/tailor.hpp"

using namespace tailor;

namespace {

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
    fc = register_module("fc", torch::nn::Linear(8 * 8 * 8, 10));
  }
  torch::Tensor forward(torch::Tensor x) { return fc(torch::relu(bn(conv(x))).flatten(1)); }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(TinyNet);

GraphModule tiny(TinyNet& net) {
  torch::manual_seed(1);
  net = TinyNet();
  {
    torch::NoGradGuard g;
    net->bn->running_mean.uniform_(-0.5, 0.5);
    net->bn->running_var.uniform_(0.5, 2.0);
    net->bn->weight.uniform_(0.5, 1.5);
    net->bn->bias.uniform_(-0.2, 0.2);
  }
  GraphModule gm = capture(net, torch::zeros({1, 3, 8, 8}));
  net->eval();
  return gm;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

}  // namespace

TEST_CASE("version() matches the version macros") {
  REQUIRE(std::string(version()) == TAILOR_VERSION_STRING);
  REQUIRE(build_info().torch_version.size() > 0);
}

TEST_CASE("conv and linear MACs and params equal hand-computed values") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  const CostReport r = analyze(*gm, {{1, 3, 8, 8}});
  // conv: 8x8x8 outputs x (3 x 3 x 3) = 13,824; fc: 10 outputs x 512 inputs = 5,120
  CHECK(r.macs == 13824 + 5120);
  // conv 8*27+8, bn 8+8, fc 5120+10
  CHECK(r.params == 224 + 16 + 5130);
  const NodeCost* conv = nullptr;
  for (const auto& n : r.nodes)
    if (n.name == "conv") conv = &n;
  REQUIRE(conv);
  CHECK(conv->kind == "conv");
  CHECK(conv->output_shape == std::vector<int64_t>{1, 8, 8, 8});
  CHECK(conv->output_bytes == 512 * 4);
  CHECK(conv->flops == 2 * 13824 + 512);
  // Batch 4 scales MACs by 4.
  CHECK(analyze(*gm, {{4, 3, 8, 8}}).macs == 4 * (13824 + 5120));
}

TEST_CASE("graph text form lists nodes with module names and shapes") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  gm->infer_shapes({{2, 3, 8, 8}});
  const std::string text = gm->graph().str();
  CHECK_THAT(text, Catch::Contains("conv["));
  CHECK_THAT(text, Catch::Contains("# 2x8x8x8"));
  CHECK_THAT(text, Catch::Contains("batch_norm"));
}

TEST_CASE("graph JSON round trip is lossless") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  gm->infer_shapes({{1, 3, 8, 8}});
  const Graph& g = gm->graph();
  const Graph back = Graph::from_json(g.to_json());
  CHECK(back.str() == g.str());
  CHECK(back.to_json() == Graph::from_json(back.to_json()).to_json());
}

TEST_CASE("malformed serialized graphs are rejected with a reason") {
  CHECK_THROWS_WITH(Graph::from_json("{not json"), Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(Graph::from_json(R"({"format":"other"})"), Catch::Contains("not a tailor graph"));
  CHECK_THROWS_WITH(Graph::from_json(R"({"format":"tailor-graph","version":99})"), Catch::Contains("version 99"));
}

TEST_CASE("graph verify catches a use before definition") {
  Graph g;
  const int x = g.add_input("x");
  Node relu;
  relu.kind = ops::kRelu;
  relu.name = "r";
  relu.inputs = {x};
  const int r = g.add_node(relu, {ValueType::Tensor});
  Node second = relu;
  second.name = "early";
  second.inputs = {g.node(r).outputs[0]};
  g.add_node(second, {ValueType::Tensor}, r);  // inserted before its producer
  g.set_outputs({x});
  CHECK_THROWS_WITH(g.verify(), Catch::Contains("before it is defined"));
}

TEST_CASE("folding batch norm keeps outputs and removes the batch-norm node") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  const torch::Tensor x = torch::randn({2, 3, 8, 8});
  torch::NoGradGuard g;
  const torch::Tensor before = gm->forward(x);
  CHECK(max_rel(before, net->forward(x)) < 1e-6);
  REQUIRE(fold_batch_norm(*gm));
  for (int id : gm->graph().order()) CHECK(gm->graph().node(id).kind != ops::kBatchNorm);
  CHECK_FALSE(gm->has_tensor("bn.running_mean"));
  CHECK(gm->has_tensor("conv.bias"));
  CHECK(max_rel(gm->forward(x), before) < 1e-5);
  // Parameters: conv 224 + fc 5130; the batch norm's 16 are gone.
  CHECK(analyze(*gm, {{1, 3, 8, 8}}).params == 224 + 5130);
  CHECK_FALSE(fold_batch_norm(*gm));
}

TEST_CASE("pipelines print as text that parses back into the same pipeline") {
  const std::string text = "fold-batch-norm,(remove-dropout,dce),canonicalize";
  auto p = parse_pipeline(text);
  CHECK(p->str() == text);
  CHECK(parse_pipeline(p->str())->str() == text);
  REQUIRE(p->passes().size() == 3);
  CHECK(dynamic_cast<Pipeline*>(p->passes()[1].get()) != nullptr);
}

TEST_CASE("unknown passes and options fail and list the valid choices") {
  CHECK_THROWS_WITH(parse_pipeline("fold-batchnorm"), Catch::Contains("registered passes are: ") &&
                                                          Catch::Contains("fold-batch-norm"));
  CHECK_THROWS_WITH(parse_pipeline("dce{ratio=1}"), Catch::Contains("invalid option 'ratio'"));
  CHECK_THROWS_WITH(parse_pipeline("dce,(remove-dropout"), Catch::Contains("missing ')'"));
  PassOptions o;
  o.declare("ratio", 0.5, "fraction").declare("round_to", int64_t{8}, "multiple").declare("criterion", std::string("l1"), "");
  o.set("ratio", "0.25");
  o.set("round_to", "16");
  CHECK(o.f("ratio") == 0.25);
  CHECK(o.i("round_to") == 16);
  CHECK(o.str() == "ratio=0.25,round_to=16,criterion=l1");
  CHECK_THROWS_WITH(o.set("ratio", "half"), Catch::Contains("expects a number"));
  CHECK_THROWS_WITH(o.set("rate", "1"), Catch::Contains("candidates are: ratio, round_to, criterion"));
}

TEST_CASE("a pipeline records params and MACs before and after each pass") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  PassContext ctx;
  ctx.input_shapes = {{1, 3, 8, 8}};
  struct Counter : PassInstrument {
    int before_calls = 0, after_calls = 0;
    void before(const Pass&, GraphModuleImpl&, PassContext&) override { ++before_calls; }
    void after(const Pass&, GraphModuleImpl&, PassContext&, bool) override { ++after_calls; }
  };
  auto counter = std::make_shared<Counter>();
  ctx.instruments.push_back(counter);
  torch::NoGradGuard g;
  auto p = parse_pipeline("fold-batch-norm,dce");
  CHECK(p->run(*gm, ctx));
  REQUIRE(ctx.records.size() == 2);
  CHECK(ctx.records[0].pass == "fold-batch-norm");
  CHECK(ctx.records[0].changed);
  CHECK(ctx.records[0].params_before == 224 + 16 + 5130);
  CHECK(ctx.records[0].params_after == 224 + 5130);
  CHECK(ctx.records[0].macs_before == ctx.records[0].macs_after);
  CHECK_FALSE(ctx.records[1].changed);
  CHECK(counter->before_calls == 2);
  CHECK(counter->after_calls == 2);
}

TEST_CASE("a pass that breaks the graph is reported by name") {
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  PassContext ctx;
  Pipeline p;
  p.add(std::make_shared<FunctionPass>(PassInfo{"break-things", "test"}, [](GraphModuleImpl& m, PassContext&) {
    Graph& g = m.mutable_graph();
    g.set_outputs({g.num_values() + 5});
    return false;
  }));
  CHECK_THROWS_WITH(p.run(*gm, ctx), Catch::Contains("pass 'break-things' left an invalid graph"));
}

TEST_CASE("input shapes parse from 1x3x224x224 and reject junk") {
  CHECK(parse_shape("1x3x224x224") == std::vector<int64_t>{1, 3, 224, 224});
  CHECK(parse_shape("8,1,28,28") == std::vector<int64_t>{8, 1, 28, 28});
  CHECK_THROWS_WITH(parse_shape("1x3xbig"), Catch::Contains("bad dimension 'big'"));
  CHECK_THROWS_WITH(parse_shape("1x0"), Catch::Contains("bad dimension '0'"));
  CHECK_THROWS(parse_shape(""));
}
