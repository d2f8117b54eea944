// tailor/pass/options.hpp: typed pass options. A pass declares each option once, as a member with its key,
// default and help (`Option<double> ratio{this, "ratio", 0.5, "..."}`); the pipeline text sets and prints it
// losslessly, and a wrong value fails naming the option and the type or values it expects.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tailor/core/error.hpp"

namespace tailor {

class PassOptions;

/// One declared option, whatever its type.
class OptionBase {
 public:
  OptionBase(const OptionBase&) = delete;
  OptionBase& operator=(const OptionBase&) = delete;
  virtual ~OptionBase() = default;
  const std::string& key() const { return key_; }
  const std::string& help() const { return help_; }
  /// "number", "integer", "true or false", "text", "one of: a, b", "list of integers", ...
  virtual std::string type() const = 0;
  /// Sets the value from pipeline text; throws tailor::Error naming the option and the expected type.
  virtual void parse(const std::string& text) = 0;
  /// The value as pipeline text that `parse` reads back to the same value.
  virtual std::string print() const = 0;
  virtual std::string print_default() const = 0;
  virtual bool is_default() const = 0;
  virtual void reset() = 0;

 protected:
  OptionBase(PassOptions& owner, std::string key, std::string help);

 private:
  std::string key_, help_;
};

/// The options a pass declared, in declaration order.
class PassOptions {
 public:
  PassOptions() = default;
  PassOptions(const PassOptions&) = delete;
  PassOptions& operator=(const PassOptions&) = delete;
  /// Parses `text` as the declared type of `key`; an undeclared key fails and lists the valid ones.
  void set(const std::string& key, const std::string& text);
  const OptionBase& option(const std::string& key) const;
  const std::vector<OptionBase*>& all() const { return options_; }
  /// "key=value,..." for every option (or only those that differ from their default), in declaration order.
  std::string str(bool only_changed = false) const;

 private:
  friend class OptionBase;
  OptionBase& find(const std::string& key) const;
  std::vector<OptionBase*> options_;
};

namespace detail {
std::string print_number(double v);
std::string print_text(const std::string& v);  ///< quoted when it holds a separator of the pipeline text
double parse_number(const std::string& key, const std::string& text);
int64_t parse_integer(const std::string& key, const std::string& text);
bool parse_bool(const std::string& key, const std::string& text);
std::string parse_text(const std::string& key, const std::string& text);
/// "[a,b]", "a;b" or "a" into items (quotes respected).
std::vector<std::string> split_list_text(const std::string& key, const std::string& text);

template <class T>
struct OptionTraits;
template <>
struct OptionTraits<double> {
  static const char* name() { return "number"; }
  static double parse(const std::string& k, const std::string& t) { return parse_number(k, t); }
  static std::string print(double v) { return print_number(v); }
};
template <>
struct OptionTraits<int64_t> {
  static const char* name() { return "integer"; }
  static int64_t parse(const std::string& k, const std::string& t) { return parse_integer(k, t); }
  static std::string print(int64_t v) { return std::to_string(v); }
};
template <>
struct OptionTraits<bool> {
  static const char* name() { return "true or false"; }
  static bool parse(const std::string& k, const std::string& t) { return parse_bool(k, t); }
  static std::string print(bool v) { return v ? "true" : "false"; }
};
template <>
struct OptionTraits<std::string> {
  static const char* name() { return "text"; }
  static std::string parse(const std::string& k, const std::string& t) { return parse_text(k, t); }
  static std::string print(const std::string& v) { return print_text(v); }
};
}  // namespace detail

/// A scalar option: double, int64_t, bool or std::string.
template <class T>
class Option : public OptionBase {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, int64_t> || std::is_same_v<T, bool> ||
                    std::is_same_v<T, std::string>,
                "pass options are double, int64_t, bool or std::string (or lists of them)");

 public:
  template <class Owner>
  Option(Owner* owner, std::string key, T default_value, std::string help)
      : OptionBase(owner->options(), std::move(key), std::move(help)), default_(default_value), value_(default_value) {}
  const T& operator*() const { return value_; }
  const T* operator->() const { return &value_; }
  const T& value() const { return value_; }
  operator const T&() const { return value_; }
  Option& operator=(T v) {
    value_ = std::move(v);
    return *this;
  }
  std::string type() const override { return detail::OptionTraits<T>::name(); }
  void parse(const std::string& text) override { value_ = detail::OptionTraits<T>::parse(key(), text); }
  std::string print() const override { return detail::OptionTraits<T>::print(value_); }
  std::string print_default() const override { return detail::OptionTraits<T>::print(default_); }
  bool is_default() const override { return value_ == default_; }
  void reset() override { value_ = default_; }
  /// For a pass whose default differs from the one of the base class that declares the option.
  void set_default(T v) {
    default_ = v;
    value_ = std::move(v);
  }

 protected:
  T default_, value_;
};

/// A text option restricted to a list of values (an enum).
class EnumOption : public Option<std::string> {
 public:
  template <class Owner>
  EnumOption(Owner* owner, std::string key, std::string default_value, std::vector<std::string> choices,
             std::string help)
      : Option<std::string>(owner, std::move(key), std::move(default_value), std::move(help)),
        choices_(std::move(choices)) {}
  std::string type() const override;
  void parse(const std::string& text) override;
  const std::vector<std::string>& choices() const { return choices_; }
  using Option<std::string>::operator=;

 private:
  std::vector<std::string> choices_;
};

/// A list option: "[a,b]" in pipeline text (a recipe's YAML list becomes one).
template <class T>
class ListOption : public OptionBase {
 public:
  template <class Owner>
  ListOption(Owner* owner, std::string key, std::vector<T> default_value, std::string help)
      : OptionBase(owner->options(), std::move(key), std::move(help)), default_(default_value), value_(default_value) {}
  const std::vector<T>& operator*() const { return value_; }
  const std::vector<T>* operator->() const { return &value_; }
  const std::vector<T>& value() const { return value_; }
  operator const std::vector<T>&() const { return value_; }
  ListOption& operator=(std::vector<T> v) {
    value_ = std::move(v);
    return *this;
  }
  std::string type() const override { return std::string("list of ") + detail::OptionTraits<T>::name() + " values"; }
  void parse(const std::string& text) override {
    std::vector<T> out;
    for (const auto& item : detail::split_list_text(key(), text)) out.push_back(detail::OptionTraits<T>::parse(key(), item));
    value_ = std::move(out);
  }
  std::string print() const override { return print_list(value_); }
  std::string print_default() const override { return print_list(default_); }
  bool is_default() const override { return value_ == default_; }
  void reset() override { value_ = default_; }

 private:
  static std::string print_list(const std::vector<T>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + detail::OptionTraits<T>::print(v[i]);
    return out + "]";
  }
  std::vector<T> default_, value_;
};

}  // namespace tailor
