#include "http/target.h"

#include <fmt/format.h>

#include <limits>

#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig::service::detail {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Refusal not_found(std::string_view method, std::string_view path) {
  return Refusal{404, fmt::format("no route for {} {}", method, quote_for_message(path)), {}};
}

Refusal not_allowed(std::string_view method, std::string_view path, const char* allow) {
  return Refusal{405, fmt::format("{} is not allowed on {}", method, quote_for_message(path)),
                 allow};
}

// A prefix some key can start with: what validate_key accepts (UTF-8, no NUL, at most 255
// bytes); the empty prefix is every key.
std::optional<Refusal> check_prefix(std::string_view prefix) {
  if (prefix.empty()) return std::nullopt;
  try {
    internal::validate_key(prefix);
  } catch (const Error& e) {
    return Refusal{
        400,
        fmt::format("prefix {} cannot start any key: {}", quote_for_message(prefix), e.what()),
        {}};
  }
  return std::nullopt;
}

}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += plus_is_space && c == '+' ? ' ' : c;
  }
  return out;
}

bool is_console_path(std::string_view path) { return path == "/ui" || path.starts_with("/ui/"); }

std::variant<Route, Refusal> parse_target(std::string_view target, std::string_view method,
                                          const std::vector<std::string>& stores) {
  std::string_view raw_path = target.substr(0, target.find('?'));
  std::string_view query =
      raw_path.size() < target.size() ? target.substr(raw_path.size() + 1) : std::string_view();
  const std::string path = percent_decode(raw_path, /*plus_is_space=*/false);
  const bool get = method == "GET";

  Route route;
  if (path == "/health" || path == "/metrics") {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = path == "/health" ? Route::Kind::kHealth : Route::Kind::kMetrics;
    return route;
  }
  if (is_console_path(path)) {
    // The console's three files; the page itself at /ui and /ui/.
    std::string_view file = std::string_view(path).substr(std::min<std::size_t>(path.size(), 4));
    if (file.empty() || file == "index.html") file = "index.html";
    if (file != "index.html" && file != "app.js" && file != "app.css") {
      return not_found(method, path);
    }
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kUi;
    route.key = std::string(file);
    return route;
  }
  if (path == "/whoami") {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kWhoami;
    return route;
  }
  if (path == "/tokens") {
    if (!get && method != "POST") return not_allowed(method, path, "GET, POST");
    route.kind = Route::Kind::kTokens;
    return route;
  }
  if (path.starts_with("/tokens/") && path.size() > 8) {
    if (method != "DELETE") return not_allowed(method, path, "DELETE");
    route.kind = Route::Kind::kTokens;
    route.key = path.substr(8);
    return route;
  }
  std::string_view rest = path;
  constexpr std::string_view kStores = "/stores/";
  if (rest.starts_with(kStores)) {
    rest.remove_prefix(kStores.size());
    std::size_t slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) return not_found(method, path);
    std::string_view name = rest.substr(0, slash);
    rest.remove_prefix(slash);
    route.store_index = stores.size();
    for (std::size_t i = 0; i < stores.size(); ++i) {
      if (stores[i] == name) route.store_index = i;
    }
    if (route.store_index == stores.size()) {
      return Refusal{404, fmt::format("unknown store '{}'", name), {}};
    }
  }
  constexpr std::string_view kSettings = "/settings/";
  constexpr std::string_view kEntries = "/entries/";
  constexpr std::string_view kHistory = "/history/";
  constexpr std::string_view kLeases = "/leases/";
  const bool post = method == "POST";
  if (rest == "/settings") {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kList;
  } else if (rest.starts_with(kSettings) && rest.size() > kSettings.size()) {
    if (!get && method != "PUT" && method != "DELETE") {
      return not_allowed(method, path, "GET, PUT, DELETE");
    }
    route.kind = Route::Kind::kKey;
    route.key = std::string(rest.substr(kSettings.size()));
  } else if (rest.starts_with(kEntries) && rest.size() > kEntries.size()) {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kEntry;
    route.key = std::string(rest.substr(kEntries.size()));
  } else if (rest == "/history" || (rest.starts_with(kHistory) && rest.size() > kHistory.size())) {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kHistory;
    if (rest != "/history") route.key = std::string(rest.substr(kHistory.size()));
  } else if (rest == "/txn" || rest == "/rollback" || rest == "/leases") {
    if (!post) return not_allowed(method, path, "POST");
    route.kind = rest == "/txn"        ? Route::Kind::kTxn
                 : rest == "/rollback" ? Route::Kind::kRollback
                                       : Route::Kind::kLeases;
  } else if (rest.starts_with(kLeases) && rest.size() > kLeases.size()) {
    std::string_view id = rest.substr(kLeases.size());
    const bool keepalive = id.ends_with("/keepalive");
    if (keepalive) id.remove_suffix(std::string_view("/keepalive").size());
    std::optional<uint64_t> n = parse_event_id(id);
    if (!n || *n == 0 || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return not_found(method, path);
    }
    if (keepalive ? !post : method != "DELETE") {
      return not_allowed(method, path, keepalive ? "POST" : "DELETE");
    }
    route.kind = Route::Kind::kLease;
    route.lease = static_cast<int64_t>(*n);
    route.key = keepalive ? "keepalive" : "revoke";
    return route;
  } else if (rest == "/watch") {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kWatch;
  } else if (rest == "/changes") {
    if (!get) return not_allowed(method, path, "GET");
    route.kind = Route::Kind::kChanges;
  } else {
    return not_found(method, path);
  }

  // The query of /settings, /watch and /changes: prefix (repeatable on /watch), since (/watch,
  // required on /changes).
  const bool single_prefix = route.kind != Route::Kind::kWatch;
  bool every_key = false;
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    std::size_t eq = pair.find('=');
    std::string name = percent_decode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    // A key route takes only ?lease= (on PUT); anything else is ignored there, as before.
    if (route.kind == Route::Kind::kKey && (name != "lease" || method != "PUT")) continue;
    if (name == "keys" && route.kind == Route::Kind::kList) {
      if (value.empty() || value == "true" || value == "1") {
        route.keys_only = true;
      } else if (value == "false" || value == "0") {
        route.keys_only = false;
      } else {
        return Refusal{400, "keys must be true or false (or given without a value)", {}};
      }
    } else if (name == "prefix") {
      if (auto refused = check_prefix(value)) return *refused;
      if (single_prefix && (every_key || !route.prefixes.empty())) {
        return Refusal{400, fmt::format("prefix may be given once on {}", rest), {}};
      }
      if (value.empty()) {
        every_key = true;
      } else {
        route.prefixes.push_back(std::move(value));
      }
    } else if (name == "at" || name == "before" || name == "limit" || name == "lease") {
      std::optional<uint64_t> n = parse_event_id(value);
      if (!n || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Refusal{400, fmt::format("{} must be a non-negative integer", name), {}};
      }
      const auto v = static_cast<int64_t>(*n);
      if (name == "at") route.at = v;
      if (name == "before") route.before = v;
      if (name == "lease") route.lease = v;
      if (name == "limit") {
        if (v < 1 || v > 10000) return Refusal{400, "limit must be 1..10000", {}};
        route.limit = static_cast<std::size_t>(v);
      }
    } else if (name == "since" && route.kind != Route::Kind::kList) {
      // An event id, anchored or not (/changes too: a client that resumes from a snapshot file
      // names the change it saw last, to be checked against this history).
      std::optional<ResumePoint> point = parse_resume_point(value);
      if (!point) return Refusal{400, bad_event_id("since"), {}};
      route.since = point->revision;
      route.since_anchor = point->anchor;
    }
  }
  if (every_key) route.prefixes.clear();
  if (route.kind == Route::Kind::kChanges && !route.since) {
    return Refusal{400, "/changes needs since=R (an event id: R, R.hhhhhhhh or R.A.hhhhhhhh)", {}};
  }
  return route;
}

}  // namespace syncconfig::service::detail
