// History: every change to the table, with the value before and after it, who made it and why;
// and leases, which delete keys that their owner stopped keeping alive.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace syncconfig {

// A key's current state, read from the source (not the cache).
struct KeyEntry {
  nlohmann::json value;
  int64_t revision = 0;  // The revision of the commit that wrote it.
  std::chrono::system_clock::time_point updated_at;
  int64_t lease = 0;  // The lease the key is attached to; 0: none.
};

// One recorded change (a row of the change log; docs/protocol.md).
struct HistoryRecord {
  int64_t revision = 0;
  std::string key;
  // "set", "delete", "expire" (its lease expired or was revoked), or "truncate" (removed by
  // TRUNCATE).
  std::string op;
  std::optional<nlohmann::json> value;           // After the change; std::nullopt if removed.
  std::optional<nlohmann::json> previous_value;  // Before it; std::nullopt if it was absent.
  int64_t previous_revision = 0;                 // Revision that wrote the previous value; 0: none.
  std::chrono::system_clock::time_point changed_at;  // By the database server's clock.
  // Who made it: the HTTP token's name, or the client's application_name and database user
  // ("application_name/user"). Never a password.
  std::string actor;
  std::string comment;
};

// A lease: keys attached to it are deleted when it is not kept alive for `ttl`.
struct Lease {
  int64_t id = 0;
  std::chrono::seconds ttl{0};
  // When it expires unless kept alive, by the database server's clock.
  std::chrono::system_clock::time_point expires_at;
};

}  // namespace syncconfig
