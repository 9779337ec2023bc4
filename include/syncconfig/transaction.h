// Safe changes: conditional writes (compare-and-set) and atomic multi-key transactions.
//
// Every key in the table carries the revision of the commit that last wrote it (Config::get_entry
// shows it). A conditional write names the revision it expects and applies only if the key is
// still at it; otherwise nothing is written and the outcome carries the key's current revision and
// value, so a retry loop needs no extra read. A Transaction groups guards and operations that
// commit together or not at all, in one PostgreSQL transaction; every instance applies it as one
// unit (docs/protocol.md, "Transactions").
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace syncconfig {

// Options of one write. Default: no comment, no lease, the store's own actor.
struct WriteOptions {
  // Recorded in the key's history with the change (at most 1,000 bytes of UTF-8). Default: none.
  std::string comment;
  // Who the history records as making the change (at most 200 bytes). Empty (the default): the
  // store's client identity, "application_name/database user" (a server records the HTTP
  // client's identity here).
  std::string actor;
  // The lease the key is attached to (Config::grant_lease): the key is deleted when the lease
  // expires or is revoked. 0 (the default): no lease; writing a key without a lease detaches it
  // from the lease it had.
  int64_t lease = 0;
};

// The outcome of set_if()/remove_if(). A conflict is an ordinary outcome, not an exception.
struct CasResult {
  bool succeeded = false;
  // Succeeded: the write's revision. Conflict: the key's current revision (0: it is absent).
  int64_t revision = 0;
  // Succeeded: the value as stored (std::nullopt for remove_if). Conflict: the key's current
  // value (std::nullopt: it is absent).
  std::optional<nlohmann::json> value;

  explicit operator bool() const { return succeeded; }
};

// A condition a transaction checks, at its commit, before it writes anything.
struct Guard {
  enum class Kind {
    kRevision,   // `key` is at `revision` (0: `key` is absent).
    kUnchanged,  // No key starting with `key` (a prefix; empty: any key) changed after `revision`.
  };
  Kind kind = Kind::kRevision;
  std::string key;
  int64_t revision = 0;

  static Guard at(std::string key, int64_t revision) {
    return {Kind::kRevision, std::move(key), revision};
  }
  static Guard absent(std::string key) { return {Kind::kRevision, std::move(key), 0}; }
  static Guard unchanged_since(std::string prefix, int64_t revision) {
    return {Kind::kUnchanged, std::move(prefix), revision};
  }
};

// A transaction's limits: operations, and bytes of its values' JSON text (with keys).
inline constexpr std::size_t kMaxTransactionOperations = 100'000;
inline constexpr std::size_t kMaxTransactionBytes = std::size_t{64} << 20;

// One write of a transaction: a set, or a removal when `value` is std::nullopt.
struct Operation {
  std::string key;
  std::optional<nlohmann::json> value;
};

// Guards and operations that commit all-or-nothing. A key may appear in at most one operation.
// Limits (docs/operations.md): at most 100,000 operations and 64 MiB of values. Example:
//
//   Transaction txn;
//   txn.require("db:primary", 41).set("db:primary", "b").set("db:replicas", {"a"});
//   TxnResult r = store.commit(txn);
//   if (!r) handle_conflict(r.failed_guard, r.current);
struct Transaction {
  std::vector<Guard> guards;
  std::vector<Operation> operations;
  std::string comment;  // Recorded with every change of the transaction. Default: none.
  std::string actor;    // As WriteOptions::actor.

  Transaction& require(std::string key, int64_t revision) {
    guards.push_back(Guard::at(std::move(key), revision));
    return *this;
  }
  Transaction& require_absent(std::string key) {
    guards.push_back(Guard::absent(std::move(key)));
    return *this;
  }
  Transaction& require_unchanged(std::string prefix, int64_t revision) {
    guards.push_back(Guard::unchanged_since(std::move(prefix), revision));
    return *this;
  }
  Transaction& set(std::string key, nlohmann::json value) {
    operations.push_back({std::move(key), std::move(value)});
    return *this;
  }
  Transaction& remove(std::string key) {
    operations.push_back({std::move(key), std::nullopt});
    return *this;
  }
};

// A key's state as a failed guard found it.
struct KeyState {
  std::string key;
  int64_t revision = 0;                 // 0: absent.
  std::optional<nlohmann::json> value;  // std::nullopt: absent.
};

struct TxnResult {
  bool committed = false;
  // Committed: the transaction's revision, the highest of its changes (its changes have
  // consecutive revisions ending here). 0 when it committed but changed nothing (every operation
  // removed an absent key), or when it failed.
  int64_t revision = 0;
  // Failed: the index in Transaction::guards of the first guard that did not hold, a sentence
  // saying why, and the current state of the key(s) it names (for kUnchanged: the keys changed
  // after its revision, at most 100).
  std::optional<std::size_t> failed_guard;
  std::string reason;
  std::vector<KeyState> current;

  explicit operator bool() const { return committed; }
};

}  // namespace syncconfig
