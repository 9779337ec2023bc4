#include "http/request.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>

#include "cache/md5.h"
#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig::service::detail {

using nlohmann::json;

namespace {
constexpr std::string_view kStoresPrefix = "/stores/";
constexpr std::string_view kSettingsPrefix = "/settings/";
}  // namespace

std::optional<KeyPath> parse_key_path(std::string_view path) {
  KeyPath out;
  if (path.starts_with(kStoresPrefix)) {
    std::string_view rest = path.substr(kStoresPrefix.size());
    std::size_t slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
    out.store = std::string(rest.substr(0, slash));
    path = rest.substr(slash);
  }
  if (!path.starts_with(kSettingsPrefix) || path.size() == kSettingsPrefix.size()) {
    return std::nullopt;
  }
  out.key = std::string(path.substr(kSettingsPrefix.size()));
  return out;
}

std::optional<Refusal> check_key(std::string_view key) {
  try {
    internal::validate_key(key);
  } catch (const Error& e) {
    return Refusal{400, e.what(), {}};
  }
  return std::nullopt;
}

int json_depth(std::string_view text, int limit) { return internal::json_text_depth(text, limit); }

std::variant<json, Refusal> parse_put_body(std::string_view key, std::string_view body,
                                           std::size_t max_body_bytes) {
  if (body.size() > max_body_bytes) {
    return Refusal{
        413, fmt::format("request body larger than {} bytes (max_body_bytes)", max_body_bytes), {}};
  }
  if (json_depth(body, kMaxBodyDepth) > kMaxBodyDepth) {
    return Refusal{400,
                   fmt::format("the body of PUT {} nests deeper than {} levels",
                               quote_for_message(key), kMaxBodyDepth),
                   {}};
  }
  json value;
  try {
    value = json::parse(body);
  } catch (const json::exception& e) {
    return Refusal{
        400,
        fmt::format("the body of PUT {} is not valid JSON: {}", quote_for_message(key), e.what()),
        {}};
  }
  // The parser refuses what JSON cannot hold (1e999: "number overflow"), so the value needs no
  // second look here: Store::set validates the key and serializes the value, once.
  return value;
}

std::optional<uint64_t> parse_event_id(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

uint32_t change_fingerprint_of_text(std::string_view key,
                                    std::optional<std::string_view> value_text) {
  internal::Md5 md5;
  md5.update(key);
  md5.update(std::string_view("\0", 1));
  if (value_text) {
    md5.update("s");
    md5.update(*value_text);
  } else {
    md5.update("d");
  }
  const std::array<uint8_t, 16> d = md5.finish();
  return uint32_t{d[0]} << 24 | uint32_t{d[1]} << 16 | uint32_t{d[2]} << 8 | uint32_t{d[3]};
}

uint32_t change_fingerprint(std::string_view key, const std::optional<json>& value) {
  if (!value) return change_fingerprint_of_text(key, std::nullopt);
  return change_fingerprint_of_text(key, std::optional<std::string_view>(value->dump(
                                             -1, ' ', false, json::error_handler_t::replace)));
}

std::string format_event_id(int64_t revision, const std::optional<ResumeAnchor>& anchor) {
  if (!anchor) return std::to_string(revision);
  if (anchor->revision == revision) return fmt::format("{}.{:08x}", revision, anchor->fingerprint);
  return fmt::format("{}.{}.{:08x}", revision, anchor->revision, anchor->fingerprint);
}

std::string bad_event_id(std::string_view what) {
  return fmt::format(
      "{} must be an event id of this service: R, R.hhhhhhhh or R.A.hhhhhhhh (revisions A <= R, "
      "non-negative integers; hhhhhhhh 8 hex digits)",
      what);
}

std::optional<ResumePoint> parse_resume_point(std::string_view s) {
  const auto revision = [](std::string_view part) -> std::optional<int64_t> {
    std::optional<uint64_t> n = parse_event_id(part);
    if (!n || *n > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(*n);
  };
  const auto fingerprint = [](std::string_view part) -> std::optional<uint32_t> {
    uint32_t v = 0;
    if (part.size() != 8) return std::nullopt;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v, 16);
    if (ec != std::errc() || end != part.data() + part.size()) return std::nullopt;
    return v;
  };
  ResumePoint out;
  const std::size_t first = s.find('.');
  std::optional<int64_t> r = revision(s.substr(0, first));
  if (!r) return std::nullopt;
  out.revision = *r;
  if (first == std::string_view::npos) return out;
  std::string_view rest = s.substr(first + 1);
  const std::size_t second = rest.find('.');
  std::optional<int64_t> a = out.revision;
  if (second != std::string_view::npos) {
    a = revision(rest.substr(0, second));
    rest = rest.substr(second + 1);
  }
  std::optional<uint32_t> f = fingerprint(rest);
  if (!a || !f || *a > out.revision) return std::nullopt;
  out.anchor = ResumeAnchor{*a, *f};
  return out;
}

std::variant<std::optional<int64_t>, Refusal> parse_write_condition(
    std::string_view if_match, std::string_view if_none_match) {
  if (!if_match.empty() && !if_none_match.empty()) {
    return Refusal{400, "If-Match and If-None-Match together: send one", {}};
  }
  if (!if_none_match.empty()) {
    if (if_none_match != "*") {
      return Refusal{
          400, "If-None-Match: only * is supported (write only if the key is absent)", {}};
    }
    return std::optional<int64_t>(0);
  }
  if (if_match.empty()) return std::optional<int64_t>();
  std::string_view v = if_match;
  if (v.starts_with("W/")) {
    return Refusal{400, "If-Match: weak ETags are not revisions; send the strong ETag \"R\"", {}};
  }
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  std::optional<uint64_t> revision = parse_event_id(v);
  if (!revision || *revision == 0 || *revision > uint64_t(INT64_MAX)) {
    return Refusal{400,
                   "If-Match: " + quote_for_message(if_match) +
                       " is not a revision (an ETag of this service: a quoted number >= 1)",
                   {}};
  }
  return std::optional<int64_t>(static_cast<int64_t>(*revision));
}

}  // namespace syncconfig::service::detail
