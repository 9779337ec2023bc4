// libFuzzer target: what the HTTP service does with a request before it touches a store, with
// the very functions the server runs: routing (src/http/target.h: parse_target, percent_decode),
// then for a key route the key check and the PUT body's size limit, depth check, JSON parsing and
// value checks (src/http/request.h), and /watch event ids.
//
// Input: "[METHOD ]<request target>\n<body>", the first line like an HTTP request line, e.g.
// "PUT /stores/tenant-a/settings/feature%3Anew_ui\ntrue" or "GET /watch?since=5&prefix=a+b".
// Without a method (no space on the first line): PUT when there is a body, else GET.
//
// Checked besides crashes: parse_target never throws; a refusal is 400, 404 or 405 with a
// message, and a 405 (only a 405) names the methods allowed; a route names a served store; a key
// route has a non-empty key that rebuilds the decoded path and agrees with parse_key_path; a
// listing has at most one prefix; prefixes are never empty and always valid as the start of a
// key; `since` is a revision; percent_decode never grows its input, decodes what was encoded,
// and treats '+' in a query exactly like "%20".
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http/request.h"
#include "http/target.h"
#include "syncconfig/error.h"
#include "util/validation.h"

namespace detail = syncconfig::service::detail;
using nlohmann::json;
using Kind = detail::Route::Kind;

namespace {

constexpr std::size_t kMaxBody = 64 * 1024;

// Aborts (a finding) unless `condition` holds.
void check(bool condition) {
  if (!condition) std::abort();
}

int depth_of(const json& value) {
  int deepest = 0;
  std::vector<std::pair<const json*, int>> stack{{&value, 0}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (v->is_structured()) {
      deepest = std::max(deepest, d + 1);
      for (const auto& child : *v) stack.emplace_back(&child, d + 1);
    }
  }
  return deepest;
}

std::string encode_every_byte(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    out += '%';
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string plus_as_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '+') {
      out += "%20";
    } else {
      out += c;
    }
  }
  return out;
}

void check_percent_decode(std::string_view s) {
  const std::string path = detail::percent_decode(s, false);
  const std::string query = detail::percent_decode(s, true);
  check(path.size() <= s.size() && query.size() == path.size());
  if (s.find('%') == std::string_view::npos) check(path == s);
  check(query == detail::percent_decode(plus_as_escape(s), false));
  check(detail::percent_decode(encode_every_byte(s), false) == s);
  check(detail::percent_decode(encode_every_byte(s), true) == s);
}

// A prefix a route may carry: non-empty, and some key could start with it.
void check_prefixes(const detail::Route& route) {
  for (const std::string& p : route.prefixes) check(!p.empty() && !detail::check_key(p));
}

void check_refusal(const detail::Refusal& r) {
  check(r.status == 400 || r.status == 404 || r.status == 405);
  check(!r.message.empty());
  (void)detail::quote_for_message(r.message);  // Must be printable as JSON.
  if (r.status == 405) {
    check(r.allow == "GET" || r.allow == "GET, PUT, DELETE" || r.allow == "POST" ||
          r.allow == "DELETE" || r.allow == "GET, POST");
  } else {
    check(r.allow.empty());
  }
}

// The PUT body stage of a key route, as respond_blocking runs it.
void check_put(const std::string& key, std::string_view body) {
  if (auto refused = detail::check_key(key)) {
    check(refused->status == 400 && !refused->message.empty());
    return;
  }
  auto parsed = detail::parse_put_body(key, body, kMaxBody);
  if (auto* refused = std::get_if<detail::Refusal>(&parsed)) {
    check((refused->status == 400 || refused->status == 413) && !refused->message.empty());
    (void)detail::quote_for_message(refused->message);
    return;
  }
  // Accepted: within the limits, and nothing that Store::set would refuse for its value.
  const json& value = std::get<json>(parsed);
  check(body.size() <= kMaxBody && depth_of(value) <= detail::kMaxBodyDepth);
  try {
    (void)syncconfig::internal::serialize_value(key, value,
                                                std::numeric_limits<std::size_t>::max());
  } catch (const syncconfig::Error&) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string> kStores = {"main", "tenant-a"};
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t nl = input.find('\n');
  std::string_view line = input.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);
  std::string_view method = body.empty() ? "GET" : "PUT";
  std::string_view target = line;
  if (std::size_t sp = line.find(' '); sp != std::string_view::npos) {
    method = line.substr(0, sp);
    target = line.substr(sp + 1);
  }

  check_percent_decode(target);
  std::size_t q = target.find('?');
  const std::string path = detail::percent_decode(target.substr(0, q), false);
  if (q != std::string_view::npos) {
    // An id is a plain decimal number (leading zeros allowed).
    std::string query = detail::percent_decode(target.substr(q + 1), true);
    if (auto id = detail::parse_event_id(query)) {
      check(std::to_string(*id) == query || query.starts_with('0'));
    }
    // A resume point prints back as an id that parses to the same point.
    if (auto point = detail::parse_resume_point(query)) {
      check(point->revision >= 0 && (!point->anchor || point->anchor->revision <= point->revision));
      auto again =
          detail::parse_resume_point(detail::format_event_id(point->revision, point->anchor));
      check(again && again->revision == point->revision && again->anchor == point->anchor);
    }
  }

  std::variant<detail::Route, detail::Refusal> parsed;
  try {
    parsed = detail::parse_target(target, method, kStores);
  } catch (...) {
    std::abort();
  }
  // What the old key-path splitter says of the decoded path (a differential check).
  std::optional<detail::KeyPath> key_path = detail::parse_key_path(path);
  const bool key_method = method == "GET" || method == "PUT" || method == "DELETE";
  const bool known_store = key_path && (key_path->store.empty() || key_path->store == kStores[0] ||
                                        key_path->store == kStores[1]);

  if (auto* refused = std::get_if<detail::Refusal>(&parsed)) {
    check_refusal(*refused);
    // A key route is refused only for a bad ?lease= on a PUT.
    if (key_path && known_store && key_method) {
      check(method == "PUT" && refused->status == 400 && refused->message.starts_with("lease"));
    }
    return 0;
  }
  const detail::Route& route = std::get<detail::Route>(parsed);
  check(route.store_index < kStores.size() && route.feed == nullptr);
  const bool read_route = route.kind == Kind::kHealth || route.kind == Kind::kMetrics ||
                          route.kind == Kind::kList || route.kind == Kind::kWatch ||
                          route.kind == Kind::kChanges;
  if (read_route) check(method == "GET" && route.key.empty());
  // ?since= means something on /watch and /changes; /settings refuses it, a key route skips every
  // parameter but ?lease=, and the other routes accept and ignore it.
  if (route.kind == Kind::kList || route.kind == Kind::kKey) check(!route.since);
  switch (route.kind) {
    case Kind::kHealth:
    case Kind::kMetrics:
      check(route.store_index == 0 && route.prefixes.empty());
      break;
    case Kind::kList:
      check(route.prefixes.size() <= 1);
      check_prefixes(route);
      break;
    case Kind::kWatch:
      check(!route.since || *route.since >= 0);
      check_prefixes(route);
      break;
    case Kind::kChanges:
      check(route.since && *route.since >= 0 && route.prefixes.size() <= 1);
      check_prefixes(route);
      break;
    case Kind::kEntry:
      check(method == "GET" && !route.key.empty());
      break;
    case Kind::kHistory:
      check(method == "GET" && route.limit >= 1 && route.limit <= 10000 && route.before >= 0);
      break;
    case Kind::kTxn:
    case Kind::kRollback:
    case Kind::kLeases:
      check(method == "POST" && route.key.empty());
      break;
    case Kind::kLease:
      check(route.lease > 0);
      check(method == "POST" ? route.key == "keepalive"
                             : method == "DELETE" && route.key == "revoke");
      break;
    case Kind::kTokens:
      check(route.store_index == 0 && route.prefixes.empty());
      check(method == "DELETE" ? !route.key.empty() && path == "/tokens/" + route.key
                               : (method == "GET" || method == "POST") && route.key.empty());
      break;
    case Kind::kKey: {
      check(!route.key.empty() && route.prefixes.empty() && key_method);
      // The key is the rest of the decoded path, under the default store or a named one.
      const std::string tail = "/settings/" + route.key;
      check(path == tail || path == "/stores/" + kStores[route.store_index] + tail);
      check(key_path && key_path->key == route.key);
      if (method == "PUT") check_put(route.key, body);
      break;
    }
  }
  if (route.kind != Kind::kKey) check(!key_path || !known_store);
  return 0;
}
