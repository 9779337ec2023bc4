#include "http/sse_parser.h"

#include <algorithm>

#include "syncconfig/error.h"

namespace syncconfig::http {

SseParser::SseParser(std::size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

void SseParser::check_size() const {
  if (line_.size() + data_.size() + type_.size() > max_event_bytes_) {
    throw Error(ErrorCode::kInternal, "an event of the server's event stream is larger than " +
                                          std::to_string(max_event_bytes_) + " bytes");
  }
}

bool SseParser::feed(std::string_view bytes, const SseHandler& on_event) {
  std::size_t i = 0;
  if (skip_lf_ && !bytes.empty()) {
    skip_lf_ = false;
    if (bytes.front() == '\n') i = 1;
  }
  while (i < bytes.size()) {
    const std::size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(i));
      check_size();
      return true;
    }
    line_.append(bytes.substr(i, end - i));
    check_size();
    i = end + 1;
    if (bytes[end] == '\r') {
      if (i == bytes.size()) {
        skip_lf_ = true;  // The LF of a CRLF may come with the next bytes.
      } else if (bytes[i] == '\n') {
        ++i;
      }
    }
    std::string text = std::move(line_);
    line_.clear();
    if (!line(text, on_event)) return false;
  }
  return true;
}

bool SseParser::line(std::string_view text, const SseHandler& on_event) {
  if (first_line_) {
    first_line_ = false;
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  }
  if (text.empty()) {  // Dispatch.
    if (data_.empty()) {
      type_.clear();
      return true;
    }
    SseEvent event;
    if (!type_.empty()) event.type = std::move(type_);
    data_.pop_back();  // The '\n' after the last data line.
    event.data = std::move(data_);
    event.id = last_id_;
    type_.clear();
    data_.clear();
    return on_event(event);
  }
  if (text.front() == ':') return true;  // A comment (e.g. a keepalive).

  std::string_view field = text;
  std::string_view value;
  if (const std::size_t colon = text.find(':'); colon != std::string_view::npos) {
    field = text.substr(0, colon);
    value = text.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
  }
  if (field == "event") {
    type_ = std::string(value);
  } else if (field == "data") {
    data_.append(value);
    data_ += '\n';
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_ = std::string(value);
  } else if (field == "retry") {
    if (!value.empty() &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      if (value.size() <= 9) retry_ = std::chrono::milliseconds(std::stoll(std::string(value)));
    }
  }
  return true;
}

}  // namespace syncconfig::http
