// tailor/core/error.hpp: the one error type tailor throws and the checks that raise it.
// TAILOR_CHECK is for user errors (bad files, bad options, unsupported models); TAILOR_INTERNAL_ASSERT
// is for invariants that only a tailor bug can break.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tailor {

/// Raised for every error tailor reports; what() carries the message and where it was raised.
class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line)
      : std::runtime_error(message), message_(std::move(message)), file_(file), line_(line) {}
  /// The message without the source location.
  const std::string& message() const { return message_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_;
  const char* file_;
  int line_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] inline void raise(const char* file, int line, std::string message) {
  throw Error(std::move(message), file, line);
}
}  // namespace detail
}  // namespace tailor

#define TAILOR_CHECK(cond, ...)                                                         \
  do {                                                                                  \
    if (!(cond)) ::tailor::detail::raise(__FILE__, __LINE__, ::tailor::detail::concat(__VA_ARGS__)); \
  } while (0)

#define TAILOR_FAIL(...) ::tailor::detail::raise(__FILE__, __LINE__, ::tailor::detail::concat(__VA_ARGS__))

#define TAILOR_INTERNAL_ASSERT(cond, ...)                                                      \
  do {                                                                                         \
    if (!(cond))                                                                               \
      ::tailor::detail::raise(__FILE__, __LINE__,                                              \
                              ::tailor::detail::concat("internal error (a tailor bug): ", #cond, \
                                                       " ", ##__VA_ARGS__));                   \
  } while (0)
