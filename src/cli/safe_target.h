// The store the commands of safe changes (apply, history, diff, rollback, lease) act on: its
// database through the library (safe_database.cc), or a syncconfig server through the HTTP routes
// of docs/safe-changes-http.md (safe_server.cc). Both give the same results and the same errors,
// so that each command is written once (safe_commands.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "syncconfig/config.h"

namespace syncconfig::cli {

// Thrown by a target after it printed why a request was refused (a server's 4xx/5xx answer):
// the command ends with `exit_code`.
struct Refused {
  int exit_code;
};

class SafeTarget {
 public:
  virtual ~SafeTarget() = default;
  // The keys under `prefix` and the revision the values are complete to.
  virtual Snapshot read(const std::string& prefix) = 0;
  // The key's value with the revision that wrote it, std::nullopt if absent: what a guard on the
  // key names. The database: from the same read as read(); a server: GET /settings/{key} and
  // its ETag, from the same cache as read().
  virtual std::optional<Config::Versioned> versioned(const std::string& key) = 0;
  virtual TxnResult commit(const Transaction& txn) = 0;
  virtual std::vector<HistoryRecord> history(const Config::HistoryQuery& query) = 0;
  // Throws Error(kOutOfRange) as Config::snapshot_at.
  virtual Snapshot snapshot_at(int64_t revision, const std::string& prefix) = 0;
  virtual TxnResult rollback(const std::string& target, bool prefix, int64_t revision,
                             const std::string& comment) = 0;
  virtual Lease grant_lease(std::chrono::seconds ttl) = 0;
  virtual std::optional<Lease> keep_alive(int64_t lease) = 0;
  virtual bool revoke_lease(int64_t lease) = 0;
};

// The database of --dsn/--config, or the server choose_server() picks (target.h).
std::unique_ptr<SafeTarget> open_safe_target(const ConnectionArgs& args);
std::unique_ptr<SafeTarget> database_target(const ConnectionArgs& args);
struct ServerTarget;
std::unique_ptr<SafeTarget> server_target(const ServerTarget& server);

}  // namespace syncconfig::cli
