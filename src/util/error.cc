#include "syncconfig/error.h"

namespace syncconfig {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kDatabase:
      return "database error";
    case ErrorCode::kShutdown:
      return "shut down";
    case ErrorCode::kInternal:
      return "internal error";
    case ErrorCode::kOutOfRange:
      return "out of range";
  }
  return "unknown";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(
          message + (is_retryable(code) ? " (retrying may help)" : " (retrying will not help)")),
      code_(code),
      message_(message) {}

}  // namespace syncconfig
