#include "tailor/export/export.hpp"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <torch/csrc/jit/runtime/operator.h>
#include <torch/script.h>

#include "tailor/capture/capture.hpp"
#include "tailor/ir/ops.hpp"

namespace tailor {
namespace {

bool is_identifier(const std::string& s) {
  static const std::set<std::string> keywords = {
      "False", "None",   "True",  "and",   "as",   "assert", "async",  "await",    "break",  "class",
      "continue", "def", "del",   "elif",  "else", "except", "finally", "for",     "from",   "global",
      "if",    "import", "in",    "is",    "lambda", "nonlocal", "not", "or",      "pass",   "raise",
      "return", "try",   "while", "with",  "yield", "forward", "training"};
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return !keywords.count(s);
}

std::string attribute_path(const std::string& dotted) {
  std::string expr = "self";
  std::string cur;
  std::istringstream in(dotted);
  while (std::getline(in, cur, '.')) expr = is_identifier(cur) ? expr + "." + cur : "getattr(" + expr + ", \"" + cur + "\")";
  return expr;
}

const char* list_type(ValueType t) {
  switch (t) {
    case ValueType::IntList: return "List[int]";
    case ValueType::FloatList: return "List[float]";
    case ValueType::BoolList: return "List[bool]";
    default: return "List[Tensor]";
  }
}

class SourceWriter {
 public:
  explicit SourceWriter(const Graph& g) : g_(g) {}

  std::string write() {
    out_ << "def forward(self";
    for (int in : g_.inputs()) {
      const Value& v = g_.value(in);
      out_ << ", " << var(in) << ": " << annotation(v.type);
    }
    out_ << "):\n";
    for (int id : g_.order()) emit(g_.node(id));
    out_ << "    return ";
    const auto& outs = g_.outputs();
    if (outs.size() == 1) {
      out_ << ref(outs[0]);
    } else {
      out_ << "(";
      for (size_t i = 0; i < outs.size(); ++i) out_ << (i ? ", " : "") << ref(outs[i]);
      out_ << (outs.size() == 1 ? ",)" : ")");
    }
    out_ << "\n";
    return out_.str();
  }

 private:
  const Graph& g_;
  std::ostringstream out_;

  static std::string annotation(ValueType t) {
    switch (t) {
      case ValueType::Tensor: return "Tensor";
      case ValueType::Int: return "int";
      case ValueType::Float: return "float";
      case ValueType::Bool: return "bool";
      case ValueType::Str: return "str";
      case ValueType::IntList:
      case ValueType::FloatList:
      case ValueType::BoolList:
      case ValueType::TensorList: return list_type(t);
      default: TAILOR_FAIL("cannot export a graph input of type ", to_string(t));
    }
  }

  static std::string var(int v) { return "v" + std::to_string(v); }

  // Constants are written inline where they are read.
  std::string ref(int v) const {
    const Node* p = g_.producer(v);
    if (p && p->kind == ops::kConstant) {
      const AttrValue& c = p->attr("value");
      if (auto l = std::get_if<std::vector<int64_t>>(&c); l && l->empty()) return "annotate(List[int], [])";
      if (auto l = std::get_if<std::vector<double>>(&c); l && l->empty()) return "annotate(List[float], [])";
      return to_source(c);
    }
    return var(v);
  }

  std::string args(const Node& n, size_t from = 0) const {
    std::string s;
    for (size_t k = from; k < n.inputs.size(); ++k) s += (k > from ? ", " : "") + ref(n.inputs[k]);
    return s;
  }

  void assign(const Node& n, const std::string& expr) {
    out_ << "    ";
    if (n.outputs.size() == 1) {
      out_ << var(n.outputs[0]) << " = ";
    } else if (n.outputs.size() > 1) {
      for (size_t k = 0; k < n.outputs.size(); ++k) out_ << (k ? ", " : "") << var(n.outputs[k]);
      out_ << " = ";
    }
    out_ << expr << "\n";
  }

  std::string in(const Node& n, size_t k) const { return ref(n.inputs[k]); }
  static std::string a(const Node& n, const char* key) { return to_source(n.attr(key)); }

  // Any LibTorch operator, called the way TorchScript's own printer does: aten ops through `torch.`,
  // keyword-only arguments by name.
  void emit_opaque(const Node& n) {
    const std::string& schema = n.s("schema");
    const c10::OperatorName op = detail::parse_operator_name(schema);
    const auto sep = op.name.find("::");
    const std::string ns = op.name.substr(0, sep), name = op.name.substr(sep + 2);
    if (ns == "prim") {
      if (name == "NumToTensor") return assign(n, "torch.tensor(" + in(n, 0) + ")");
      if (name == "device" || name == "dtype") return assign(n, in(n, 0) + "." + name);
      if (name == "min" || name == "max") return assign(n, name + "(" + args(n) + ")");
    }
    TAILOR_CHECK(ns == "aten", "cannot export node '", n.name, "': operator ", schema,
                 " has no TorchScript spelling tailor knows");
    auto oper = torch::jit::findOperatorFor(op);
    TAILOR_CHECK(oper, "cannot export node '", n.name, "': LibTorch has no operator ", schema);
    const auto& arguments = oper->schema().arguments();
    std::string call;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      std::string arg = ref(n.inputs[i]);
      if (i < arguments.size() && arguments[i].kwarg_only()) arg = arguments[i].name() + "=" + arg;
      call += (i ? ", " : "") + arg;
    }
    return assign(n, "torch." + name + "(" + call + ")");
  }

  void emit(const Node& n) {
    const std::string& k = n.kind;
    const std::string aten = "torch.";
    if (k == ops::kConstant) return;
    if (k == ops::kParam) return assign(n, attribute_path(n.s("name")));
    if (k == ops::kList) {
      if (n.inputs.empty()) return assign(n, std::string("annotate(") + list_type(g_.value(n.outputs[0]).type) + ", [])");
      return assign(n, "[" + args(n) + "]");
    }
    if (k == ops::kTuple) return assign(n, "(" + args(n) + (n.inputs.size() == 1 ? ",)" : ")"));
    if (k == ops::kListUnpack || k == ops::kTupleUnpack) {
      if (n.outputs.size() == 1) return assign(n, in(n, 0) + "[0]");
      return assign(n, in(n, 0));
    }
    if (k == ops::kOpaque) return emit_opaque(n);
    if (k == ops::kConv) {
      const size_t dims = n.ints("stride").size();
      return assign(n, aten + "convolution(" + args(n) + ", " + a(n, "stride") + ", " + a(n, "padding") + ", " +
                           a(n, "dilation") + ", False, " + to_source(std::vector<int64_t>(dims, 0)) + ", " +
                           a(n, "groups") + ")");
    }
    if (k == ops::kLinear || k == ops::kMatmul) return assign(n, aten + k + "(" + args(n) + ")");
    if (k == ops::kBatchNorm)
      return assign(n, aten + "batch_norm(" + args(n) + ", self.training, " + a(n, "momentum") + ", " + a(n, "eps") +
                           ", True)");
    if (k == ops::kLayerNorm)
      return assign(n, aten + "layer_norm(" + in(n, 0) + ", " + a(n, "normalized_shape") + ", " + in(n, 1) + ", " +
                           in(n, 2) + ", " + a(n, "eps") + ", True)");
    if (k == ops::kGroupNorm)
      return assign(n, aten + "group_norm(" + in(n, 0) + ", " + a(n, "num_groups") + ", " + in(n, 1) + ", " +
                           in(n, 2) + ", " + a(n, "eps") + ", True)");
    if (k == ops::kHardtanh)
      return assign(n, aten + "hardtanh(" + in(n, 0) + ", " + a(n, "min_val") + ", " + a(n, "max_val") + ")");
    if (k == ops::kGelu) return assign(n, aten + "gelu(" + in(n, 0) + ", approximate=" + a(n, "approximate") + ")");
    if (k == ops::kSoftmax || k == ops::kLogSoftmax) return assign(n, aten + k + "(" + in(n, 0) + ", " + a(n, "dim") + ")");
    if (k == ops::kAdd || k == ops::kSub)
      return assign(n, aten + k + "(" + args(n) + (n.has("alpha") ? ", alpha=" + a(n, "alpha") : "") + ")");
    if (ops::is_binary(k) || (ops::is_elementwise_unary(k) && k != ops::kDropout)) return assign(n, aten + k + "(" + args(n) + ")");
    if (k == ops::kCat) return assign(n, aten + "cat([" + args(n) + "], " + a(n, "dim") + ")");
    if (k == ops::kChunk) {
      const std::string call = aten + "chunk(" + in(n, 0) + ", " + a(n, "chunks") + ", " + a(n, "dim") + ")";
      return assign(n, n.outputs.size() == 1 ? call + "[0]" : call);
    }
    if (k == ops::kFlatten) return assign(n, aten + "flatten(" + in(n, 0) + ", " + a(n, "start_dim") + ", " + a(n, "end_dim") + ")");
    if (k == ops::kReshape) return assign(n, aten + "reshape(" + args(n) + ")");
    if (k == ops::kPermute) return assign(n, aten + "permute(" + in(n, 0) + ", " + a(n, "dims") + ")");
    if (k == ops::kTranspose) return assign(n, aten + "transpose(" + in(n, 0) + ", " + a(n, "dim0") + ", " + a(n, "dim1") + ")");
    const std::string d = [&] {
      if (!n.has("kernel_size") && !n.has("output_size")) return std::string();
      return std::to_string(n.ints(n.has("kernel_size") ? "kernel_size" : "output_size").size()) + "d";
    }();
    if (k == ops::kMaxPool)
      return assign(n, aten + "max_pool" + d + "(" + in(n, 0) + ", " + a(n, "kernel_size") + ", " + a(n, "stride") + ", " +
                           a(n, "padding") + ", " + a(n, "dilation") + ", " + a(n, "ceil_mode") + ")");
    if (k == ops::kAvgPool)
      return assign(n, aten + "avg_pool" + d + "(" + in(n, 0) + ", " + a(n, "kernel_size") + ", " + a(n, "stride") + ", " +
                           a(n, "padding") + ", " + a(n, "ceil_mode") + ", " + a(n, "count_include_pad") + ")");
    if (k == ops::kAdaptiveAvgPool)
      return assign(n, aten + "adaptive_avg_pool" + d + "(" + in(n, 0) + ", " + a(n, "output_size") + ")");
    if (k == ops::kMean) return assign(n, aten + "mean(" + in(n, 0) + ", " + a(n, "dims") + ", " + a(n, "keepdim") + ")");
    if (k == ops::kDropout) return assign(n, aten + "dropout(" + in(n, 0) + ", " + a(n, "p") + ", self.training)");
    if (k == ops::kFakeQuant) {
      // Learnable nodes export as the fixed kernels: same forward, and stock PyTorch runs them anywhere.
      const std::string range = a(n, "qmin") + ", " + a(n, "qmax") + ")";
      const int64_t axis = n.i("axis", -1), group = n.i("group_size", 0);
      if (group > 0)
        return assign(n, aten + "reshape(" + aten + "fake_quantize_per_channel_affine(" + aten + "reshape(" + in(n, 0) +
                             ", [-1, " + std::to_string(group) + "]), " + in(n, 1) + ", " + in(n, 2) + ", 0, " + range +
                             ", " + in(n, 0) + ".size())");
      if (axis < 0) return assign(n, aten + "fake_quantize_per_tensor_affine(" + args(n) + ", " + range);
      return assign(n, aten + "fake_quantize_per_channel_affine(" + args(n) + ", " + std::to_string(axis) + ", " + range);
    }
    if (k == ops::kChannelShuffle) return assign(n, aten + "channel_shuffle(" + in(n, 0) + ", " + a(n, "groups") + ")");
    TAILOR_FAIL("cannot export node '", n.name, "': op kind '", k, "' has no TorchScript form");
  }
};

struct TreeNode {
  std::map<std::string, TreeNode> children;
  std::vector<std::pair<std::string, std::pair<torch::Tensor, bool>>> tensors;
};

torch::jit::Module build_module(const TreeNode& tree, const std::string& type_name,
                                const std::shared_ptr<torch::jit::CompilationUnit>& cu, int& counter) {
  torch::jit::Module m(c10::QualifiedName("__torch__.tailor." + type_name + std::to_string(counter++)), cu,
                       /*shouldMangle=*/true);
  // Module::train()/eval() set `training` on every submodule, and the generated code reads it.
  if (!m.hasattr("training")) m.register_attribute("training", c10::BoolType::get(), true);
  for (const auto& [name, child] : tree.children) m.register_module(name, build_module(child, "Sub", cu, counter));
  for (const auto& [name, entry] : tree.tensors) {
    const torch::Tensor t = entry.first.detach().clone();
    if (entry.second) m.register_buffer(name, t);
    else m.register_parameter(name, t, /*is_buffer=*/false);
  }
  return m;
}

}  // namespace

std::string to_torchscript_source(const GraphModuleImpl& module) { return SourceWriter(module.graph()).write(); }

torch::jit::Module to_torchscript(const GraphModuleImpl& module) {
  TreeNode root;
  for (const auto& [name, t] : module.tensors()) {
    TreeNode* cur = &root;
    std::string part;
    std::istringstream in(name);
    std::vector<std::string> parts;
    while (std::getline(in, part, '.')) parts.push_back(part);
    for (size_t i = 0; i + 1 < parts.size(); ++i) cur = &cur->children[parts[i]];
    cur->tensors.push_back({parts.back(), {t, module.is_buffer(name)}});
  }
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  int counter = 0;
  torch::jit::Module m = build_module(root, "GraphModule", cu, counter);
  const std::string source = to_torchscript_source(module);
  try {
    m.define(source);
  } catch (const c10::Error& e) {
    TAILOR_FAIL("exporting to TorchScript failed (a tailor bug; please report it with the model): ",
                e.what_without_backtrace(), "\nGenerated source:\n", source);
  }
  m.eval();
  return m;
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  TAILOR_CHECK(fs::is_directory(dir), "cannot write '", path, "': folder '", dir.string(), "' does not exist");
  std::random_device rd;
  const fs::path tmp = dir / ("." + target.filename().string() + ".tmp" + std::to_string(rd()));
  {
    std::ofstream out(tmp, std::ios::binary);
    TAILOR_CHECK(out.good(), "cannot write '", tmp.string(), "'");
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out.good()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      TAILOR_FAIL("writing '", path, "' failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    TAILOR_FAIL("cannot move the finished file into place at '", path, "'");
  }
}

void save(const GraphModuleImpl& module, const std::string& path) {
  torch::jit::Module m = to_torchscript(module);
  std::ostringstream buffer;
  torch::jit::ExtraFilesMap extra{{kEmbeddedGraphFile, module.graph().to_json()},
                                  {kProvenanceFile, provenance_to_json(module.provenance())}};
  m.save(buffer, extra);
  write_file_atomically(path, buffer.str());
}

}  // namespace tailor
