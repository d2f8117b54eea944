#include "tailor/pass/pass.hpp"

#include <chrono>
#include <cctype>
#include <mutex>

#include "tailor/ir/ops.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {

// ---------------------------------------------------------------- options

PassOptions& PassOptions::declare(const std::string& key, AttrValue default_value, const std::string& help) {
  TAILOR_INTERNAL_ASSERT(!values_.count(key), "option ", key, " declared twice");
  specs_.push_back({key, default_value, help});
  values_[key] = std::move(default_value);
  return *this;
}

const OptionSpec& PassOptions::spec(const std::string& key) const {
  for (const auto& s : specs_)
    if (s.key == key) return s;
  std::string valid;
  for (const auto& s : specs_) valid += (valid.empty() ? "" : ", ") + s.key;
  TAILOR_FAIL("invalid option '", key, "'; candidates are: ", valid.empty() ? "(none)" : valid);
}

namespace {
std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

double parse_double(const std::string& key, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TAILOR_CHECK(used == text.size() && !text.empty(), "option '", key, "' expects a number, got '", text, "'");
  return v;
}

int64_t parse_int(const std::string& key, const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TAILOR_CHECK(used == text.size() && !text.empty(), "option '", key, "' expects an integer, got '", text, "'");
  return v;
}

std::vector<std::string> split_list(const std::string& text) {
  std::string body = trim(text);
  if (!body.empty() && body.front() == '[' && body.back() == ']') body = body.substr(1, body.size() - 2);
  std::vector<std::string> items;
  std::string cur;
  for (char c : body) {
    if (c == ',') {
      items.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty() || !items.empty()) items.push_back(trim(cur));
  return items;
}
}  // namespace

void PassOptions::set(const std::string& key, const std::string& raw) {
  const OptionSpec& s = spec(key);
  const std::string text = trim(raw);
  struct Parser {
    const std::string& key;
    const std::string& text;
    AttrValue operator()(std::monostate) const { return text; }
    AttrValue operator()(bool) const {
      if (text == "true" || text == "1" || text == "True") return true;
      if (text == "false" || text == "0" || text == "False") return false;
      TAILOR_FAIL("option '", key, "' expects true or false, got '", text, "'");
    }
    AttrValue operator()(int64_t) const { return parse_int(key, text); }
    AttrValue operator()(double) const { return parse_double(key, text); }
    AttrValue operator()(const std::string&) const { return text; }
    AttrValue operator()(const std::vector<int64_t>&) const {
      std::vector<int64_t> out;
      for (const auto& item : split_list(text)) out.push_back(parse_int(key, item));
      return out;
    }
    AttrValue operator()(const std::vector<double>&) const {
      std::vector<double> out;
      for (const auto& item : split_list(text)) out.push_back(parse_double(key, item));
      return out;
    }
  };
  values_[key] = std::visit(Parser{key, text}, s.default_value);
}

void PassOptions::set_value(const std::string& key, AttrValue value) {
  const OptionSpec& s = spec(key);
  TAILOR_CHECK(value.index() == s.default_value.index(), "option '", key, "' expects a value like ",
               to_source(s.default_value), ", got ", to_source(value));
  values_[key] = std::move(value);
}

const AttrValue& PassOptions::get(const std::string& key) const {
  spec(key);
  return values_.at(key);
}
int64_t PassOptions::i(const std::string& key) const { return std::get<int64_t>(get(key)); }
double PassOptions::f(const std::string& key) const { return std::get<double>(get(key)); }
bool PassOptions::b(const std::string& key) const { return std::get<bool>(get(key)); }
std::string PassOptions::s(const std::string& key) const { return std::get<std::string>(get(key)); }

std::string PassOptions::str() const {
  std::string out;
  for (const auto& s : specs_) {
    const AttrValue& v = values_.at(s.key);
    std::string text = std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : to_source(v);
    if (std::holds_alternative<bool>(v)) text = std::get<bool>(v) ? "true" : "false";
    if (auto l = std::get_if<std::vector<int64_t>>(&v)) {
      text = "[";
      for (size_t k = 0; k < l->size(); ++k) text += (k ? " " : "") + std::to_string((*l)[k]);
      text += "]";
    }
    out += (out.empty() ? "" : ",") + s.key + "=" + text;
  }
  return out;
}

// ---------------------------------------------------------------- passes and pipelines

std::string Pass::str() const {
  const std::string opts = options_.str();
  return opts.empty() ? info().name : info().name + "{" + opts + "}";
}

const CostReport& PassContext::costs(GraphModuleImpl& module) {
  if (!costs_) costs_ = analyze(module, input_shapes);
  return *costs_;
}

Pipeline& Pipeline::add(std::shared_ptr<Pass> pass) {
  TAILOR_CHECK(pass, "cannot add a null pass to a pipeline");
  passes_.push_back(std::move(pass));
  return *this;
}

bool Pipeline::run(GraphModuleImpl& module, PassContext& context) {
  bool any = false;
  for (const auto& pass : passes_) {
    const bool nested = dynamic_cast<const Pipeline*>(pass.get()) != nullptr;
    for (const auto& inst : context.instruments) inst->before(*pass, module, context);
    PassRecord record;
    record.pass = pass->str();
    const bool measure = !nested && !context.input_shapes.empty();
    if (measure) {
      const CostReport& c = context.costs(module);
      record.params_before = c.params;
      record.macs_before = c.macs;
      record.weight_bytes_before = c.weight_bytes;
    }
    const auto start = std::chrono::steady_clock::now();
    bool changed = false;
    try {
      changed = pass->run(module, context);
    } catch (const Error& e) {
      TAILOR_FAIL("pass '", pass->info().name, "' failed: ", e.message());
    }
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    record.changed = changed;
    if (changed) {
      module.recompile();
      context.invalidate_analyses();
    }
    if (context.verify) {
      try {
        module.graph().verify();
      } catch (const Error& e) {
        TAILOR_FAIL("pass '", pass->info().name, "' left an invalid graph: ", e.message());
      }
    }
    if (measure) {
      const CostReport& c = context.costs(module);
      record.params_after = c.params;
      record.macs_after = c.macs;
      record.weight_bytes_after = c.weight_bytes;
    }
    if (!nested) context.records.push_back(record);
    for (const auto& inst : context.instruments) inst->after(*pass, module, context, changed);
    any = any || changed;
  }
  return any;
}

std::string Pipeline::str() const {
  std::string out;
  for (const auto& p : passes_) {
    const bool nested = dynamic_cast<const Pipeline*>(p.get()) != nullptr;
    out += (out.empty() ? "" : ",") + (nested ? "(" + p->str() + ")" : p->str());
  }
  return out;
}

// ---------------------------------------------------------------- registry

namespace detail {
void register_prune_passes(const std::function<void(const std::string&, PassFactory)>& add);
}  // namespace detail
namespace quant::detail {
void register_quant_passes(const std::function<void(const std::string&, PassFactory)>& add);
}  // namespace quant::detail
namespace train::detail {
void register_train_passes(const std::function<void(const std::string&, PassFactory)>& add);
}  // namespace train::detail

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, PassFactory> factories;
};

std::shared_ptr<Pass> simple(const char* name, const char* description, std::function<bool(GraphModuleImpl&)> fn) {
  return std::make_shared<FunctionPass>(PassInfo{name, description},
                                        [fn](GraphModuleImpl& m, PassContext&) { return fn(m); });
}

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    // Registered here rather than by static initializers, which a static library would drop.
    reg->factories["fold-batch-norm"] = [] {
      return simple("fold-batch-norm", "fold eval-mode batch norm into the preceding conv or linear layer",
                    [](GraphModuleImpl& m) { return fold_batch_norm(m); });
    };
    reg->factories["remove-dropout"] = [] {
      return simple("remove-dropout", "remove dropout (identity at inference)",
                    [](GraphModuleImpl& m) { return remove_dropout(m); });
    };
    reg->factories["dce"] = [] {
      return simple("dce", "remove nodes whose results are never used", [](GraphModuleImpl& m) {
        const bool changed = eliminate_dead_code(m.mutable_graph());
        if (changed) m.drop_unused_tensors();
        return changed;
      });
    };
    detail::register_prune_passes([reg](const std::string& name, PassFactory f) { reg->factories[name] = std::move(f); });
    quant::detail::register_quant_passes([reg](const std::string& name, PassFactory f) { reg->factories[name] = std::move(f); });
    train::detail::register_train_passes([reg](const std::string& name, PassFactory f) { reg->factories[name] = std::move(f); });
    reg->factories["canonicalize"] = [] {
      return simple("canonicalize", "rewrite traced idioms (addmm with a transposed weight) into native ops",
                    [](GraphModuleImpl& m) { return canonicalize(m.mutable_graph()); });
    };
    return reg;
  }();
  return *r;
}

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  std::shared_ptr<Pipeline> parse() {
    auto p = parse_list();
    skip_space();
    TAILOR_CHECK(pos_ == text_.size(), "pipeline text '", text_, "': unexpected '", text_.substr(pos_),
                 "' at column ", pos_ + 1);
    return p;
  }

 private:
  const std::string& text_;
  size_t pos_ = 0;

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::shared_ptr<Pipeline> parse_list() {
    auto pipeline = std::make_shared<Pipeline>();
    skip_space();
    if (pos_ == text_.size() || text_[pos_] == ')') return pipeline;
    do {
      if (eat('(')) {
        pipeline->add(parse_list());
        TAILOR_CHECK(eat(')'), "pipeline text '", text_, "': missing ')' at column ", pos_ + 1);
      } else {
        pipeline->add(parse_pass());
      }
    } while (eat(','));
    return pipeline;
  }

  std::shared_ptr<Pass> parse_pass() {
    skip_space();
    const size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '-' ||
                                   text_[pos_] == '_'))
      ++pos_;
    const std::string name = text_.substr(start, pos_ - start);
    TAILOR_CHECK(!name.empty(), "pipeline text '", text_, "': expected a pass name at column ", start + 1);
    auto pass = make_pass(name);
    if (eat('{')) {
      while (!eat('}')) {
        skip_space();
        const size_t key_start = pos_;
        while (pos_ < text_.size() && text_[pos_] != '=' && text_[pos_] != '}') ++pos_;
        const std::string key = trim(text_.substr(key_start, pos_ - key_start));
        TAILOR_CHECK(eat('='), "pipeline text '", text_, "': option '", key, "' of pass '", name, "' has no value");
        const size_t value_start = pos_;
        int depth = 0;
        while (pos_ < text_.size()) {
          const char c = text_[pos_];
          if (c == '[') ++depth;
          if (c == ']') --depth;
          if (depth == 0 && (c == ',' || c == '}')) break;
          ++pos_;
        }
        TAILOR_CHECK(pos_ < text_.size(), "pipeline text '", text_, "': missing '}' after the options of '", name, "'");
        try {
          pass->options().set(key, text_.substr(value_start, pos_ - value_start));
        } catch (const Error& e) {
          TAILOR_FAIL("pass '", name, "': ", e.message());
        }
        eat(',');
      }
    }
    return pass;
  }
};

}  // namespace

void register_pass(const std::string& name, PassFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  TAILOR_CHECK(!r.factories.count(name), "a pass named '", name, "' is already registered");
  r.factories[name] = std::move(factory);
}

std::vector<PassInfo> registered_passes() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<PassInfo> out;
  for (const auto& [name, factory] : r.factories) out.push_back(factory()->info());
  return out;
}

std::shared_ptr<Pass> make_pass(const std::string& name) {
  Registry& r = registry();
  PassFactory factory;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(name);
    if (it == r.factories.end()) {
      std::string valid;
      for (const auto& [n, f] : r.factories) valid += (valid.empty() ? "" : ", ") + n;
      TAILOR_FAIL("unknown pass '", name, "'; registered passes are: ", valid);
    }
    factory = it->second;
  }
  return factory();
}

std::shared_ptr<Pipeline> parse_pipeline(const std::string& text) { return Parser(text).parse(); }

}  // namespace tailor
