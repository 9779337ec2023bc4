// Options of a syncconfig::Store. Every field has a default that works for one application
// instance talking to a local PostgreSQL; Store::open refuses invalid values with an
// Error(kInvalidArgument) naming the field.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace syncconfig {

// Whether the write pool's connections use named prepared statements (Options).
enum class PreparedStatements {
  // On for a connection straight to PostgreSQL, off for one through a pooler: a connection
  // whose start-up reported a process id other than the server's pg_backend_pid() (PgBouncer
  // does, in every pool mode). One query per new pool connection tells.
  kAuto,
  // Named prepared statements (parsed once per connection). Through PgBouncer only in session
  // pooling, or transaction pooling with max_prepared_statements set (PgBouncer 1.21 and later).
  kOn,
  // Unnamed statements (parsed with each call): work through any pooler.
  kOff,
};

struct Options {
  // Table holding the configuration. Created if missing. Lowercase letters, digits and '_',
  // starting with a letter or '_', at most 40 bytes (the protocol derives a few object names from
  // it). Default "sync_config".
  std::string table_name = "sync_config";
  // PostgreSQL LISTEN/NOTIFY channel. Same character rules as table_name, at most 63 bytes. All
  // instances sharing a table must use the same channel. Default "config_changes".
  std::string channel = "config_changes";
  // Schema of the table; created if missing. Same character rules, at most 63 bytes. When a store
  // is opened from a named pool, the pool's schema is used instead. Default "public".
  std::string schema = "public";
  // How often the store compares its cache with the table (and catches up). Default 5 minutes.
  std::chrono::milliseconds heartbeat_interval = std::chrono::minutes(5);
  // The longest wait between the listener's attempts to reconnect. After a lost connection it
  // retries at once, then after ~100 ms, doubling each time up to this bound, each delay jittered
  // (drawn from its upper half) so that a fleet does not reconnect in lockstep; a failover costs
  // about as long as the promotion. Default 10 seconds.
  std::chrono::milliseconds reconnect_interval = std::chrono::seconds(10);
  // Resync from the table when the heartbeat finds the cache differs from it. Default true.
  bool sync_on_mismatch = true;
  // Keep a LISTEN connection and apply other instances' writes as they commit. false runs a
  // single instance with no listening connection (the heartbeat still catches up). Default true.
  bool enable_notification = true;
  // Upper bound for one database call (connect, write, read), enforced by the client: a call that
  // takes longer is cancelled and fails with kTimeout. Default 5 seconds.
  std::chrono::milliseconds db_timeout = std::chrono::seconds(5);
  // Upper bound for reading the whole table (start-up, resync, sync()), which takes longer than
  // other calls on a large table. Default 60 seconds.
  std::chrono::milliseconds load_timeout = std::chrono::seconds(60);
  // Connections used by set()/remove() running in parallel. Default 4.
  std::size_t pool_size = 4;
  // Named prepared statements on the pool's connections: kAuto, kOn or kOff (see
  // PreparedStatements). Default kAuto (on straight to PostgreSQL, off through a pooler).
  PreparedStatements prepared_statements = PreparedStatements::kAuto;
  // The connection string of the listener: the store's session connection, which LISTENs,
  // reads the table at start-up and on catch-ups, sets the table up, and holds the lease
  // sweeper's session lock. It needs a session of its own: PostgreSQL itself, or a pooler in
  // session pooling mode, never one in transaction or statement pooling mode (open() refuses
  // that with kInvalidArgument; a reconnect logs it and retries). With the write pool behind
  // PgBouncer in transaction pooling, point this at PostgreSQL directly. Its password is never
  // logged. Default "": the store's own DSN.
  std::string listen_dsn;
  // Largest value accepted by set(), in bytes of its JSON text. Default 16 MiB.
  std::size_t max_value_bytes = 16u << 20;
  // The change log (history, and the deletions catch-ups read) keeps records for at least this
  // long; older ones are pruned by the heartbeat in small batches, except each key's newest
  // history_min_versions. An instance away longer than this resyncs fully instead of catching up,
  // and snapshot_at()/rollback to a revision before the pruned ones is refused (kOutOfRange).
  // Default 7 days.
  std::chrono::milliseconds history_retention = std::chrono::hours(24 * 7);
  // Records of each key kept whatever their age (its history() stays readable). Default 10.
  std::size_t history_min_versions = 10;
  // How often the instance holding the sweeper lock deletes keys of expired leases. A key is
  // deleted at most about ttl + this after its lease's last keep-alive. Default 1 second.
  std::chrono::milliseconds lease_sweep_interval = std::chrono::seconds(1);
  // When the sweeper finds it has not run for longer than this (the database, or every
  // instance, was down), no lease expires before this much time from then: owners get a chance
  // to keep their leases alive instead of all expiring at once. Default 10 seconds.
  std::chrono::milliseconds lease_grace = std::chrono::seconds(10);
  // Who this store's writes are recorded as in the history, unless a write names its own
  // (WriteOptions::actor). Default "": "application_name/database user" as PostgreSQL reports
  // them.
  std::string actor;
  // When non-empty, the store keeps a copy of its cache in this file (written atomically: a
  // temporary file, fsync, rename; mode 0600; checksummed), at most once per snapshot_interval
  // and only when something changed. When the database cannot be reached at open(), the store
  // opens from the file instead: stale, reads served, writes refused with kUnavailable, catching
  // up from the file's revision once the database answers. A file that is corrupt, truncated or
  // of another table is refused (logged), never loaded. Default "" (no file).
  std::string snapshot_file;
  // Least time between two writes of snapshot_file. Default 1 second.
  std::chrono::milliseconds snapshot_interval = std::chrono::seconds(1);
  // Logger for the store. Default (nullptr): spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

}  // namespace syncconfig
