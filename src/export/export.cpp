#include "tailor/export/export.hpp"

#include <cctype>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <torch/csrc/jit/runtime/operator.h>
#include <torch/script.h>

#include "tailor/capture/capture.hpp"
#include "tailor/ir/op_table.hpp"
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
    // Arguments carry the inputs' own names (split parts are called by their cut tensors' names); the body
    // refers to values by id, so each argument is bound once.
    out_ << "def forward(self";
    std::set<std::string> taken;
    std::string binds;
    for (int in : g_.inputs()) {
      const Value& v = g_.value(in);
      const std::string arg = argument_name(v.name, taken);
      out_ << ", " << arg << ": " << annotation(v.type);
      binds += "    " + var(in) + " = " + arg + "\n";
    }
    out_ << "):\n" << binds;
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

  // A Python identifier from a value name ("layer1.0.relu" -> "layer1_0_relu"), unique and never a body variable.
  static std::string argument_name(const std::string& name, std::set<std::string>& taken) {
    std::string s;
    for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "x_" + s;
    static const std::set<std::string> reserved = {"self", "and", "as", "assert", "break", "class", "continue", "def",
        "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
        "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "None", "True", "False", "torch"};
    const bool body_name = s.size() > 1 && s[0] == 'v' &&
                           std::all_of(s.begin() + 1, s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (reserved.count(s) || body_name) s += "_in";
    std::string unique = s;
    for (int k = 1; taken.count(unique); ++k) unique = s + "_" + std::to_string(k);
    taken.insert(unique);
    return unique;
  }

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

  // The op table spells each kind; the writer supplies inputs as expressions and attributes as literals.
  class Args final : public ops::TorchScriptArgs {
   public:
    Args(const SourceWriter& w, const Node& n) : w_(w), n_(n) {}
    const Node& node() const override { return n_; }
    std::string in(size_t k) const override { return w_.in(n_, k); }
    std::string args(size_t from) const override { return w_.args(n_, from); }
    std::string attr(const char* key) const override { return a(n_, key); }
    std::string output_type() const override { return list_type(w_.g_.value(n_.outputs[0]).type); }
    std::string attribute_path(const std::string& dotted) const override { return tailor::attribute_path(dotted); }

   private:
    const SourceWriter& w_;
    const Node& n_;
  };

  void emit(const Node& n) {
    const ops::OpDef* def = nullptr;
    try {
      def = &ops::op_def(n.kind);
    } catch (const Error&) {
      TAILOR_FAIL("cannot export node '", n.name, "': op kind '", n.kind, "' has no TorchScript form");
    }
    const std::string expr = def->torchscript(Args(*this, n));
    if (!expr.empty()) assign(n, expr);
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
  TAILOR_CHECK(!fs::exists(dir) || fs::is_directory(dir), "cannot write '", path, "': '", dir.string(),
               "' is a file, not a folder");
  TAILOR_CHECK(fs::is_directory(dir), "cannot write '", path, "': folder '", dir.string(), "' does not exist");
  TAILOR_CHECK(!fs::is_directory(target), "cannot write '", path, "': it is a folder");
  std::random_device rd;
  const fs::path tmp = dir / ("." + target.filename().string() + ".tmp" + std::to_string(rd()));
  {
    std::ofstream out(tmp, std::ios::binary);
    TAILOR_CHECK(out.good(), "cannot write '", path, "': ", std::strerror(errno));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    const int write_errno = errno;
    if (!out.good()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      TAILOR_FAIL("writing '", path, "' failed: ", std::strerror(write_errno), " (nothing was written)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    TAILOR_FAIL("cannot move the finished file into place at '", path, "'");
  }
}

std::string to_archive(const GraphModuleImpl& module) {
  torch::jit::Module m = to_torchscript(module);
  std::ostringstream buffer;
  torch::jit::ExtraFilesMap extra{{kEmbeddedGraphFile, module.graph().to_json()},
                                  {kProvenanceFile, provenance_to_json(module.provenance())}};
  m.save(buffer, extra);
  return buffer.str();
}

void save(const GraphModuleImpl& module, const std::string& path) { write_file_atomically(path, to_archive(module)); }

}  // namespace tailor
