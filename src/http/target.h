// Routing: a request's method and target (path + query) to the route it names, once, before any
// store is touched. Pure functions, tested and fuzzed alone like request.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/request.h"

namespace syncconfig::service::detail {

class StoreFeed;

struct Route {
  enum class Kind {
    kHealth,
    kMetrics,
    kList,
    kKey,
    kWatch,
    kChanges,
    kEntry,     // GET /entries/{key}
    kTxn,       // POST /txn
    kHistory,   // GET /history/{key}, GET /history?prefix=P (key empty)
    kRollback,  // POST /rollback
    kLeases,    // POST /leases
    kLease,     // POST /leases/{id}/keepalive, DELETE /leases/{id}
    kTokens,    // GET /tokens, POST /tokens, DELETE /tokens/{name} (key: the name)
    kWhoami,    // GET /whoami: the caller's token, its rules, the stores
    kUi,        // GET /ui, /ui/, /ui/app.js, /ui/app.css (key: the file's name); open
  };
  Kind kind = Kind::kHealth;
  std::size_t store_index = 0;        // Index into the served stores (0: the default).
  StoreFeed* feed = nullptr;          // Filled in by the server.
  std::string key;                    // kKey: percent-decoded once. kUi: the file.
  std::vector<std::string> prefixes;  // kList, kChanges (at most one), kWatch; empty: every key.
  std::optional<int64_t> since;       // kWatch: ?since= (the server lets Last-Event-ID win);
                                      // kChanges: required.
  std::optional<ResumeAnchor> since_anchor;  // kWatch, kChanges: the id's anchor, if it has one.
  std::optional<int64_t> at;                 // kList: ?at=R, the state right after revision R.
  bool keys_only = false;                    // kList: ?keys, the keys alone (a JSON array).
  std::size_t limit = 100;                   // kHistory: ?limit= (1..10000).
  int64_t before = 0;                        // kHistory: ?before=R (0: none).
  int64_t lease = 0;                         // kKey PUT: ?lease=ID; kLease: the id.
};

// Percent-decodes `s` once; with `plus_is_space` (query strings), '+' is a space. An invalid
// escape is kept as it is.
std::string percent_decode(std::string_view s, bool plus_is_space);

// Whether `path` (no query) names the web console's files: /ui and everything under /ui/.
// They are open (no token) and routed to Route::Kind::kUi, or 404 for a file it does not have.
bool is_console_path(std::string_view path);

// The route of `method` on `target` among stores named `stores` (the first is the default).
// Refusals: 404 unknown route or store, 405 (with `allow`) a method the route does not take,
// 400 a bad query: `since` not a revision, a `prefix` no key can start with, `prefix` twice on
// /settings.
std::variant<Route, Refusal> parse_target(std::string_view target, std::string_view method,
                                          const std::vector<std::string>& stores);

}  // namespace syncconfig::service::detail
