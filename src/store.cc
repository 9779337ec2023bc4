// Store: validates calls, writes through the pool, reads from the cache, and wires the cache to
// the dispatcher (callbacks) and the sync worker (notifications, heartbeat, reconnects).
#include "syncconfig/store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <unordered_set>

#include "cache/cache.h"
#include "db/connection.h"
#include "db/connection_pool.h"
#include "db/table_sql.h"
#include "sync/counters.h"
#include "sync/dispatcher.h"
#include "sync/payload_signature.h"
#include "sync/store_state.h"
#include "sync/sync_worker.h"
#include "sync/table_reader.h"
#include "util/validation.h"

namespace syncconfig {

using internal::AppliedBy;
using internal::Deadline;
using internal::deadline_after;

namespace {

constexpr const char* kWriterApplicationName = "syncconfig";

void validate_options(const Options& o) {
  internal::validate_identifier("table_name", o.table_name, internal::kMaxTableNameBytes);
  internal::validate_identifier("channel", o.channel, internal::kMaxIdentifierBytes);
  internal::validate_identifier("schema", o.schema, internal::kMaxIdentifierBytes);
  auto positive = [](const char* field, std::chrono::milliseconds d) {
    if (d.count() <= 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid {}: {} ms, it must be positive", field, d.count()));
    }
  };
  positive("heartbeat_interval", o.heartbeat_interval);
  positive("reconnect_interval", o.reconnect_interval);
  positive("db_timeout", o.db_timeout);
  positive("history_retention", o.history_retention);
  positive("lease_sweep_interval", o.lease_sweep_interval);
  positive("lease_grace", o.lease_grace);
  if (o.actor.size() > 200) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid actor: {} bytes, at most 200", o.actor.size()));
  }
  positive("load_timeout", o.load_timeout);
  positive("snapshot_interval", o.snapshot_interval);
  if (o.pool_size < 1 || o.pool_size > 1000) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid pool_size: {}, it must be 1..1000", o.pool_size));
  }
  if (o.prepared_statements != PreparedStatements::kAuto &&
      o.prepared_statements != PreparedStatements::kOn &&
      o.prepared_statements != PreparedStatements::kOff) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid prepared_statements: {}, it must be kAuto, kOn or kOff",
                            static_cast<int>(o.prepared_statements)));
  }
  if (o.listen_dsn.find('\0') != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument, "invalid listen_dsn: it holds a NUL byte");
  }
  if (!o.listen_dsn.empty()) {
    if (!internal::is_parsable_dsn(o.listen_dsn)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "invalid listen_dsn: neither a valid key=value connection string nor a valid "
                  "postgresql:// URI (details withheld: they would quote it)");
    }
  }
  // jsonb cannot hold more than 255 MB.
  if (o.max_value_bytes < 1 || o.max_value_bytes > (255u << 20)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid max_value_bytes: {}, it must be 1..{}", o.max_value_bytes,
                            255u << 20));
  }
}

[[noreturn]] void refuse_channel(const internal::TableSql& sql, const std::string& channel,
                                 std::string_view installed) {
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("invalid channel '{}': table {} already notifies channel '{}', and all "
                          "instances of a table must use the same channel",
                          channel, sql.qualified_table, installed));
}

// Creates the table and the protocol's objects if missing or from another protocol version, in
// one transaction that concurrent starters take turns on. When they are in place already, it
// changes nothing: an instance then needs no more than read/write rights on the table.
void ensure_schema(internal::Connection& conn, const internal::TableSql& sql,
                   const std::string& channel, Deadline deadline, spdlog::logger& logger) {
  internal::Result found = conn.exec(sql.installed, {sql.qualified_table}, deadline);
  bool upgrade_only = false;
  if (found.rows() == 1 && found.text(0, 1) == internal::kProtocolVersion) {
    if (found.text(0, 0) != channel) refuse_channel(sql, channel, found.text(0, 0));
    if (conn.exec(sql.signing_installed, {}, deadline).text(0, 0) == "t") return;
    // Protocol 2 from before signed payloads: add the key and the functions that sign. A role
    // that may not (it does not own the objects) runs without; nothing depends on it.
    upgrade_only = true;
  }
  conn.exec_script("BEGIN", deadline);
  try {
    conn.exec(sql.setup_lock, {}, deadline);
    conn.exec_script(sql.setup, deadline);
    const internal::PayloadKey key = internal::make_payload_key();
    conn.exec(sql.insert_key, {internal::to_hex(key.ipad), internal::to_hex(key.opad)}, deadline);
    internal::Result r = conn.exec(sql.installed, {sql.qualified_table}, deadline);
    if (r.rows() == 1 && r.text(0, 0) != channel) refuse_channel(sql, channel, r.text(0, 0));
    if (r.rows() == 0 || r.text(0, 1) != internal::kProtocolVersion) {
      conn.exec_script(sql.create_triggers, deadline);
    }
    conn.exec_script("COMMIT", deadline);
  } catch (const Error& e) {
    if (conn.ok()) {
      try {
        conn.exec_script("ROLLBACK", deadline);
      } catch (const Error&) {
      }
    }
    if (!upgrade_only || !conn.ok()) throw;
    logger.warn(
        "syncconfig: could not add payload signing to {} ({}); payloads stay unsigned, and every "
        "instance verifies them by a read of the change log",
        sql.qualified_table, e.message());
  }
}

Error with_context(const Error& e, std::string_view what) {
  return Error(e.code(), fmt::format("{}: {}", what, e.message()));
}

using internal::quote_for_message;

}  // namespace

class Store::Impl {
 public:
  Impl(std::string dsn, Options options)
      : options_(std::move(options)),
        logger_(options_.logger ? options_.logger : spdlog::default_logger()),
        dsn_(std::move(dsn)),
        sql_(options_.schema, options_.table_name, options_.channel),
        dispatcher_(logger_, counters_),
        cache_(dispatcher_),
        pool_(dsn_, options_.pool_size, kWriterApplicationName, options_.prepared_statements) {
    internal::SyncContext ctx{listen_dsn(),
                              options_,
                              &sql_,
                              &cache_,
                              &counters_,
                              logger_,
                              [this](int pid) { return pool_.owns_backend(pid); },
                              /*on_connect=*/{}};
    std::unique_ptr<internal::Connection> conn;
    try {
      Deadline deadline = deadline_after(options_.db_timeout);
      conn = internal::open_listener(ctx, deadline);
      ensure_schema(*conn, sql_, options_.channel, deadline, *logger_);
      internal::load_all(*conn, sql_, cache_, internal::ReplaceMode::kInitial,
                         deadline_after(options_.load_timeout));
    } catch (const Error& e) {
      if (!e.retryable() || options_.snapshot_file.empty() || !open_from_file(e)) throw;
      conn.reset();
      // The first connection that succeeds sets the table up if it is missing, then catches up
      // from the file's revision.
      ctx.on_connect = [this](internal::Connection& c, Deadline d) {
        ensure_schema(c, sql_, options_.channel, d, *logger_);
      };
    }
    worker_ = std::make_unique<internal::SyncWorker>(std::move(ctx), std::move(conn));
    if (!options_.snapshot_file.empty()) {
      writer_ =
          internal::start_snapshot_writer(cache_, counters_, options_.snapshot_file,
                                          options_.snapshot_interval, snapshot_source(), logger_);
    }
    if (!counters_.stale.load()) {
      logger_->info("syncconfig: opened {} on {}{} ({} keys, notifications {})",
                    sql_.qualified_table, internal::redact_dsn(dsn_),
                    options_.listen_dsn.empty()
                        ? std::string()
                        : fmt::format(" (listener on {})", internal::redact_dsn(listen_dsn())),
                    cache_.size(), options_.enable_notification ? "on" : "off");
    }
  }

  // The listener's session connection: Options::listen_dsn, else the pool's.
  const std::string& listen_dsn() const {
    return options_.listen_dsn.empty() ? dsn_ : options_.listen_dsn;
  }

  // What this store's snapshot file is a snapshot of: a file of another table is refused.
  std::string snapshot_source() const { return "table " + sql_.qualified_table; }

  // The database cannot be reached: open from the snapshot file, stale. False (logged) when the
  // file is missing or refused.
  bool open_from_file(const Error& why) {
    int64_t revision = 0;
    try {
      revision = internal::open_stale_from_file(cache_, counters_, options_.snapshot_file,
                                                snapshot_source());
    } catch (const Error& e) {
      logger_->error("syncconfig: the database is unreachable and the snapshot file is refused: {}",
                     e.message());
      return false;
    }
    logger_->warn(
        "syncconfig: {} is unreachable ({}); serving the snapshot file {} (revision {}, {} keys), "
        "stale: writes are refused until the database answers",
        internal::redact_dsn(dsn_), why.message(), options_.snapshot_file, revision, cache_.size());
    return true;
  }

  ~Impl() { shutdown(); }

  void check_open() const {
    if (closed_.load()) throw Error(ErrorCode::kShutdown, "the store is shut down");
  }

  // Whether with_connection may run `f` again on a new connection after the link broke under it.
  enum class Rerun {
    // Only if nothing reached the server (a write: once a statement was sent, it may have
    // committed before the link broke — under synchronous replication a commit waiting for the
    // standby is durable and visible although unacknowledged — and a second run would commit
    // it twice, or report a compare-and-set that succeeded as a conflict).
    kIfUnsent,
    kAlways,  // Reads: running them twice changes nothing.
  };

  // Runs f(connection) with a pooled connection. A connection that broke under the call (server
  // restart, terminated session) is replaced once, as `rerun` allows; otherwise a write whose
  // link broke after it was sent fails with kUnavailable saying its outcome is unknown.
  template <class F>
  auto with_connection(Deadline deadline, F&& f, Rerun rerun = Rerun::kIfUnsent) {
    for (int attempt = 0;; ++attempt) {
      auto conn = pool_.acquire(deadline);
      const uint64_t sent_before = conn->statements_sent();
      try {
        return f(*conn);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kUnavailable || conn->ok()) throw;
        const bool unsent = conn->statements_sent() == sent_before;
        if (attempt == 0 && (unsent || rerun == Rerun::kAlways) &&
            internal::Clock::now() < deadline) {
          continue;
        }
        if (unsent || rerun == Rerun::kAlways) throw;
        throw Error(ErrorCode::kUnavailable,
                    e.message() +
                        " (the link broke after the write was sent: it may have committed; read "
                        "the key to know)");
      }
    }
  }

  void check_writable() const {
    check_open();
    if (counters_.stale.load()) {
      throw Error(ErrorCode::kUnavailable,
                  "the store is stale (opened from its snapshot file; the database has not "
                  "answered since)");
    }
  }

  // Checks what a write carries besides key and value.
  void validate_write_options(const WriteOptions& o) const {
    if (o.comment.size() > 1000) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid comment: {} bytes, at most 1000", o.comment.size()));
    }
    if (o.actor.size() > 200) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid actor: {} bytes, at most 200", o.actor.size()));
    }
    if (!internal::is_valid_utf8(o.comment) || o.comment.find('\0') != std::string::npos) {
      throw Error(ErrorCode::kInvalidArgument, "invalid comment: not UTF-8 text (or holds NUL)");
    }
    if (!internal::is_valid_utf8(o.actor) || o.actor.find('\0') != std::string::npos) {
      throw Error(ErrorCode::kInvalidArgument, "invalid actor: not UTF-8 text (or holds NUL)");
    }
    if (o.lease < 0) {
      throw Error(ErrorCode::kInvalidArgument, fmt::format("invalid lease: {}", o.lease));
    }
  }
  const std::string& actor_of(const WriteOptions& o) const {
    return o.actor.empty() ? options_.actor : o.actor;
  }

  // One row of the put/del functions: status, revision, value text.
  struct Written {
    std::string status;
    int64_t revision = 0;
    std::optional<std::string> text;
  };

  Written run_put(std::string_view key, const std::string& text, std::optional<int64_t> expected,
                  const WriteOptions& options) {
    Deadline deadline = deadline_after(options_.db_timeout);
    const std::string expected_text = expected ? std::to_string(*expected) : std::string();
    const std::string lease = std::to_string(options.lease);
    internal::Result r = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec_prepared(
          "syncconfig_put", sql_.put,
          {key, text, expected ? std::optional<std::string_view>(expected_text) : std::nullopt,
           lease, actor_of(options), options.comment},
          deadline);
    });
    return read_written(r);
  }

  Written run_del(std::string_view key, std::optional<int64_t> expected,
                  const WriteOptions& options, std::string_view why = "delete") {
    Deadline deadline = deadline_after(options_.db_timeout);
    const std::string expected_text = expected ? std::to_string(*expected) : std::string();
    internal::Result r = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec_prepared(
          "syncconfig_del", sql_.del,
          {key, expected ? std::optional<std::string_view>(expected_text) : std::nullopt,
           actor_of(options), options.comment, why},
          deadline);
    });
    return read_written(r);
  }

  static Written read_written(const internal::Result& r) {
    if (r.rows() != 1) throw Error(ErrorCode::kInternal, "a write function returned no row");
    Written w;
    w.status = r.text(0, 0);
    w.revision = r.int64(0, 1);
    if (!r.is_null(0, 2)) w.text = std::string(r.text(0, 2));
    return w;
  }

  std::optional<nlohmann::json> to_json(std::string_view key,
                                        const std::optional<std::string>& text) {
    if (!text) return std::nullopt;
    std::optional<internal::ParsedValue> v = internal::parse_value(key, *text);
    if (!v) throw Error(ErrorCode::kInternal, "the database returned a value that is not JSON");
    return v->entry->to_json();
  }

  // Applies the stored value of this instance's own write to the cache; returns it as JSON.
  nlohmann::json apply_own_set(std::string_view key, const std::string& text, int64_t revision) {
    std::optional<internal::ParsedValue> stored = internal::parse_value(key, text);
    if (!stored)
      throw Error(ErrorCode::kInternal, "the database returned a value that is not JSON");
    nlohmann::json out = stored->entry->to_json();
    cache_.upsert(std::move(*stored), revision, ChangeOrigin::kLocal, AppliedBy::kWriter);
    return out;
  }

  [[noreturn]] void no_lease(const WriteOptions& options) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("lease {} does not exist (it expired or was revoked)", options.lease));
  }

  WriteResult put(std::string_view key, const nlohmann::json& value, const WriteOptions& options) {
    return set_if_impl(key, value, std::nullopt, options, "set").first;
  }

  // set() and set_if(): the write's own result (never a re-read of the cache).
  std::pair<WriteResult, CasResult> set_if_impl(std::string_view key, const nlohmann::json& value,
                                                std::optional<int64_t> expected,
                                                const WriteOptions& options, const char* what) {
    check_writable();
    internal::validate_key(key);
    validate_write_options(options);
    if (expected && *expected < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{}({}): invalid expected revision {}", what, quote_for_message(key),
                              *expected));
    }
    std::string text = internal::serialize_value(key, value, options_.max_value_bytes);
    WriteResult out;
    CasResult cas;
    try {
      Written w = run_put(key, text, expected, options);
      if (w.status == "no_lease") no_lease(options);
      if (w.status == "conflict") {
        cas.revision = w.revision;
        cas.value = to_json(key, w.text);
        return {out, cas};
      }
      if (!w.text) {
        throw Error(ErrorCode::kInternal,
                    fmt::format("{}({}): the write function reported success without the stored "
                                "value (revision {})",
                                what, quote_for_message(key), w.revision));
      }
      out.revision = w.revision;
      out.value = apply_own_set(key, *w.text, w.revision);
      cas.succeeded = true;
      cas.revision = out.revision;
      cas.value = out.value;
    } catch (const Error& e) {
      throw with_context(e, fmt::format("{}({}) failed", what, quote_for_message(key)));
    }
    counters_.writes.fetch_add(1);
    return {out, cas};
  }

  WriteResult erase(std::string_view key, const WriteOptions& options) {
    return remove_if_impl(key, std::nullopt, options, "remove").first;
  }

  std::pair<WriteResult, CasResult> remove_if_impl(std::string_view key,
                                                   std::optional<int64_t> expected,
                                                   const WriteOptions& options, const char* what) {
    check_writable();
    internal::validate_key(key);
    validate_write_options(options);
    if (expected && *expected <= 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{}({}): invalid expected revision {} (a key that exists has a "
                              "revision above 0)",
                              what, quote_for_message(key), *expected));
    }
    WriteResult out;
    CasResult cas;
    try {
      Written w = run_del(key, expected, options);
      if (w.status == "absent") return {out, cas};
      if (w.status == "conflict") {
        cas.revision = w.revision;
        cas.value = to_json(key, w.text);
        return {out, cas};
      }
      out.revision = w.revision;
      cache_.remove(key, out.revision, ChangeOrigin::kLocal, AppliedBy::kWriter);
      cas.succeeded = true;
      cas.revision = out.revision;
    } catch (const Error& e) {
      throw with_context(e, fmt::format("{}({}) failed", what, quote_for_message(key)));
    }
    counters_.deletes.fetch_add(1);
    return {out, cas};
  }

  std::optional<KeyEntry> get_entry(std::string_view key) {
    check_open();
    internal::validate_key(key);
    Deadline deadline = deadline_after(options_.db_timeout);
    try {
      internal::Result r = with_connection(
          deadline,
          [&](internal::Connection& conn) {
            return conn.exec_prepared("syncconfig_entry", sql_.select_entry, {key}, deadline);
          },
          Rerun::kAlways);
      if (r.rows() == 0) return std::nullopt;
      KeyEntry e;
      e.value = *to_json(key, std::string(r.text(0, 0)));
      e.revision = r.int64(0, 1);
      e.updated_at =
          std::chrono::system_clock::time_point(std::chrono::microseconds(r.int64(0, 2)));
      e.lease = r.int64(0, 3);
      return e;
    } catch (const Error& e) {
      throw with_context(e, fmt::format("get_entry({}) failed", quote_for_message(key)));
    }
  }

  TxnResult commit(const Transaction& txn);
  std::vector<HistoryRecord> history(const Config::HistoryQuery& q);
  Snapshot snapshot_at(int64_t revision, std::string_view prefix);
  TxnResult rollback(std::string_view target, bool prefix, int64_t revision,
                     const WriteOptions& options);
  Lease grant_lease(std::chrono::seconds ttl);
  std::optional<Lease> keep_alive(int64_t lease);
  bool revoke_lease(int64_t lease);

  void sync() {
    check_open();
    worker_->request_sync();
  }

  ChangesSince changes_since(int64_t revision, std::string_view prefix) {
    check_open();
    if (revision < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("changes_since({}): a revision is not negative", revision));
    }
    Deadline deadline = deadline_after(options_.load_timeout);
    internal::TableChanges read;
    try {
      read = with_connection(
          deadline,
          [&](internal::Connection& conn) {
            return internal::read_changes_since(conn, sql_, revision, internal::WithDigest::kNo,
                                                deadline, internal::WithTxids::kYes);
          },
          Rerun::kAlways);
    } catch (const Error& e) {
      throw with_context(e, fmt::format("changes_since({}) failed", revision));
    }
    ChangesSince out;
    out.revision = read.snapshot_revision;
    if (!read.answerable) {
      out.reason = read.snapshot_revision < revision
                       ? fmt::format(
                             "revision {} is beyond the table's newest ({}): a history "
                             "this table does not have",
                             revision, read.snapshot_revision)
                       : fmt::format("the deletions after revision {} were pruned (up to {})",
                                     revision, read.compacted);
      return out;
    }
    // Merge rows and tombstones in revision order, as catch_up applies them.
    std::size_t ri = 0, ti = 0;
    const auto& rows = read.rows;
    const auto& tombstones = read.tombstones;
    while (ri < rows.size() || ti < tombstones.size()) {
      const bool take_row = ti == tombstones.size() ||
                            (ri < rows.size() && rows[ri].revision < tombstones[ti].revision);
      if (take_row) {
        const internal::Row& row = rows[ri++];
        std::string_view key = row.value.entry->key();
        if (!key.starts_with(prefix)) continue;
        out.changes.push_back(Change{
            std::string(key), row.value.entry->to_json(), row.revision, ChangeOrigin::kResync, {}});
      } else {
        const internal::Tombstone& tomb = tombstones[ti++];
        // A TRUNCATE's mark: the log recorded each key it removed, before it.
        if (tomb.kind == 't') continue;
        if (!std::string_view(tomb.key).starts_with(prefix)) continue;
        Change gone{tomb.key, std::nullopt, tomb.revision, ChangeOrigin::kResync, {}};
        gone.expired = tomb.kind == 'x';
        out.changes.push_back(std::move(gone));
      }
    }
    // A transaction's changes are consecutive here too: each but its last (by the change log's
    // transaction ids) says more follows, as a notification-fed stream does. Unlogged changes
    // (replica-mode writes) stand alone.
    auto txid_of = [&](int64_t r) {
      auto it = read.txids.find(r);
      return it == read.txids.end() ? int64_t{0} : it->second;
    };
    for (std::size_t i = 0; i + 1 < out.changes.size(); ++i) {
      const int64_t t = txid_of(out.changes[i].revision);
      out.changes[i].unit_end = t == 0 || t != txid_of(out.changes[i + 1].revision);
    }
    out.complete = true;
    return out;
  }

  void shutdown() {
    std::lock_guard lock(shutdown_mu_);
    if (closed_.exchange(true)) return;
    if (worker_) worker_->stop();
    if (writer_) writer_->stop();  // Writes the final state.
    dispatcher_.stop();
    pool_.close();
    logger_->debug("syncconfig: {} shut down", sql_.qualified_table);
  }

  Stats stats() const { return internal::read_stats(cache_, counters_); }

  // Declaration order is construction order: the dispatcher outlives the cache that feeds it,
  // and the worker (which uses both) is stopped first.
  Options options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::string dsn_;
  internal::TableSql sql_;
  internal::Counters counters_;
  internal::Dispatcher dispatcher_;
  internal::Cache cache_;
  internal::ConnectionPool pool_;
  std::unique_ptr<internal::SyncWorker> worker_;
  std::unique_ptr<internal::SnapshotWriter> writer_;
  std::mutex shutdown_mu_;
  std::atomic<bool> closed_{false};
};

namespace {

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

void validate_prefix(std::string_view prefix, std::size_t index) {
  if (prefix.size() > internal::kMaxKeyBytes || !internal::is_valid_utf8(prefix) ||
      prefix.find('\0') != std::string_view::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("guard {}: invalid prefix {} (at most 255 bytes of UTF-8, no NUL)",
                            index, quote_for_message(prefix)));
  }
}

std::chrono::system_clock::time_point from_us(int64_t us) {
  return std::chrono::system_clock::time_point(std::chrono::microseconds(us));
}

// A lease from a row (id, ttl seconds, expiry in microseconds).
Lease lease_of(const internal::Result& r) {
  return Lease{r.int64(0, 0), std::chrono::seconds(r.int64(0, 1)), from_us(r.int64(0, 2))};
}

}  // namespace

TxnResult Store::Impl::commit(const Transaction& txn) {
  check_writable();
  if (txn.operations.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "commit: a transaction needs at least one operation");
  }
  if (txn.operations.size() > kMaxTransactionOperations) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("commit: {} operations, at most {}", txn.operations.size(),
                            kMaxTransactionOperations));
  }
  validate_write_options(WriteOptions{txn.comment, txn.actor, 0});
  // The document the transaction function reads. Values go in as their validated JSON text.
  std::string doc = "{\"guards\":[";
  for (std::size_t i = 0; i < txn.guards.size(); ++i) {
    const Guard& g = txn.guards[i];
    if (g.revision < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("guard {}: invalid revision {}", i, g.revision));
    }
    if (i > 0) doc += ',';
    if (g.kind == Guard::Kind::kRevision) {
      try {
        internal::validate_key(g.key);
      } catch (const Error& e) {
        throw Error(e.code(), fmt::format("guard {}: {}", i, e.message()));
      }
      doc += fmt::format("{{\"key\":{},\"revision\":{}}}", json_string(g.key), g.revision);
    } else {
      validate_prefix(g.key, i);
      doc += fmt::format("{{\"prefix\":{},\"since\":{}}}", json_string(g.key), g.revision);
    }
  }
  doc += "],\"operations\":[";
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < txn.operations.size(); ++i) {
    const Operation& op = txn.operations[i];
    try {
      internal::validate_key(op.key);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("operation {}: {}", i, e.message()));
    }
    if (!seen.insert(op.key).second) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("operation {}: key {} appears in two operations of the transaction",
                              i, quote_for_message(std::string_view(op.key))));
    }
    if (i > 0) doc += ',';
    doc += "{\"key\":" + json_string(op.key);
    if (op.value) {
      doc += ",\"value\":";
      doc += internal::serialize_value(op.key, *op.value, options_.max_value_bytes);
    }
    doc += '}';
    if (doc.size() > kMaxTransactionBytes) {
      throw Error(
          ErrorCode::kInvalidArgument,
          fmt::format("commit: the transaction is larger than {} MiB", kMaxTransactionBytes >> 20));
    }
  }
  doc += "]}";

  Deadline deadline = deadline_after(options_.load_timeout);
  internal::Result r;
  try {
    r = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec(sql_.txn, {doc, actor_of(WriteOptions{{}, txn.actor, 0}), txn.comment},
                       deadline);
    });
  } catch (const Error& e) {
    throw with_context(e, "commit failed");
  }
  TxnResult out;
  std::vector<internal::CacheChange> changes;
  for (int i = 0; i < r.rows(); ++i) {
    const std::string_view kind = r.text(i, 0);
    const std::size_t idx = static_cast<std::size_t>(r.int64(i, 1));
    const std::string key(r.text(i, 2));
    if (kind == "failed") {
      out.failed_guard = idx;
      const Guard& g = txn.guards.at(idx);
      const std::string_view why = r.text(i, 4);
      if (why == "pruned") {
        out.reason = fmt::format(
            "guard {}: the history after revision {} was pruned (up to {}): whether keys under "
            "{} changed since cannot be told",
            idx, g.revision, r.int64(i, 3), quote_for_message(std::string_view(g.key)));
      } else if (why == "changed") {
        out.reason = fmt::format("guard {}: keys under {} changed after revision {}", idx,
                                 quote_for_message(std::string_view(g.key)), g.revision);
      } else if (g.revision == 0) {
        out.reason =
            fmt::format("guard {}: key {} exists", idx, quote_for_message(std::string_view(g.key)));
      } else if (why == "absent") {
        out.reason = fmt::format("guard {}: key {} is absent, not at revision {}", idx,
                                 quote_for_message(std::string_view(g.key)), g.revision);
      } else {
        out.reason = fmt::format("guard {}: key {} is not at revision {}", idx,
                                 quote_for_message(std::string_view(g.key)), g.revision);
      }
    } else if (kind == "current") {
      KeyState st;
      st.key = key;
      st.revision = r.int64(i, 3);
      if (!r.is_null(i, 4)) st.value = to_json(key, std::string(r.text(i, 4)));
      out.current.push_back(std::move(st));
    } else if (kind == "op") {
      internal::CacheChange c;
      c.revision = r.int64(i, 3);
      out.revision = std::max(out.revision, c.revision);
      if (r.is_null(i, 4)) {
        c.kind = internal::CacheChange::Kind::kRemove;
        c.key = key;
      } else {
        c.kind = internal::CacheChange::Kind::kUpsert;
        c.value = internal::parse_value(key, r.text(i, 4));
        if (!c.value)
          throw Error(ErrorCode::kInternal, "the database returned a value that is not JSON");
      }
      changes.push_back(std::move(c));
    }
  }
  if (out.failed_guard) {
    if (out.current.empty() && txn.guards[*out.failed_guard].kind == Guard::Kind::kRevision) {
      out.current.push_back(KeyState{txn.guards[*out.failed_guard].key, 0, std::nullopt});
    }
    return out;
  }
  out.committed = true;
  std::sort(changes.begin(), changes.end(),
            [](const auto& a, const auto& b) { return a.revision < b.revision; });
  cache_.apply(std::move(changes), ChangeOrigin::kLocal, AppliedBy::kWriter);
  counters_.writes.fetch_add(1);
  return out;
}

std::vector<HistoryRecord> Store::Impl::history(const Config::HistoryQuery& q) {
  check_open();
  if (q.prefix) {
    validate_prefix(q.key, 0);
  } else {
    internal::validate_key(q.key);
  }
  if (q.limit < 1 || q.limit > 10'000) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("history: invalid limit {}, it must be 1..10000", q.limit));
  }
  if (q.before < 0) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("history: invalid before {}", q.before));
  }
  Deadline deadline = deadline_after(options_.db_timeout);
  const std::string before = std::to_string(q.before), limit = std::to_string(q.limit);
  internal::Result r;
  try {
    r = with_connection(
        deadline,
        [&](internal::Connection& conn) {
          return conn.exec(q.prefix ? sql_.history_prefix : sql_.history, {q.key, before, limit},
                           deadline);
        },
        Rerun::kAlways);
  } catch (const Error& e) {
    throw with_context(
        e, fmt::format("history({}) failed", quote_for_message(std::string_view(q.key))));
  }
  std::vector<HistoryRecord> out;
  out.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    HistoryRecord h;
    h.revision = r.int64(i, 0);
    h.key = r.text(i, 1);
    h.op = r.text(i, 2);
    if (!r.is_null(i, 3)) h.value = to_json(h.key, std::string(r.text(i, 3)));
    if (!r.is_null(i, 4)) h.previous_value = to_json(h.key, std::string(r.text(i, 4)));
    h.previous_revision = r.int64(i, 5);
    h.changed_at = from_us(r.int64(i, 6));
    h.actor = r.text(i, 7);
    h.comment = r.text(i, 8);
    out.push_back(std::move(h));
  }
  return out;
}

namespace {

[[noreturn]] void out_of_range(const internal::PastState& st, int64_t revision) {
  if (revision > st.snapshot_revision) {
    throw Error(ErrorCode::kOutOfRange, fmt::format("revision {} is beyond the table's newest ({})",
                                                    revision, st.snapshot_revision));
  }
  throw Error(ErrorCode::kOutOfRange,
              fmt::format("revision {} is older than the history kept: records up to revision {} "
                          "were pruned (Options::history_retention)",
                          revision, st.compacted));
}

}  // namespace

Snapshot Store::Impl::snapshot_at(int64_t revision, std::string_view prefix) {
  check_open();
  if (revision < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("snapshot_at: invalid revision {}", revision));
  }
  validate_prefix(prefix, 0);
  Deadline deadline = deadline_after(options_.load_timeout);
  internal::PastState st;
  try {
    st = with_connection(
        deadline,
        [&](internal::Connection& conn) {
          return internal::read_state_at(conn, sql_, revision, prefix, /*with_current=*/false,
                                         deadline);
        },
        Rerun::kAlways);
  } catch (const Error& e) {
    throw with_context(e, fmt::format("snapshot_at({}) failed", revision));
  }
  if (!st.answerable) out_of_range(st, revision);
  Snapshot out;
  out.revision = revision;
  for (auto& [key, v] : st.past) out.values.emplace(key, *to_json(key, v.first));
  return out;
}

TxnResult Store::Impl::rollback(std::string_view target, bool prefix, int64_t revision,
                                const WriteOptions& options) {
  check_writable();
  if (prefix) {
    validate_prefix(target, 0);
  } else {
    internal::validate_key(target);
  }
  if (revision < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("rollback: invalid revision {}", revision));
  }
  Deadline deadline = deadline_after(options_.load_timeout);
  internal::PastState st;
  try {
    st = with_connection(
        deadline,
        [&](internal::Connection& conn) {
          return internal::read_state_at(conn, sql_, revision, target, /*with_current=*/true,
                                         deadline);
        },
        Rerun::kAlways);
  } catch (const Error& e) {
    throw with_context(e, fmt::format("rollback to {} failed", revision));
  }
  if (!st.answerable) out_of_range(st, revision);
  if (!prefix) {
    // state_at selects by prefix: keep the key itself only.
    std::erase_if(st.past, [&](const auto& kv) { return kv.first != target; });
    std::erase_if(st.current, [&](const auto& kv) { return kv.first != target; });
  }
  Transaction txn;
  txn.comment =
      options.comment.empty() ? fmt::format("rollback to revision {}", revision) : options.comment;
  txn.actor = options.actor;
  if (prefix) {
    txn.require_unchanged(std::string(target), st.snapshot_revision);
  } else {
    auto it = st.current.find(std::string(target));
    txn.require(std::string(target), it == st.current.end() ? 0 : it->second.second);
  }
  for (const auto& [key, v] : st.past) {
    auto it = st.current.find(key);
    if (it == st.current.end() || it->second.first != v.first) {
      txn.set(key, nlohmann::json::parse(v.first));
    }
  }
  for (const auto& [key, v] : st.current) {
    if (!st.past.contains(key)) txn.remove(key);
  }
  if (txn.operations.empty()) {
    TxnResult same;
    same.committed = true;  // Already in that state: nothing to write.
    return same;
  }
  return commit(txn);
}

Lease Store::Impl::grant_lease(std::chrono::seconds ttl) {
  check_writable();
  if (ttl.count() < 1 || ttl.count() > 365 * 24 * 3600) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("grant_lease: invalid ttl {} s, it must be 1 s .. 1 year", ttl.count()));
  }
  Deadline deadline = deadline_after(options_.db_timeout);
  const std::string t = std::to_string(ttl.count());
  try {
    internal::Result r = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec(sql_.leases_grant, {t}, deadline);
    });
    return lease_of(r);
  } catch (const Error& e) {
    throw with_context(e, "grant_lease failed");
  }
}

std::optional<Lease> Store::Impl::keep_alive(int64_t lease) {
  check_writable();
  Deadline deadline = deadline_after(options_.db_timeout);
  const std::string id = std::to_string(lease);
  try {
    internal::Result r = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec(sql_.leases_keep_alive, {id}, deadline);
    });
    if (r.rows() == 0) return std::nullopt;
    return lease_of(r);
  } catch (const Error& e) {
    throw with_context(e, fmt::format("keep_alive({}) failed", lease));
  }
}

bool Store::Impl::revoke_lease(int64_t lease) {
  check_writable();
  Deadline deadline = deadline_after(options_.db_timeout);
  const std::string id = std::to_string(lease);
  try {
    internal::Result gone = with_connection(deadline, [&](internal::Connection& conn) {
      return conn.exec(sql_.leases_delete, {id}, deadline);
    });
    if (gone.rows() == 0) return false;
    // Its keys go now (the sweeper would delete them too: they belong to no lease).
    internal::Result keys = with_connection(
        deadline,
        [&](internal::Connection& conn) { return conn.exec(sql_.lease_keys_of, {id}, deadline); },
        Rerun::kAlways);
    WriteOptions why;
    why.comment = fmt::format("lease {} revoked", lease);
    for (int i = 0; i < keys.rows(); ++i) {
      const std::string key(keys.text(i, 0));
      Written w = run_del(key, std::nullopt, why, "expire");
      if (w.status == "ok") {
        cache_.remove(key, w.revision, ChangeOrigin::kLocal, AppliedBy::kWriter);
      }
    }
    return true;
  } catch (const Error& e) {
    throw with_context(e, fmt::format("revoke_lease({}) failed", lease));
  }
}

std::string_view to_string(ChangeOrigin origin) noexcept {  // Declared in config.h.
  switch (origin) {
    case ChangeOrigin::kLocal:
      return "local";
    case ChangeOrigin::kRemote:
      return "remote";
    case ChangeOrigin::kResync:
      return "resync";
  }
  return "unknown";
}

std::unique_ptr<Store> Store::open(const std::string& dsn, Options options) {
  validate_options(options);
  return std::unique_ptr<Store>(new Store(std::make_unique<Impl>(dsn, std::move(options))));
}

std::unique_ptr<Store> Store::open(const PoolManager& pools, const std::string& pool_name,
                                   Options options) {
  PoolDefinition pool = pools.get(pool_name);
  options.schema = pool.schema;
  return open(pool.dsn, std::move(options));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() { shutdown(); }

WriteResult Store::put(std::string_view key, const nlohmann::json& value,
                       const WriteOptions& options) {
  return impl_->put(key, value, options);
}
WriteResult Store::erase(std::string_view key, const WriteOptions& options) {
  return impl_->erase(key, options);
}
std::optional<KeyEntry> Store::get_entry(std::string_view key) const {
  return impl_->get_entry(key);
}
std::optional<Config::Versioned> Store::get_versioned(std::string_view key) const {
  std::optional<Versioned> out;
  impl_->cache_.read(key, [&](const internal::Entry& e) {
    out = Versioned{e.to_json(), e.revision};
  });
  return out;
}
CasResult Store::set_if(std::string_view key, const nlohmann::json& value,
                        int64_t expected_revision, const WriteOptions& options) {
  return impl_->set_if_impl(key, value, expected_revision, options, "set_if").second;
}
CasResult Store::remove_if(std::string_view key, int64_t expected_revision,
                           const WriteOptions& options) {
  return impl_->remove_if_impl(key, expected_revision, options, "remove_if").second;
}
TxnResult Store::commit(const Transaction& txn) { return impl_->commit(txn); }
std::vector<HistoryRecord> Store::history(const HistoryQuery& query) const {
  return impl_->history(query);
}
Snapshot Store::snapshot_at(int64_t revision, std::string_view prefix) const {
  return impl_->snapshot_at(revision, prefix);
}
TxnResult Store::rollback(std::string_view target, bool prefix, int64_t revision,
                          const WriteOptions& options) {
  return impl_->rollback(target, prefix, revision, options);
}
Lease Store::grant_lease(std::chrono::seconds ttl) { return impl_->grant_lease(ttl); }
std::optional<Lease> Store::keep_alive(int64_t lease) { return impl_->keep_alive(lease); }
bool Store::revoke_lease(int64_t lease) { return impl_->revoke_lease(lease); }

bool Store::is_stale() const { return impl_->counters_.stale.load(); }

std::optional<nlohmann::json> Store::get(std::string_view key) const {
  return impl_->cache_.get(key);
}
bool Store::contains(std::string_view key) const {
  return impl_->cache_.read(key, [](const internal::Entry&) {});
}
std::size_t Store::size() const { return impl_->cache_.size(); }
std::map<std::string, nlohmann::json> Store::get_all(std::string_view prefix) const {
  return impl_->cache_.get_all(prefix);
}
Snapshot Store::snapshot(std::string_view prefix) const { return impl_->cache_.snapshot(prefix); }
ChangesSince Store::changes_since(int64_t revision, std::string_view prefix) const {
  return impl_->changes_since(revision, prefix);
}

std::string Store::get_string(std::string_view key, std::string default_value) const {
  return internal::read_string(impl_->cache_, key, std::move(default_value));
}
int64_t Store::get_int(std::string_view key, int64_t default_value) const {
  return internal::read_int(impl_->cache_, key, default_value);
}
double Store::get_double(std::string_view key, double default_value) const {
  return internal::read_double(impl_->cache_, key, default_value);
}
bool Store::get_bool(std::string_view key, bool default_value) const {
  return internal::read_bool(impl_->cache_, key, default_value);
}

SubscriptionId Store::subscribe(Callback callback) {
  return impl_->dispatcher_.subscribe(std::move(callback));
}
SubscriptionId Store::subscribe(Callback callback, ProgressCallback on_progress) {
  return impl_->dispatcher_.subscribe(std::move(callback), std::move(on_progress));
}
void Store::unsubscribe(SubscriptionId id) { impl_->dispatcher_.unsubscribe(id); }
uint32_t Store::get_crc() const { return impl_->cache_.crc(); }
void Store::sync() { impl_->sync(); }
Stats Store::stats() const { return impl_->stats(); }
void Store::shutdown() { impl_->shutdown(); }

}  // namespace syncconfig
