// Config: what application code needs from a configuration store, whichever kind it is.
//
// Two implementations:
//   - Store (store.h) keeps its cache from the PostgreSQL table itself (a LISTEN connection and a
//     small pool per process);
//   - RemoteStore (remote_store.h) keeps the same cache from a syncconfig server over HTTP and
//     opens no database connection.
// Code written against Config& (SyncMap<T>, the examples) runs on either, with the same
// semantics: reads from memory, callbacks per key in commit order on one dispatcher thread, the
// same Error codes. Only the open() call differs.
//
// Implementations are safe for concurrent access from multiple threads without external
// synchronization. Callbacks run on the store's own dispatcher thread, one at a time, never under
// an internal lock: a callback may call any method except destroying the store.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "syncconfig/error.h"
#include "syncconfig/history.h"
#include "syncconfig/transaction.h"

namespace syncconfig {

// Where a change applied to an instance's cache came from.
enum class ChangeOrigin {
  kLocal,   // A set()/remove() on this instance.
  kRemote,  // Another instance's write (a notification, or a server's event stream), or plain
            // SQL on the table.
  kResync,  // Found by catching up after a reconnect, a heartbeat or sync().
};

// "local", "remote" or "resync".
std::string_view to_string(ChangeOrigin origin) noexcept;

struct Change {
  std::string key;
  std::optional<nlohmann::json> value;  // std::nullopt: the key was deleted.
  int64_t revision = 0;                 // Commit-ordered revision of the change in the table.
  ChangeOrigin origin = ChangeOrigin::kLocal;
  // For a change applied from a notification: when the writing transaction made it, by the
  // database server's clock (the lag until now() is the propagation delay). Empty otherwise.
  std::optional<std::chrono::system_clock::time_point> written_at;
  // The last change of a unit applied at once: a transaction (every instance applies a committed
  // transaction whole, and delivers its changes consecutively, this one last), or a resync. A
  // subscriber that must never act on half a transaction buffers until it sees true.
  bool unit_end = true;
  // A deletion because the key's lease expired or was revoked (history operation "expire").
  bool expired = false;
};

using Callback = std::function<void(const Change&)>;
using SubscriptionId = uint64_t;

// How far a store's stream of changes has come: every change with a revision at or below
// `revision` has been delivered to the callbacks before this (revisions follow commit order, so
// nothing at or below it can follow).
struct Progress {
  int64_t revision = 0;
  // The table's revisions started over (it was dropped and recreated): revisions delivered before
  // name other changes than those after. The changes that made the cache equal to the new table
  // were delivered right before this progress.
  bool reset = false;
};
using ProgressCallback = std::function<void(const Progress&)>;

// The whole cache (or the keys under a prefix) together with the revision it is complete to:
// every change at or below `revision` is in `values` (a later one may be too).
struct Snapshot {
  std::map<std::string, nlohmann::json> values;
  int64_t revision = 0;
};

// What the table says changed after a revision (see Config::changes_since).
struct ChangesSince {
  // False when the table cannot say exactly: the deletions needed were pruned
  // (Options::tombstone_retention), a TRUNCATE happened in between (which keys it removed is not
  // recorded), or the revision is beyond the table's newest (a history this table does not have:
  // it was recreated, or a failover lost commits). `reason` says which.
  bool complete = false;
  std::string reason;
  // The snapshot's revision: `changes` is complete up to it.
  int64_t revision = 0;
  // In revision order; each key's latest state in the snapshot (intermediate values of a key
  // changed several times are not kept by the table), deletions with std::nullopt values.
  // Origin kResync, no written_at.
  std::vector<Change> changes;
};

// The outcome of one write, taken from the write itself (never a later read of the cache, which
// another writer may have changed meanwhile).
struct WriteResult {
  // Revision of the write's commit; 0 when remove() found no key to delete.
  int64_t revision = 0;
  // put(): the value as PostgreSQL stored it (jsonb normalizes: `1e3` reads back as `1000`).
  // erase(): std::nullopt.
  std::optional<nlohmann::json> value;
};

// Counters for monitoring. Each is a snapshot; they are not read atomically together.
struct Stats {
  std::size_t keys = 0;
  uint32_t crc = 0;
  // Store: the listener holds a live LISTEN connection. RemoteStore: its event stream from a
  // server is open.
  bool connected = false;
  int64_t revision = 0;  // Highest revision this instance is known to be complete to.
  // Highest revision applied to the cache: above `revision` while a change (usually this
  // instance's own write) is applied before older commits have arrived.
  int64_t applied_revision = 0;
  uint64_t writes = 0;                 // Successful set() calls.
  uint64_t deletes = 0;                // remove() calls that deleted a key.
  uint64_t notifications_applied = 0;  // Notifications (RemoteStore: stream events) applied.
  uint64_t notifications_ignored = 0;  // Duplicates, stale echoes and malformed payloads.
  // Store: well-formed notifications that no commit made — their revision is not in the change
  // log, or names another change there (forged by a session that may NOTIFY the channel, or
  // meant for another table). Dropped; also counted in notifications_ignored.
  uint64_t notifications_forged = 0;
  // Store: notifications applied on the strength of their signature (the library's own writes,
  // signed with the table's key), without a read of the change log. The others applied were
  // verified by that read (plain SQL writes, values too large for the payload, unsigned payloads).
  uint64_t notifications_signed = 0;
  uint64_t resyncs = 0;         // Full reloads from the table (or server).
  uint64_t catch_ups = 0;       // Incremental catch-ups (after reconnect, heartbeat).
  uint64_t crc_mismatches = 0;  // Heartbeats that found the cache differs from the table.
  uint64_t reconnects = 0;
  // Reset reloads: the source's history was not the one this instance followed (Store: after a
  // reconnect the change log lacked changes it had applied, or named others at their revisions —
  // a failover to a standby that lacked commits — or the table's revisions went backwards;
  // RemoteStore: its server said reset). The cache then equals the source, and watchers reset.
  uint64_t history_resets = 0;
  uint64_t callback_errors = 0;  // Callbacks that threw.
  // Changes (and progress marks) waiting for the subscribers' callbacks, now and at the most since
  // open. The queue is not bounded: callbacks run one at a time on one thread, so a slow one
  // makes it grow while the cache stays current; alert on a depth that keeps rising.
  uint64_t callback_queue_depth = 0;
  uint64_t callback_queue_peak = 0;
  // The store opened from its snapshot file because no source answered, and has not caught up
  // with a source since (see is_stale()).
  bool stale = false;
  // While stale: when the snapshot file it serves was written.
  std::optional<std::chrono::system_clock::time_point> stale_as_of;
};

class Config {
 public:
  virtual ~Config() = default;

  // Writes `value` under `key` and waits for the commit; afterwards get(key) on this instance
  // returns the value as stored, unless a newer write has already arrived. Keys: 1..255 bytes of
  // valid UTF-8 without NUL. Values: any JSON without NaN/Infinity. Returns the write's revision.
  int64_t set(std::string_view key, const nlohmann::json& value, const WriteOptions& options = {}) {
    return put(key, value, options).revision;
  }
  // Deletes `key`. Returns whether it existed in the table.
  bool remove(std::string_view key, const WriteOptions& options = {}) {
    return erase(key, options).revision != 0;
  }
  // set() and remove() with their whole outcome.
  virtual WriteResult put(std::string_view key, const nlohmann::json& value,
                          const WriteOptions& options = {}) = 0;
  virtual WriteResult erase(std::string_view key, const WriteOptions& options = {}) = 0;

  // --- Safe changes (transaction.h) ---

  // The key's current value, revision and time of its last change, read from the source (one
  // round trip: the table, or the server), not from the cache: what a compare-and-set starts
  // from. std::nullopt if absent.
  virtual std::optional<KeyEntry> get_entry(std::string_view key) const = 0;
  // Writes `value` only if `key` is at `expected_revision` (0: only if it is absent). Otherwise
  // writes nothing and returns the key's current revision and value.
  virtual CasResult set_if(std::string_view key, const nlohmann::json& value,
                           int64_t expected_revision, const WriteOptions& options = {}) = 0;
  // Deletes `key` only if it is at `expected_revision` (> 0).
  virtual CasResult remove_if(std::string_view key, int64_t expected_revision,
                              const WriteOptions& options = {}) = 0;
  // Commits `txn` all-or-nothing: every guard is checked under the table's writer lock, then
  // every operation is applied, in one PostgreSQL transaction. A failed guard is an outcome, not
  // an exception; bad input (invalid keys, a key in two operations, no operations, over the
  // limits) throws kInvalidArgument and writes nothing.
  virtual TxnResult commit(const Transaction& txn) = 0;

  // --- History (history.h) ---

  // The recorded changes of `key` (or, with `prefix`, of every key starting with it), newest
  // first, at most `limit` (1..10,000), only those below `before` when it is not 0.
  struct HistoryQuery {
    std::string key;
    bool prefix = false;
    std::size_t limit = 100;
    int64_t before = 0;
  };
  virtual std::vector<HistoryRecord> history(const HistoryQuery& query) const = 0;
  std::vector<HistoryRecord> history(std::string_view key, std::size_t limit = 100) const {
    return history(HistoryQuery{std::string(key), false, limit, 0});
  }
  // The keys under `prefix` (empty: all) and their values as they were right after revision
  // `revision` committed. Throws kOutOfRange when the history needed was pruned (older than the
  // retention) or `revision` is beyond the newest.
  virtual Snapshot snapshot_at(int64_t revision, std::string_view prefix = {}) const = 0;
  // Restores `key` (or, with `prefix` set, every key under the prefix `target`) to its state at
  // `revision`, as a new transaction with its own revision and `comment` (history is never
  // rewritten), guarded by the state it was computed from: a concurrent change makes it fail
  // like a transaction's guard, and nothing is written. Throws kOutOfRange as snapshot_at.
  // `options.comment` and `options.actor` are recorded in the history (a default comment names
  // the revision); `options.lease` is not used.
  virtual TxnResult rollback(std::string_view target, bool prefix, int64_t revision,
                             const WriteOptions& options) = 0;
  // The same, with a comment and the store's own identity as the actor.
  TxnResult rollback(std::string_view target, bool prefix, int64_t revision,
                     std::string_view comment = {}) {
    WriteOptions options;
    options.comment = std::string(comment);
    return rollback(target, prefix, revision, options);
  }

  // --- Leases (history.h) ---

  // A new lease of `ttl` (1 s .. 1 year), timed by the database server's clock.
  virtual Lease grant_lease(std::chrono::seconds ttl) = 0;
  // Renews the lease for another ttl. std::nullopt if it expired or was revoked.
  virtual std::optional<Lease> keep_alive(int64_t lease) = 0;
  // Revokes the lease and deletes its keys at once (history operation "expire"). Returns whether
  // it existed.
  virtual bool revoke_lease(int64_t lease) = 0;

  // The cached value, or std::nullopt if absent. Never leaves the process.
  virtual std::optional<nlohmann::json> get(std::string_view key) const = 0;
  // The cached value with the revision of the commit that wrote it (an HTTP server's ETag).
  struct Versioned {
    nlohmann::json value;
    int64_t revision = 0;
  };
  virtual std::optional<Versioned> get_versioned(std::string_view key) const = 0;
  virtual bool contains(std::string_view key) const = 0;
  virtual std::size_t size() const = 0;
  // Every key and value. With a non-empty prefix, only keys starting with it.
  virtual std::map<std::string, nlohmann::json> get_all(std::string_view prefix = {}) const = 0;
  // Like get_all, with the revision the result is complete to, read together: a subscriber or
  // a /watch that continues after `revision` misses nothing.
  virtual Snapshot snapshot(std::string_view prefix = {}) const = 0;

  // Typed getters: the default when the key is absent or its value does not convert. They never
  // throw. Conversions (also in README.md):
  //   get_string: a JSON string. Any other type gives the default.
  //   get_int:    an integer that fits int64; a float with an integral value in range (42.0);
  //               a string holding exactly such a number ("123", " 7" is refused).
  //   get_double: any number; a string holding exactly a finite number ("2.5").
  //   get_bool:   true/false; the strings "true"/"false", "1"/"0", "yes"/"no", "on"/"off"
  //               (any case); the integers 1 and 0.
  virtual std::string get_string(std::string_view key, std::string default_value = {}) const = 0;
  virtual int64_t get_int(std::string_view key, int64_t default_value = 0) const = 0;
  virtual double get_double(std::string_view key, double default_value = 0.0) const = 0;
  virtual bool get_bool(std::string_view key, bool default_value = false) const = 0;
  // Any type nlohmann::json converts to (user types with from_json included), using
  // nlohmann's own conversion rules. The default when absent or when the conversion throws.
  template <class T>
  T get_as(std::string_view key, T default_value) const {
    std::optional<nlohmann::json> value = get(key);
    if (!value) return default_value;
    try {
      return value->get<T>();
    } catch (const std::exception&) {
      return default_value;
    }
  }

  // Calls `callback` for every change applied to this instance's cache (local writes, remote
  // writes, changes found by a resync), per key in commit order, on the dispatcher thread. Every
  // write is a change, a write of the value a key already holds too (it has its own revision,
  // which a compare-and-set must name). Exceptions it throws are logged and counted. Returns an
  // id for unsubscribe().
  virtual SubscriptionId subscribe(Callback callback) = 0;
  // Same, and `on_progress` (may be empty) is called on the same thread, in order with the
  // changes, each time the store is complete to a new revision (see Progress). This is what a
  // relay needs to number a stream of changes by revision (the HTTP /watch does).
  virtual SubscriptionId subscribe(Callback callback, ProgressCallback on_progress) = 0;
  // After unsubscribe returns, the callback is not called again (if it is running on another
  // thread, unsubscribe waits for it to finish; called from a callback, it does not wait).
  virtual void unsubscribe(SubscriptionId id) = 0;

  // Checksum of the whole cache: the sum modulo 2^32 of CRC32(key + '\0' + value) over every
  // entry, where value is PostgreSQL's jsonb text of the value. Equal on instances holding the
  // same data, independent of order, updated in O(1) per change.
  virtual uint32_t get_crc() const = 0;

  // Reloads everything from the source (the table, or the server) and applies the differences
  // (callbacks fire with ChangeOrigin::kResync). Waits until done. Throws kUnavailable/kTimeout
  // if the source cannot be reached.
  virtual void sync() = 0;

  // Counters and state of this instance. A counter moves after the work it counts is done: a
  // catch-up's or reload's changes can be visible in the cache (and in callbacks) a moment
  // before catch_ups/resyncs/reconnects/history_resets count it.
  virtual Stats stats() const = 0;

  // What changed after `revision`, read from the source (the table, or through the server from
  // the table), in one snapshot, with keys under `prefix` only when it is not empty. Used to
  // resume a stream of changes that was interrupted. Throws kUnavailable/kTimeout when the source
  // cannot be reached, kShutdown.
  virtual ChangesSince changes_since(int64_t revision, std::string_view prefix = {}) const = 0;

  // True while the store serves the snapshot file it opened from because no source answered at
  // start-up (Options::snapshot_file): reads work, writes throw kUnavailable, and the store
  // catches up from the file's revision as soon as a source answers.
  virtual bool is_stale() const = 0;

  // Stops every background thread and closes every connection. Idempotent, prompt (pending
  // callbacks are dropped), and safe to call from any thread; afterwards reads still serve the
  // last cached values and writes throw kShutdown.
  virtual void shutdown() = 0;
};

}  // namespace syncconfig
