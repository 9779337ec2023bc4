// Error model: every failure of the syncconfig API is reported by throwing syncconfig::Error.
// An Error carries a code, a message that says what failed, and whether retrying can help.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace syncconfig {

enum class ErrorCode {
  // The caller passed something unusable (bad key, bad value, bad option). Retrying the same
  // call cannot help.
  kInvalidArgument,
  // The database could not be reached or the connection broke. Retrying later can help. For a
  // write whose connection broke after the write was sent (the message says so) the outcome is
  // unknown, as with kTimeout: it is never re-run by the library, which could commit it twice.
  kUnavailable,
  // The database did not answer within Options::db_timeout. Retrying later can help; for a write
  // the outcome is unknown (it may or may not have committed).
  kTimeout,
  // The database answered with an error (SQL error, permission, constraint). Retrying the same
  // call does not help until something is changed.
  kDatabase,
  // The store was shut down. Retrying cannot help.
  kShutdown,
  // A revision outside the recorded history: older than the retention kept, or newer than the
  // newest. Retrying the same call cannot help.
  kOutOfRange,
  // A local failure (e.g. starting an embedded server, a file system error). See the message.
  kInternal,
};

// Name of a code, e.g. "unavailable".
std::string_view to_string(ErrorCode code) noexcept;

// Whether retrying the failed call later can succeed without changing anything.
constexpr bool is_retryable(ErrorCode code) noexcept {
  return code == ErrorCode::kUnavailable || code == ErrorCode::kTimeout;
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);

  ErrorCode code() const noexcept { return code_; }
  bool retryable() const noexcept { return is_retryable(code_); }
  // The message without the "(retrying may help)" suffix that what() carries.
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCode code_;
  std::string message_;
};

}  // namespace syncconfig
