// `watch` through a syncconfig server: one JSON line per change from GET /watch, resumed by
// event id (Last-Event-ID) after a broken connection, until SIGINT/SIGTERM or stdout fails.
//
// Lines: {"key","value" (null if deleted),"revision"} per change (no "origin": the server does
// not send it); {"reset":true,"revision","settings"} when the server cannot resume exactly (the
// settings replace everything printed before, complete to "revision"). `ready` and `progress`
// events only move the resume position.
//
// The first connection failing is an error (exit 3, like the other commands). Once a stream was
// open, a broken connection, a 5xx answer or a clean end of the stream is retried forever, after
// 100 ms, doubling up to 5 s, reset once a stream delivers again. A 4xx answer ends the command
// (401, a bad prefix: retrying cannot help).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/remote_session.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using std::chrono::milliseconds;

constexpr milliseconds kFirstRetryDelay{100};
constexpr milliseconds kMaxRetryDelay{5000};

// SIGINT/SIGTERM, seen by a thread of its own (a signal handler cannot take the client's mutex)
// that stops the client and wakes a retry delay. Joined by the destructor.
class StopOnSignal {
 public:
  explicit StopOnSignal(http::HttpClient& client)
      : thread_([this, &client] {
          signal_.wait();
          {
            std::lock_guard lock(mu_);
            stopping_ = true;
          }
          client.stop();
          cv_.notify_all();
        }) {}
  ~StopOnSignal() {
    StopSignal::request_stop();  // Wakes the thread if no signal came.
    thread_.join();
  }
  // Waits `delay`; false when a stop came first.
  bool sleep(milliseconds delay) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, delay, [&] { return stopping_; });
  }

 private:
  StopSignal signal_;  // Before the thread starts (its constructor installs the handlers).
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Turns events into output lines and keeps the resume position.
class EventPrinter {
 public:
  EventPrinter(const RemoteSession& session, std::string prefix)
      : session_(session), prefix_(std::move(prefix)) {}

  // Handles one event; false when stdout failed (errno kept in write_errno()).
  bool operator()(const http::SseEvent& e) {
    if (!delivered_) {
      delivered_ = true;
      announce();
    }
    std::optional<std::string> line;
    if (e.type == "change") {
      json data = parse(e);
      ordered_json out;
      out["key"] = data.at("key");
      out["value"] = data.value("deleted", false) ? json(nullptr) : data.value("value", json());
      out["revision"] = data.value("revision", json());
      line = json_text(out);
    } else if (e.type == "reset") {
      json data = parse(e);
      ordered_json out;
      out["reset"] = true;
      out["revision"] = data.value("revision", json());
      out["settings"] = data.value("settings", json::object());
      line = json_text(out);
    }
    if (line && !write_line(*line)) {
      write_errno_ = errno;
      return false;
    }
    if (!e.id.empty()) last_id_ = e.id;  // Only once printed: a resume repeats nothing unseen.
    return true;
  }

  // Starts counting a new stream's deliveries; whether the last one delivered any event.
  bool next_stream() { return std::exchange(delivered_, false); }
  const std::optional<std::string>& last_id() const { return last_id_; }
  int write_errno() const { return write_errno_; }

 private:
  json parse(const http::SseEvent& e) const {
    json data = json::parse(e.data, nullptr, /*allow_exceptions=*/false);
    if (!data.is_object() || (e.type == "change" && !data.contains("key"))) {
      throw Error(ErrorCode::kInternal, "a '" + e.type + "' event from " + session_.url() +
                                            " is not the expected JSON object");
    }
    return data;
  }

  void announce() {
    if (announced_) {
      spdlog::warn("reconnected to {}{}", session_.url(),
                   last_id_ ? ", resuming after event " + *last_id_ : std::string());
      return;
    }
    announced_ = true;
    std::cerr << "syncconfig: watching " << session_.url() << " for changes"
              << (prefix_.empty() ? std::string() : " of keys starting with " + show_key(prefix_))
              << "; Ctrl-C stops" << std::endl;
  }

  const RemoteSession& session_;
  const std::string prefix_;
  std::optional<std::string> last_id_;
  bool delivered_ = false;
  bool announced_ = false;
  int write_errno_ = 0;
};

}  // namespace

int watch_server(const OperatorArgs& args, const ServerTarget& server) {
  RemoteSession session(server);
  StopOnSignal stop(session.client());
  EventPrinter printer(session, args.prefix);
  std::string target = session.scope() + "/watch";
  if (!args.prefix.empty()) target += "?prefix=" + http::percent_encode(args.prefix);

  bool ever_delivered = false;
  milliseconds delay = kFirstRetryDelay;
  for (;;) {
    http::Headers headers;
    if (printer.last_id()) headers.emplace_back("Last-Event-ID", *printer.last_id());
    std::string lost;
    std::optional<Error> failure;
    try {
      http::WatchResult result = session.client().watch(target, headers, std::ref(printer));
      switch (result.end) {
        case http::WatchResult::End::kStopped:
          return kExitOk;
        case http::WatchResult::End::kHandlerDone:
          print_error(std::string("writing to stdout failed: ") +
                      std::strerror(printer.write_errno()));
          return kExitFailure;
        case http::WatchResult::End::kRefused:
          if (result.response.status < 500 || !ever_delivered) {
            return session.refused(result.response);
          }
          lost = "HTTP " + std::to_string(result.response.status) + ": " +
                 RemoteSession::error_message(result.response).value_or("(no message)");
          break;
        case http::WatchResult::End::kServerClosed:
          lost = "the server ended the stream";
          break;
      }
    } catch (const Error& e) {
      if (!e.retryable()) throw;
      failure = e;
      lost = e.message();
    }
    if (printer.next_stream()) {
      ever_delivered = true;
      delay = kFirstRetryDelay;
    }
    if (!ever_delivered) {  // The first connection: a mistake more likely than an outage.
      if (failure) throw session.unreachable(*failure);
      print_error("watching " + session.url() + " failed: " + lost);
      return kExitFailure;
    }
    // Once per outage at warn level; the retries after it at debug level.
    spdlog::log(delay == kFirstRetryDelay ? spdlog::level::warn : spdlog::level::debug,
                "connection to {} lost ({}); reconnecting in {} ms", session.url(), lost,
                delay.count());
    if (!stop.sleep(delay)) return kExitOk;
    delay = std::min(delay * 2, kMaxRetryDelay);
  }
}

}  // namespace syncconfig::cli
