#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "util/validation.h"

namespace syncconfig::cli {
namespace {

// The self-pipe: [0] read by wait(), [1] written by the handler and request_stop().
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int signo) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(signo);
  // Non-blocking: if the pipe is full, a wake-up is already pending.
  [[maybe_unused]] ssize_t n = ::write(stop_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

void print_error(std::string_view message) { std::cerr << "syncconfig: " << message << std::endl; }

int exit_code_for(const Error& error) {
  return error.code() == ErrorCode::kInvalidArgument || error.code() == ErrorCode::kOutOfRange
             ? kExitUsage
             : kExitFailure;
}

int conflict(std::string_view key, int64_t revision, const std::optional<nlohmann::json>& value) {
  print_error("conflict: key " + show_key(key) +
              (revision == 0 ? std::string(" is absent")
                             : " is at revision " + std::to_string(revision) + " with value " +
                                   json_text(value.value_or(nlohmann::json(nullptr)))) +
              "; nothing was written");
  return kExitConflict;
}

void check_dsn(const std::string& dsn) {
  if (!internal::is_parsable_dsn(dsn)) {
    throw UsageError(
        "the DSN is not a valid libpq connection string or URI (details are not shown because "
        "they may contain a password)");
  }
}

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::string show_key(std::string_view key) { return json_text(nlohmann::json(std::string(key))); }

nlohmann::json parse_value(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double (1e999).
    std::string reason = e.what();
    if (std::size_t end = reason.find("] "); end != std::string::npos) reason.erase(0, end + 2);
    throw UsageError("the value is not valid JSON (" + reason +
                     "); a string needs JSON quotes, e.g. '\"text\"'");
  }
}

std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string json_text(const nlohmann::ordered_json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

int printed() {
  if (std::cout.flush()) return kExitOk;
  print_error("writing to stdout failed");
  return kExitFailure;
}

bool write_line(const std::string& line) {
  std::string text = line + "\n";
  return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() &&
         std::fflush(stdout) == 0;
}

namespace {
bool reload_caught = false;
}

StopSignal::StopSignal(bool with_reload) {
  if (::pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(ErrorCode::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  if (with_reload) sigaction(SIGHUP, &action, nullptr);
  reload_caught = with_reload;
}

StopSignal::~StopSignal() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (reload_caught) signal(SIGHUP, SIG_DFL);
  reload_caught = false;
  ::close(stop_pipe[0]);
  ::close(stop_pipe[1]);
  stop_pipe[0] = stop_pipe[1] = -1;
}

int StopSignal::wait() {
  for (;;) {
    pollfd p{stop_pipe[0], POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno == EINTR) continue;
    unsigned char byte = 0;
    ssize_t n = ::read(stop_pipe[0], &byte, 1);
    if (n == 1) return byte;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return 0;
  }
}

void StopSignal::request_stop() {
  if (stop_pipe[1] >= 0) on_stop_signal(0);
}

}  // namespace syncconfig::cli
