// What the HTTP service does with a request's path and body before it touches a Store: pure
// functions, without sockets or a database, so that they can be tested and fuzzed alone
// (fuzz/http_request_fuzzer.cc). The server (http_server.cc) uses exactly these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "util/validation.h"

namespace syncconfig::service::detail {

// Deepest JSON nesting accepted in a PUT body (serializing is recursive, in this process and in
// PostgreSQL).
constexpr int kMaxBodyDepth = 512;

// A request refused before reaching a store: the HTTP status and the message for
// {"error": message}.
struct Refusal {
  int status = 400;
  std::string message;
  std::string allow;  // For 405: the methods the route allows.
};

// A key route's path, percent-decoded once: "/settings/{key}" or
// "/stores/{store}/settings/{key}". `store` is empty for the default store. The server routes
// with parse_target (target.h); this simpler split stays as the fuzzer's independent check of
// the key parse_target finds.
struct KeyPath {
  std::string store;
  std::string key;
};

// Splits a key route's path; std::nullopt when `path` is not one. The key is the whole rest of
// the path ('/' included); a store name is at least one byte without '/'.
std::optional<KeyPath> parse_key_path(std::string_view path);

// A refusal (400, "invalid key: ...") unless `key` is a key Store::set accepts (see
// util/validation.h).
std::optional<Refusal> check_key(std::string_view key);

// The value of `PUT /settings/{key}` from its body: 413 over `max_body_bytes`, 400 when nested
// deeper than kMaxBodyDepth or not JSON (a number JSON cannot hold, 1e999, is a parse error).
// The key and the value's size are Store::set's to check. Never throws.
std::variant<nlohmann::json, Refusal> parse_put_body(std::string_view key, std::string_view body,
                                                     std::size_t max_body_bytes);

// Deepest nesting of arrays/objects in a JSON text (strings skipped), stopping past `limit`.
int json_depth(std::string_view text, int limit);

// A non-negative decimal integer (a revision, a lease id), else std::nullopt.
std::optional<uint64_t> parse_event_id(std::string_view s);

// The change a /watch event id vouches for (docs/protocol.md, "Resume tokens"): the newest
// change at or below the id's revision that the sending server had released, and a 32-bit
// fingerprint of it (key, set or deletion, value). A server that resumes the stream checks it
// against its own history or change log: a revision number alone cannot tell a history that
// diverged (a failover lost commits, the table was recreated) once it has passed that number.
struct ResumeAnchor {
  int64_t revision = 0;
  uint32_t fingerprint = 0;
  bool operator==(const ResumeAnchor&) const = default;
};

// Where a /watch resumes (Last-Event-ID, ?since=).
struct ResumePoint {
  int64_t revision = 0;
  std::optional<ResumeAnchor> anchor;  // None: a bare revision (resumed by number, unchecked).
};

// The fingerprint of a change: the first 32 bits of MD5(key, NUL, 'd') for a deletion, of
// MD5(key, NUL, 's', the value's compact JSON text) for a set.
uint32_t change_fingerprint(std::string_view key, const std::optional<nlohmann::json>& value);
// The same from the value's compact JSON text (`value.dump()`), when the caller has it already.
uint32_t change_fingerprint_of_text(std::string_view key,
                                    std::optional<std::string_view> value_text);

// An event id: "R" (no anchor), "R.hhhhhhhh" (anchored at R itself: a change event) or
// "R.A.hhhhhhhh" (anchored at A < R), the fingerprint as 8 lowercase hex digits.
std::string format_event_id(int64_t revision, const std::optional<ResumeAnchor>& anchor);

// What a refused event id is told; `what` names it ("since", "Last-Event-ID").
std::string bad_event_id(std::string_view what);

// Parses an event id in any of those forms (hex digits in either case); std::nullopt when it is
// none of them, when a number exceeds int64, or when the anchor is above the revision.
std::optional<ResumePoint> parse_resume_point(std::string_view s);

// The condition of a PUT/DELETE from its If-Match / If-None-Match headers: std::nullopt (none),
// a revision (If-Match: "R", R >= 1), or 0 (If-None-Match: *, only if absent). A refusal (400)
// for a value that is not one quoted revision or `*` where one is needed, or both headers.
// Never throws.
std::variant<std::optional<int64_t>, Refusal> parse_write_condition(std::string_view if_match,
                                                                    std::string_view if_none_match);

// A key, path or message quoted for a JSON error message or a log line: invalid UTF-8 replaced,
// control bytes escaped. Never throws.
using internal::quote_for_message;

}  // namespace syncconfig::service::detail
