#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>

#include "cli/commands.h"

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
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &error);
  if (parsed == nullptr) {
    PQfreemem(error);
    throw UsageError(
        "the DSN is not a valid libpq connection string or URI (details are not shown because "
        "they may contain a password)");
  }
  PQconninfoFree(parsed);
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

std::string format_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(us / 1000000);
  long fraction = static_cast<long>(us % 1000000);
  if (fraction < 0) {
    fraction += 1000000;
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[64];
  std::size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof(text) - n, ".%06ldZ", fraction);
  return text;
}

std::chrono::system_clock::time_point parse_time(const std::string& text) {
  std::tm tm{};
  int year = 0, month = 0;
  long micros = 0;
  char fraction[16] = {};
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%15[0-9]Z", &year, &month, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, fraction) < 6) {
    return {};
  }
  std::string digits = std::string(fraction).substr(0, 6);
  digits.resize(6, '0');
  micros = std::strtol(digits.c_str(), nullptr, 10);
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::microseconds(micros);
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

StopSignal::StopSignal() {
  if (::pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(ErrorCode::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

StopSignal::~StopSignal() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
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
