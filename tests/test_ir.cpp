// Known answers for the graph IR, cost analysis, serialization and the pass machinery.
#include <set>

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
}

// A pass defined in this file and registered by the macro alone: nothing else names it.
namespace {
class CountNodesPass : public tailor::Pass {
 public:
  tailor::Option<double> ratio{this, "ratio", 0.5, "a number"};
  tailor::Option<int64_t> round_to{this, "round_to", 8, "an integer"};
  tailor::Option<bool> strict{this, "strict", false, "a flag"};
  tailor::Option<std::string> label{this, "label", "", "free text"};
  tailor::EnumOption mode{this, "mode", "fast", {"fast", "exact"}, "an enum"};
  tailor::ListOption<int64_t> sizes{this, "sizes", {1, 2}, "a list of integers"};
  tailor::ListOption<std::string> layers{this, "layers", {}, "a list of names"};
  tailor::PassInfo info() const override { return {"test-count-nodes", "counts nodes (a test pass)"}; }
  bool run(tailor::GraphModuleImpl& m, tailor::PassContext& ctx) override {
    ctx.stat("nodes", static_cast<int64_t>(m.graph().order().size()));
    ctx.stat("label", *label);
    return false;
  }
};
}  // namespace
TAILOR_REGISTER_PASS(test_count_nodes, CountNodesPass);

TEST_CASE("a pass in its own file registers itself and declares typed options") {
  auto p = parse_pipeline("test-count-nodes{ratio=0.25,round_to=16,strict=true,mode=exact,sizes=[3,4,5],layers=[a.b,c]}");
  auto* pass = dynamic_cast<CountNodesPass*>(p->passes().at(0).get());
  REQUIRE(pass);
  CHECK(*pass->ratio == 0.25);
  CHECK(*pass->round_to == 16);
  CHECK(*pass->strict);
  CHECK(*pass->mode == "exact");
  CHECK(*pass->sizes == std::vector<int64_t>{3, 4, 5});
  CHECK(*pass->layers == std::vector<std::string>{"a.b", "c"});
  CHECK(p->str(true) == "test-count-nodes{ratio=0.25,round_to=16,strict=true,mode=exact,sizes=[3,4,5],layers=[a.b,c]}");
  CHECK(p->str() == "test-count-nodes{ratio=0.25,round_to=16,strict=true,label=,mode=exact,sizes=[3,4,5],layers=[a.b,c]}");
  CHECK(parse_pipeline("test-count-nodes")->str(true) == "test-count-nodes");
  // Text with the pipeline's own separators is quoted and reads back.
  pass->label = std::string("a,b{c}=\"d\"");
  CHECK(parse_pipeline(p->str())->str() == p->str());
  auto* again = dynamic_cast<CountNodesPass*>(parse_pipeline(p->str())->passes().at(0).get());
  CHECK(*again->label == "a,b{c}=\"d\"");
  // Errors name the pass, the option and what it expects.
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{ratio=half}"),
                    Catch::Contains("pass 'test-count-nodes': option 'ratio' expects a number, got 'half'"));
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{round_to=1.5}"), Catch::Contains("option 'round_to' expects an integer"));
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{strict=maybe}"), Catch::Contains("expects true or false"));
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{mode=slow}"), Catch::Contains("expects one of: fast, exact; got 'slow'"));
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{sizes=[1,x]}"), Catch::Contains("option 'sizes' expects an integer, got 'x'"));
  CHECK_THROWS_WITH(parse_pipeline("test-count-nodes{rate=1}"),
                    Catch::Contains("candidates are: ratio, round_to, strict, label, mode, sizes, layers"));
  // Registering the same class again is harmless; another pass under its name is refused.
  CHECK_NOTHROW(tailor::register_pass_class<CountNodesPass>());
  CHECK_THROWS_WITH(register_pass("test-count-nodes", [] { return std::make_shared<CountNodesPass>(); }),
                    Catch::Contains("already registered"));
}

namespace {
// A value other than the default for any option, chosen by its type.
void set_non_default(tailor::OptionBase& o) {
  if (auto* e = dynamic_cast<tailor::EnumOption*>(&o)) {
    for (const auto& c : e->choices())
      if (c != **e) {
        *e = c;
        return;
      }
    return;  // a one-value enum has no other value
  }
  if (auto* d = dynamic_cast<tailor::Option<double>*>(&o)) *d = **d + 0.125;
  else if (auto* i = dynamic_cast<tailor::Option<int64_t>*>(&o)) *i = **i + 3;
  else if (auto* b = dynamic_cast<tailor::Option<bool>*>(&o)) *b = !**b;
  else if (auto* s = dynamic_cast<tailor::Option<std::string>*>(&o)) *s = std::string("x,y{z}[w]=v \"q\"");
  else if (auto* l = dynamic_cast<tailor::ListOption<std::string>*>(&o)) *l = std::vector<std::string>{"a.b=c", "d,e"};
  else if (auto* li = dynamic_cast<tailor::ListOption<int64_t>*>(&o)) *li = std::vector<int64_t>{7, -2};
  else if (auto* ld = dynamic_cast<tailor::ListOption<double>*>(&o)) *ld = std::vector<double>{0.1, 1e-7};
  else FAIL("option '" << o.key() << "' has a type this test does not know");
}
}  // namespace

TEST_CASE("the pipeline text of every registered pass round-trips with non-default options") {
  for (const auto& info : registered_passes()) {
    auto pass = make_pass(info.name);
    for (auto* o : pass->options().all()) set_non_default(*o);
    const std::string text = pass->str();
    INFO(text);
    const auto back = parse_pipeline(text);
    REQUIRE(back->passes().size() == 1);
    CHECK(back->passes()[0]->str() == text);
    for (auto* o : pass->options().all()) CHECK(back->passes()[0]->options().option(o->key()).print() == o->print());
    CHECK(parse_pipeline(pass->str(true))->str() == text);
  }
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

TEST_CASE("the op table defines every op kind the IR knows, each with all of its parts") {
  std::set<std::string> known = {ops::kOpaque};
  for (const auto& kind : ops::defined_kinds()) {
    INFO(kind);
    CHECK((ops::is_known(kind) || kind == ops::kOpaque));  // nothing the IR does not model
    const ops::OpDef& d = ops::op_def(kind);
    CHECK(d.kind == kind);
    CHECK(d.macs);         // no_cost says "none" explicitly
    CHECK(d.flops);
    CHECK(d.torchscript);  // constants spell themselves where they are read: an empty statement, explicitly
    // The ONNX exporter folds constants, writes parameters as initializers and follows lists and tuples; every
    // other kind has its own ONNX spelling.
    const std::set<std::string> structural = {ops::kConstant, ops::kParam, ops::kList, ops::kListUnpack, ops::kTuple,
                                              ops::kTupleUnpack};
    CHECK(static_cast<bool>(d.onnx) == !structural.count(kind));
    CHECK(d.arity.inputs >= -1);
    known.insert(kind);
  }
  // Every kind capture can produce is in the table (ops.hpp lists them; is_known is the IR's own set).
  for (const char* kind : {ops::kConstant, ops::kParam, ops::kList, ops::kListUnpack, ops::kTuple, ops::kTupleUnpack,
                           ops::kConv, ops::kLinear, ops::kMatmul, ops::kBatchNorm, ops::kLayerNorm, ops::kGroupNorm,
                           ops::kRelu, ops::kHardtanh, ops::kGelu, ops::kSilu, ops::kSigmoid, ops::kHardsigmoid,
                           ops::kHardswish, ops::kTanh, ops::kSoftmax, ops::kLogSoftmax, ops::kAdd, ops::kSub, ops::kMul,
                           ops::kDiv, ops::kCat, ops::kChunk, ops::kFlatten, ops::kReshape, ops::kPermute,
                           ops::kTranspose, ops::kContiguous, ops::kMaxPool, ops::kAvgPool, ops::kAdaptiveAvgPool,
                           ops::kMean, ops::kDropout, ops::kChannelShuffle, ops::kFakeQuant}) {
    INFO(kind);
    CHECK(ops::is_known(kind));
    CHECK(known.count(kind) == 1);
  }
  CHECK_THROWS_WITH(ops::op_def("conv3d_transpose"), Catch::Contains("'conv3d_transpose' is not in tailor's op table"));
  // Known answers from the table: a 3x3 conv's MACs and its TorchScript spelling.
  TinyNet net{nullptr};
  GraphModule gm = tiny(net);
  gm->infer_shapes({{1, 3, 8, 8}});
  const Graph& g = gm->graph();
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (n.kind != ops::kConv) continue;
    const auto& out = g.value(n.outputs[0]).shape;
    const auto& w = g.value(n.inputs[1]).shape;
    REQUIRE((!out.empty() && w.size() == 4));
    CHECK(ops::op_def(n.kind).macs(g, n) == ops::numel(out) * w[1] * w[2] * w[3]);
    CHECK(ops::op_def(n.kind).channels == ops::ChannelRule::Conv);
    CHECK(ops::op_def(n.kind).onednn == ops::OnednnLowering::Conv);
  }
  CHECK_THAT(to_torchscript_source(*gm), Catch::Contains("torch.convolution("));
}
