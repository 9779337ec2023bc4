// Server-Sent Events: turns the bytes of a text/event-stream body into events, as the HTML
// standard's "event stream interpretation" says (section 9.2.6), so that any conforming server
// is read correctly, not only ours.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace syncconfig::http {

struct SseEvent {
  // The `event:` field; "message" when the event has none.
  std::string type = "message";
  // The `data:` lines joined by '\n'.
  std::string data;
  // The last event ID as of this event: set by an `id:` field of this or an earlier event of the
  // stream (it persists, per the standard); what a reconnecting client sends as Last-Event-ID.
  std::string id;
};

// Returns false to stop: feed() then returns false at once, dropping what follows.
using SseHandler = std::function<bool(const SseEvent&)>;

// One parser per stream. Not thread-safe (one stream is read by one thread).
class SseParser {
 public:
  // An event (or a line) whose text grows past `max_event_bytes` makes feed() throw
  // syncconfig::Error(kInternal): a server that never ends an event cannot exhaust memory.
  explicit SseParser(std::size_t max_event_bytes = std::size_t{256} << 20);

  // Parses the next bytes of the body, split anywhere (inside a line, between CR and LF), and
  // calls `on_event` for every event completed by them. Lines end with CRLF, LF or CR; a
  // leading UTF-8 BOM is skipped; comment lines (':' first) and unknown fields are ignored; an
  // event without data lines is not dispatched (its `id:` still counts). Returns false when
  // `on_event` returned false.
  bool feed(std::string_view bytes, const SseHandler& on_event);

  // The last event ID seen so far (see SseEvent::id), even from an event without data.
  const std::string& last_event_id() const { return last_id_; }
  // The last valid `retry:` field (the server's suggested reconnection delay), if any.
  std::optional<std::chrono::milliseconds> retry() const { return retry_; }

 private:
  // Handles one complete line; returns what `on_event` returned (true if not called).
  bool line(std::string_view text, const SseHandler& on_event);
  void check_size() const;

  std::size_t max_event_bytes_;
  std::string line_;        // The current line so far.
  bool skip_lf_ = false;    // The last byte was a CR: a following LF belongs to it.
  bool first_line_ = true;  // A BOM may start the first line only.
  std::string type_;        // Event type buffer.
  std::string data_;        // Data buffer: each data line followed by '\n'.
  std::string last_id_;     // Last event ID buffer.
  std::optional<std::chrono::milliseconds> retry_;
};

}  // namespace syncconfig::http
