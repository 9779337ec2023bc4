// Store: validates calls, writes through the pool, reads from the cache, and wires the cache to
// the dispatcher (callbacks) and the sync worker (notifications, heartbeat, reconnects).
#include "syncconfig/store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "cache/cache.h"
#include "db/connection.h"
#include "db/connection_pool.h"
#include "db/table_sql.h"
#include "sync/counters.h"
#include "sync/dispatcher.h"
#include "sync/store_state.h"
#include "sync/sync_worker.h"
#include "sync/table_reader.h"
#include "util/validation.h"

namespace syncconfig {

using internal::Deadline;
using internal::deadline_after;

namespace {

constexpr const char* kWriterApplicationName = "syncconfig";

void validate_options(const Options& o) {
  internal::validate_identifier("table_name", o.table_name, 40);
  internal::validate_identifier("channel", o.channel, 63);
  internal::validate_identifier("schema", o.schema, 63);
  auto positive = [](const char* field, std::chrono::milliseconds d) {
    if (d.count() <= 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid {}: {} ms, it must be positive", field, d.count()));
    }
  };
  positive("heartbeat_interval", o.heartbeat_interval);
  positive("reconnect_interval", o.reconnect_interval);
  positive("db_timeout", o.db_timeout);
  positive("tombstone_retention", o.tombstone_retention);
  positive("load_timeout", o.load_timeout);
  positive("snapshot_interval", o.snapshot_interval);
  if (o.pool_size < 1 || o.pool_size > 1000) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid pool_size: {}, it must be 1..1000", o.pool_size));
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
                   const std::string& channel, Deadline deadline) {
  internal::Result found = conn.exec(sql.installed, {sql.qualified_table}, deadline);
  if (found.rows() == 1 && found.text(0, 1) == internal::kProtocolVersion) {
    if (found.text(0, 0) != channel) refuse_channel(sql, channel, found.text(0, 0));
    return;
  }
  conn.exec_script("BEGIN", deadline);
  try {
    conn.exec(sql.setup_lock, {}, deadline);
    conn.exec_script(sql.setup, deadline);
    internal::Result r = conn.exec(sql.installed, {sql.qualified_table}, deadline);
    if (r.rows() == 1 && r.text(0, 0) != channel) refuse_channel(sql, channel, r.text(0, 0));
    if (r.rows() == 0 || r.text(0, 1) != internal::kProtocolVersion) {
      conn.exec_script(sql.create_triggers, deadline);
    }
    conn.exec_script("COMMIT", deadline);
  } catch (...) {
    if (conn.ok()) {
      try {
        conn.exec_script("ROLLBACK", deadline);
      } catch (const Error&) {
      }
    }
    throw;
  }
}

Error with_context(const Error& e, std::string_view what) {
  return Error(e.code(), fmt::format("{}: {}", what, e.message()));
}

std::string quoted(std::string_view key) {
  return nlohmann::json(std::string(key))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

class Store::Impl {
 public:
  Impl(std::string dsn, Options options)
      : options_(std::move(options)),
        logger_(options_.logger ? options_.logger : spdlog::default_logger()),
        dsn_(std::move(dsn)),
        sql_(options_.schema, options_.table_name, options_.channel),
        dispatcher_(logger_, counters_.callback_errors),
        cache_(dispatcher_),
        pool_(dsn_, options_.pool_size, kWriterApplicationName) {
    internal::SyncContext ctx{dsn_,
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
      ensure_schema(*conn, sql_, options_.channel, deadline);
      internal::load_all(*conn, sql_, cache_, /*initial=*/true,
                         deadline_after(options_.load_timeout));
    } catch (const Error& e) {
      if (!e.retryable() || options_.snapshot_file.empty() || !open_from_file(e)) throw;
      conn.reset();
      // The first connection that succeeds sets the table up if it is missing, then catches up
      // from the file's revision.
      ctx.on_connect = [this](internal::Connection& c, Deadline d) {
        ensure_schema(c, sql_, options_.channel, d);
      };
    }
    worker_ = std::make_unique<internal::SyncWorker>(std::move(ctx), std::move(conn));
    if (!options_.snapshot_file.empty()) {
      writer_ =
          internal::start_snapshot_writer(cache_, counters_, options_.snapshot_file,
                                          options_.snapshot_interval, snapshot_source(), logger_);
    }
    if (!counters_.stale.load()) {
      logger_->info("syncconfig: opened {} on {} ({} keys, notifications {})", sql_.qualified_table,
                    internal::redact_dsn(dsn_), cache_.size(),
                    options_.enable_notification ? "on" : "off");
    }
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

  // Runs f(connection) with a pooled connection. A connection that broke under the call (server
  // restart, terminated session) is replaced once: re-running an upsert is harmless, and a
  // re-run remove() reports what it then finds.
  template <class F>
  auto with_connection(Deadline deadline, F&& f) {
    for (int attempt = 0;; ++attempt) {
      auto conn = pool_.acquire(deadline);
      try {
        return f(*conn);
      } catch (const Error& e) {
        if (attempt == 0 && e.code() == ErrorCode::kUnavailable && !conn->ok() &&
            internal::Clock::now() < deadline) {
          continue;
        }
        throw;
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

  WriteResult put(std::string_view key, const nlohmann::json& value, const WriteOptions& options) {
    check_writable();
    internal::validate_key(key);
    std::string text = internal::serialize_value(key, value, options_.max_value_bytes);
    Deadline deadline = deadline_after(options_.db_timeout);
    WriteResult out;
    try {
      auto conn = pool_.acquire(deadline);
      // Most writes change an existing key. A plain UPDATE fires the table's triggers once; an
      // INSERT ... ON CONFLICT fires the insert triggers and then the update triggers (two
      // revisions drawn), which costs ~10% more per write (BENCHMARKS.md).
      internal::Result r =
          conn->exec_prepared("syncconfig_update", sql_.update, {key, text}, deadline);
      if (r.rows() == 0) {
        r = conn->exec_prepared("syncconfig_upsert", sql_.upsert, {key, text}, deadline);
      }
      out.revision = r.int64(0, 0);
      std::optional<internal::ParsedValue> stored = internal::parse_value(key, r.text(0, 1));
      if (!stored) {
        throw Error(ErrorCode::kInternal, "the database returned a value that is not JSON");
      }
      out.value = stored->entry->to_json();
      cache_.upsert(std::move(*stored), out.revision, ChangeOrigin::kLocal,
                    /*local_write=*/true);
    } catch (const Error& e) {
      throw with_context(e, fmt::format("set({}) failed", quoted(key)));
    }
    counters_.writes.fetch_add(1);
    return out;
  }

  WriteResult erase(std::string_view key, const WriteOptions& options) {
    check_writable();
    internal::validate_key(key);
    Deadline deadline = deadline_after(options_.db_timeout);
    WriteResult out;
    try {
      internal::Result r = with_connection(deadline, [&](internal::Connection& conn) {
        return conn.exec_prepared("syncconfig_remove", sql_.remove, {key}, deadline);
      });
      if (r.rows() != 1 || r.is_null(0, 0)) return out;
      out.revision = r.int64(0, 0);
      cache_.remove(key, out.revision, ChangeOrigin::kLocal, /*local_write=*/true);
    } catch (const Error& e) {
      throw with_context(e, fmt::format("remove({}) failed", quoted(key)));
    }
    counters_.deletes.fetch_add(1);
    return out;
  }

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
      read = with_connection(deadline, [&](internal::Connection& conn) {
        return internal::read_changes_since(conn, sql_, revision, /*with_digest=*/false, deadline);
      });
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
        if (tomb.kind == 't') {
          out.changes.clear();
          out.reason =
              fmt::format("a TRUNCATE at revision {} removed keys that the table does not record",
                          tomb.revision);
          return out;
        }
        if (!std::string_view(tomb.key).starts_with(prefix)) continue;
        out.changes.push_back(
            Change{tomb.key, std::nullopt, tomb.revision, ChangeOrigin::kResync, {}});
      }
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
namespace {
[[noreturn]] void not_yet(const char* what) {
  throw Error(ErrorCode::kInternal, std::string(what) + " is not implemented yet");
}
}  // namespace
std::optional<KeyEntry> Store::get_entry(std::string_view) const { not_yet("get_entry"); }
std::optional<Config::Versioned> Store::get_versioned(std::string_view) const { not_yet("get_versioned"); }
CasResult Store::set_if(std::string_view, const nlohmann::json&, int64_t, const WriteOptions&) {
  not_yet("set_if");
}
CasResult Store::remove_if(std::string_view, int64_t, const WriteOptions&) { not_yet("remove_if"); }
TxnResult Store::commit(const Transaction&) { not_yet("commit"); }
std::vector<HistoryRecord> Store::history(const HistoryQuery&) const { not_yet("history"); }
Snapshot Store::snapshot_at(int64_t, std::string_view) const { not_yet("snapshot_at"); }
TxnResult Store::rollback(std::string_view, bool, int64_t, std::string_view) { not_yet("rollback"); }
Lease Store::grant_lease(std::chrono::seconds) { not_yet("grant_lease"); }
std::optional<Lease> Store::keep_alive(int64_t) { not_yet("keep_alive"); }
bool Store::revoke_lease(int64_t) { not_yet("revoke_lease"); }

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
