#include "tailor/pass/pass.hpp"

#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <typeinfo>

#include <c10/util/Exception.h>


namespace tailor {

// ---------------------------------------------------------------- options

OptionBase::OptionBase(PassOptions& owner, std::string key, std::string help) : key_(std::move(key)), help_(std::move(help)) {
  for (const OptionBase* o : owner.options_)
    TAILOR_INTERNAL_ASSERT(o->key() != key_, "option ", key_, " declared twice");
  owner.options_.push_back(this);
}

OptionBase& PassOptions::find(const std::string& key) const {
  for (OptionBase* o : options_)
    if (o->key() == key) return *o;
  std::string valid;
  for (const OptionBase* o : options_) valid += (valid.empty() ? "" : ", ") + o->key();
  TAILOR_FAIL("invalid option '", key, "'; candidates are: ", valid.empty() ? "(none)" : valid);
}

const OptionBase& PassOptions::option(const std::string& key) const { return find(key); }

void PassOptions::set(const std::string& key, const std::string& text) { find(key).parse(text); }

std::string PassOptions::str(bool only_changed) const {
  std::string out;
  for (const OptionBase* o : options_)
    if (!only_changed || !o->is_default()) out += (out.empty() ? "" : ",") + o->key() + "=" + o->print();
  return out;
}

namespace {
std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}
bool quoted(const std::string& t) { return t.size() >= 2 && t.front() == '"' && t.back() == '"'; }
}  // namespace

std::string EnumOption::type() const {
  std::string out = "one of: ";
  for (size_t i = 0; i < choices_.size(); ++i) out += (i ? ", " : "") + choices_[i];
  return out;
}

void EnumOption::parse(const std::string& text) {
  const std::string v = detail::parse_text(key(), text);
  TAILOR_CHECK(std::find(choices_.begin(), choices_.end(), v) != choices_.end(), "option '", key(), "' expects ",
               type(), "; got '", v, "'");
  value_ = v;
}

namespace detail {

std::string print_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  // The shortest text that reads back to the same double.
  for (int precision = 1; precision <= 17; ++precision) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) return buf;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string print_text(const std::string& v) {
  const bool plain = !v.empty() && v.find_first_of(",{}[]()=\"\\; ") == std::string::npos;
  if (plain || v.empty()) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string parse_text(const std::string& key, const std::string& raw) {
  const std::string t = trim(raw);
  if (!quoted(t)) return t;
  std::string out;
  for (size_t i = 1; i + 1 < t.size(); ++i) {
    if (t[i] == '\\' && i + 2 < t.size()) ++i;
    out += t[i];
  }
  return out;
}

double parse_number(const std::string& key, const std::string& raw) {
  const std::string text = trim(raw);
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

int64_t parse_integer(const std::string& key, const std::string& raw) {
  const std::string text = trim(raw);
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

bool parse_bool(const std::string& key, const std::string& raw) {
  const std::string text = trim(raw);
  if (text == "true" || text == "1" || text == "True") return true;
  if (text == "false" || text == "0" || text == "False") return false;
  TAILOR_FAIL("option '", key, "' expects true or false, got '", text, "'");
}

std::vector<std::string> split_list_text(const std::string& key, const std::string& raw) {
  std::string body = trim(raw);
  char separator = ';';
  if (!body.empty() && body.front() == '[') {
    TAILOR_CHECK(body.back() == ']', "option '", key, "' expects a list like [a,b], got '", body, "'");
    body = body.substr(1, body.size() - 2);
    separator = ',';
  }
  std::vector<std::string> items;
  std::string cur;
  bool in_quote = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_quote && c == '\\' && i + 1 < body.size()) {
      cur += c;
      cur += body[++i];
      continue;
    }
    if (c == '"') in_quote = !in_quote;
    if (!in_quote && (c == separator || (separator == ';' && c == ','))) {
      items.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  TAILOR_CHECK(!in_quote, "option '", key, "': unclosed quote in '", raw, "'");
  if (!trim(cur).empty() || !items.empty()) items.push_back(trim(cur));
  for (const auto& item : items)
    TAILOR_CHECK(!item.empty(), "option '", key, "': empty item in the list '", raw, "'");
  return items;
}

}  // namespace detail

// ---------------------------------------------------------------- passes and pipelines

std::string Pass::str(bool only_changed) const {
  const std::string opts = options_.str(only_changed);
  return opts.empty() ? info().name : info().name + "{" + opts + "}";
}

const CostReport& PassContext::costs(GraphModuleImpl& module) {
  if (!costs_) costs_ = analyze(module, input_shapes);
  return *costs_;
}

PassNeeds needs_of(const Pass& pass) {
  if (const auto* p = dynamic_cast<const Pipeline*>(&pass)) {
    PassNeeds all;
    for (const auto& sub : p->passes()) {
      const PassNeeds n = needs_of(*sub);
      all.input_shapes |= n.input_shapes;
      all.calibration |= n.calibration;
      all.labels |= n.labels;
      all.training_data |= n.training_data;
      all.teacher |= n.teacher;
    }
    return all;
  }
  return pass.info().needs;
}

std::string missing_needs(const Pass& pass, const PassContext& context) {
  if (const auto* p = dynamic_cast<const Pipeline*>(&pass)) {
    for (const auto& sub : p->passes())
      if (auto why = missing_needs(*sub, context); !why.empty()) return why;
    return "";
  }
  const PassInfo info = pass.info();
  const std::string text = pass.str(true);
  const std::string who = "pass '" + info.name + "'" + (text != info.name ? " (" + text + ")" : "") + " needs ";
  if (info.needs.input_shapes && context.input_shapes.empty()) return who + "the model's input shapes (give --input)";
  if (info.needs.calibration && context.calibration.empty())
    return who + "calibration data (tailor: --data fashion-mnist or --data random; recipes: data)";
  if (info.needs.labels && context.calibration_labels.size() != context.calibration.size())
    return who + "labelled calibration data (--data fashion-mnist)";
  if (info.needs.teacher && context.teacher.empty()) {
    const auto& opts = pass.options().all();
    const bool given = std::any_of(opts.begin(), opts.end(), [](const OptionBase* o) {
      return o->key() == "teacher" && !o->is_default();
    });
    if (!given) return who + "a teacher model: give the teacher (its teacher option, e.g. distill{teacher=baseline.pt}, or --teacher)";
  }
  return "";
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
    if (!nested) {
      const std::string why = missing_needs(*pass, context);
      TAILOR_CHECK(why.empty(), why);
    }
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
    context.stats_.clear();
    const auto start = std::chrono::steady_clock::now();
    bool changed = false;
    try {
      changed = pass->run(module, context);
    } catch (const Error& e) {
      if (nested) throw;
      TAILOR_FAIL("pass '", pass->info().name, "' failed: ", e.message());
    } catch (const c10::Error& e) {
      TAILOR_FAIL("pass '", pass->info().name, "' failed: ", e.what_without_backtrace());
    }
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    record.changed = changed;
    record.stats = std::move(context.stats_);
    context.stats_.clear();
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
    if (!nested) {
      context.records.push_back(record);
      module.mutable_provenance().push_back(record);
    }
    for (const auto& inst : context.instruments) inst->after(*pass, module, context, changed);
    any = any || changed;
  }
  return any;
}

std::string Pipeline::str(bool only_changed) const {
  std::string out;
  for (const auto& p : passes_) {
    const bool nested = dynamic_cast<const Pipeline*>(p.get()) != nullptr;
    out += (out.empty() ? "" : ",") + (nested ? "(" + p->str(only_changed) + ")" : p->str(only_changed));
  }
  return out;
}

// ---------------------------------------------------------------- registry

namespace detail {
// Generated by the build from every TAILOR_REGISTER_PASS in src/*/passes/*.cpp (build/.../pass_registry.cpp).
void register_builtin_passes();
}  // namespace detail

namespace {

struct Registered {
  PassFactory factory;
  const std::type_info* type = nullptr;  ///< null for passes registered by name only
};

struct Registry {
  std::recursive_mutex mutex;
  std::map<std::string, Registered> passes;
  bool builtins_done = false;
};

Registry& registry() {
  static Registry r;
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  if (!r.builtins_done) {
    r.builtins_done = true;
    detail::register_builtin_passes();
  }
  return r;
}

void add_pass(const std::string& name, PassFactory factory, const std::type_info* type) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  TAILOR_CHECK(!name.empty() && name.find_first_of(",{}()= ") == std::string::npos, "'", name,
               "' cannot name a pass (letters, digits, '-' and '_')");
  auto it = r.passes.find(name);
  if (it != r.passes.end()) {
    if (type && it->second.type && *it->second.type == *type) return;  // the same class again
    TAILOR_FAIL("a pass named '", name, "' is already registered");
  }
  r.passes[name] = {std::move(factory), type};
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
        bool in_quote = false;
        while (pos_ < text_.size()) {
          const char c = text_[pos_];
          if (in_quote && c == '\\') {
            pos_ += 2;
            continue;
          }
          if (c == '"') in_quote = !in_quote;
          if (!in_quote && c == '[') ++depth;
          if (!in_quote && c == ']') --depth;
          if (!in_quote && depth == 0 && (c == ',' || c == '}')) break;
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

void register_pass(const std::string& name, PassFactory factory) { add_pass(name, std::move(factory), nullptr); }

namespace detail {
void register_pass_type(const std::string& name, PassFactory factory, const std::type_info& type) {
  add_pass(name, std::move(factory), &type);
}
}  // namespace detail

std::vector<PassInfo> registered_passes() {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  std::vector<PassInfo> out;
  for (const auto& [name, entry] : r.passes) out.push_back(entry.factory()->info());
  return out;
}

std::shared_ptr<Pass> make_pass(const std::string& name) {
  Registry& r = registry();
  PassFactory factory;
  {
    std::lock_guard<std::recursive_mutex> lock(r.mutex);
    auto it = r.passes.find(name);
    if (it == r.passes.end()) {
      std::string valid;
      for (const auto& [n, f] : r.passes) valid += (valid.empty() ? "" : ", ") + n;
      TAILOR_FAIL("unknown pass '", name, "'; registered passes are: ", valid);
    }
    factory = it->second.factory;
  }
  return factory();
}

std::shared_ptr<Pipeline> parse_pipeline(const std::string& text) { return Parser(text).parse(); }

}  // namespace tailor
