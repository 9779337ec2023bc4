#include "sync/sync_worker.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "sync/table_reader.h"

namespace syncconfig::internal {
namespace {

constexpr const char* kApplicationName = "syncconfig-listener";
// The first retry after a lost connection: a failover's promotion often takes about this long.
constexpr std::chrono::milliseconds kFirstReconnectDelay(100);
using std::chrono::steady_clock;

// The listener's connection goes through a pooler (Connection::detect_pooler): check that the
// pooler keeps its server session for it. A transaction (or statement) pooler hands the session
// that ran LISTEN back to its pool once LISTEN returns; a notification for it then never reaches
// this client. So: LISTEN on a probe channel of our own, NOTIFY it from a second connection, and
// wait for it. It arrives at once through a session pooler; never through a transaction pooler.
void check_session_kept(Connection& conn, const SyncContext& ctx, Deadline deadline,
                        int interrupt_fd) {
  static std::atomic<uint64_t> probes{0};
  // Digits only: a valid identifier, unique per process and call.
  const std::string channel =
      quote_ident(fmt::format("syncconfig_session_probe_{}_{}", ::getpid(), probes.fetch_add(1)));
  conn.exec_script("LISTEN " + channel, deadline);
  {
    Connection notifier(ctx.dsn, deadline, kApplicationName, interrupt_fd);
    notifier.exec_script("NOTIFY " + channel, deadline);
  }
  bool arrived = false;
  while (std::optional<Notification> n = conn.wait_notification(deadline)) {
    if (quote_ident(n->channel) == channel) {
      arrived = true;
      break;
    }
  }
  if (!arrived) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("the listener's connection ({}) goes through a connection pooler that "
                            "does not keep a server session for it (PgBouncer in transaction or "
                            "statement pooling mode): a notification sent to it did not arrive "
                            "within the db_timeout. The listener needs a session of its own: set "
                            "listen_dsn (Options::listen_dsn) to PostgreSQL itself or to a pool in "
                            "session pooling mode; the write pool may stay behind the "
                            "transaction pooler",
                            redact_dsn(ctx.dsn)));
  }
  conn.exec_script("UNLISTEN " + channel, deadline);
}

}  // namespace

std::unique_ptr<Connection> open_listener(const SyncContext& ctx, Deadline deadline,
                                          int interrupt_fd) {
  auto conn = std::make_unique<Connection>(ctx.dsn, deadline, kApplicationName, interrupt_fd);
  // Session state matters here with or without notifications: the snapshot reads' and the lease
  // sweeper's session locks.
  if (conn->detect_pooler(deadline)) check_session_kept(*conn, ctx, deadline, interrupt_fd);
  if (ctx.options.enable_notification) {
    conn->exec_script("LISTEN " + quote_ident(ctx.options.channel), deadline);
  }
  return conn;
}

SyncWorker::SyncWorker(SyncContext ctx, std::unique_ptr<Connection> conn)
    : ctx_(std::move(ctx)),
      conn_(std::move(conn)),
      reconnect_backoff_(kFirstReconnectDelay, ctx_.options.reconnect_interval) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0 || stop_fd_ < 0) {
    throw Error(ErrorCode::kInternal, fmt::format("eventfd failed: {}", std::strerror(errno)));
  }
  if (conn_) conn_->set_interrupt_fd(stop_fd_);
  ctx_.counters->connected.store(conn_ && conn_->ok());
  next_heartbeat_ = steady_clock::now() + ctx_.options.heartbeat_interval;
  next_reconnect_ = steady_clock::now();
  thread_ = std::thread([this] { run(); });
}

SyncWorker::~SyncWorker() {
  stop();
  ::close(wake_fd_);
  ::close(stop_fd_);
}

void SyncWorker::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void SyncWorker::stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    wake();
    if (thread_.joinable()) thread_.join();
    conn_.reset();
    ctx_.counters->connected.store(false);
    // Anyone still waiting on sync() learns the store is gone.
    MutexLock lock(requests_mu_);
    for (auto& p : requests_)
      p->set_value(SyncOutcome{ErrorCode::kShutdown, "the store is shut down"});
    requests_.clear();
  });
}

void SyncWorker::request_sync() {
  auto promise = std::make_shared<std::promise<SyncOutcome>>();
  std::future<SyncOutcome> done = promise->get_future();
  {
    MutexLock lock(requests_mu_);
    if (stopping_.load()) throw Error(ErrorCode::kShutdown, "the store is shut down");
    requests_.push_back(promise);
  }
  wake();
  // A reconnect plus a full read.
  auto limit = ctx_.options.db_timeout * 2 + ctx_.options.load_timeout;
  if (done.wait_for(limit) != std::future_status::ready) {
    throw Error(ErrorCode::kTimeout, "sync() did not finish in time");
  }
  // The error crosses threads as a value, not as a shared exception object.
  SyncOutcome outcome = done.get();
  if (outcome.failure) throw Error(*outcome.failure, outcome.message);
}

void SyncWorker::drop_connection(const std::string& why) {
  if (conn_ && !stopping_.load()) {
    ctx_.logger->warn("syncconfig: lost the listener connection ({}); reconnecting", why);
  }
  conn_.reset();
  ctx_.counters->connected.store(false);
  ever_lost_ = true;
  is_sweeper_ = false;  // The session lock went with the connection.
  group_txid_ = -1;
  group_max_revision_ = 0;
  group_.clear();  // The catch-up after reconnecting reads them.
  ready_.clear();
  next_reconnect_ = steady_clock::now();  // First attempt right away, then backing off.
  reconnect_backoff_.reset();
}

bool SyncWorker::try_connect() {
  try {
    Deadline deadline = deadline_after(ctx_.options.db_timeout);
    conn_ = open_listener(ctx_, deadline, stop_fd_);
    key_loaded_ = false;
    if (ctx_.on_connect) ctx_.on_connect(*conn_, deadline);
    // LISTEN is in place: whatever commits from now on is notified; read what came before.
    // A catch-up may turn into a full reload: give it the longer bound. After a lost connection
    // the database may not be the one this instance followed (a failover to a standby that
    // lacked commits): the last changes applied here must still be in its log. So too after a
    // start from a snapshot file (its anchors were restored with it).
    std::string why;
    ReadResult r;
    const bool check = ever_lost_ || ctx_.counters->stale.load();
    if (check && history_diverged(*conn_, *ctx_.sql, ctx_.cache->anchors(), deadline, &why)) {
      ctx_.logger->warn(
          "syncconfig: the history of {} diverged from the one this instance followed: {} (a "
          "failover to a standby that lacked commits?); reloading it whole, watchers reset",
          ctx_.sql->qualified_table, why);
      r = reload_reset(*conn_, *ctx_.sql, *ctx_.cache, deadline_after(ctx_.options.load_timeout));
    } else {
      r = catch_up(*conn_, *ctx_.sql, *ctx_.cache, WithDigest::kNo,
                   deadline_after(ctx_.options.load_timeout));
    }
    (r.full ? ctx_.counters->resyncs : ctx_.counters->catch_ups).fetch_add(1);
    if (r.reset) ctx_.counters->history_resets.fetch_add(1);
    ctx_.counters->connected.store(true);
    if (ctx_.counters->stale.exchange(false)) {
      ctx_.logger->info("syncconfig: {} is no longer stale: caught up from its snapshot file",
                        ctx_.sql->qualified_table);
    }
    if (ever_lost_) ctx_.counters->reconnects.fetch_add(1);
    ctx_.logger->info(
        "syncconfig: listener connected to {} ({} after {} failed attempts, {} keys changed)",
        ctx_.sql->qualified_table, r.full ? "full reload" : "caught up", failed_attempts_,
        r.changed);
    failed_attempts_ = 0;
    reconnect_backoff_.reset();
    return true;
  } catch (const Error& e) {
    conn_.reset();
    // Log the first failure and then every tenth, to keep a long outage readable.
    if (failed_attempts_++ % 10 == 0 && !stopping_.load()) {
      ctx_.logger->warn(
          "syncconfig: connecting the listener failed: {}; retrying in at most {} ms (backing "
          "off from {} ms to reconnect_interval, {} ms)",
          e.message(), reconnect_backoff_.ceiling().count(), kFirstReconnectDelay.count(),
          ctx_.options.reconnect_interval.count());
    }
    next_reconnect_ = steady_clock::now() + reconnect_backoff_.next();
    return false;
  }
}

void SyncWorker::serve_requests() {
  std::deque<std::shared_ptr<std::promise<SyncOutcome>>> batch;
  {
    MutexLock lock(requests_mu_);
    batch.swap(requests_);
  }
  if (batch.empty()) return;
  SyncOutcome outcome;
  try {
    if (!conn_ && !try_connect()) {
      throw Error(ErrorCode::kUnavailable, "sync() failed: the database is unreachable");
    }
    ReadResult r = load_all(*conn_, *ctx_.sql, *ctx_.cache, ReplaceMode::kResync,
                            deadline_after(ctx_.options.load_timeout));
    ctx_.counters->resyncs.fetch_add(1);
    if (r.reset) ctx_.counters->history_resets.fetch_add(1);
  } catch (const Error& e) {
    outcome = SyncOutcome{e.code(), e.message()};
    if (!conn_ || !conn_->ok()) drop_connection(e.message());
  }
  for (auto& p : batch) p->set_value(outcome);
}

void SyncWorker::handle(const Notification& n) {
  if (n.channel != ctx_.options.channel) return;
  std::string why;
  std::optional<Notice> notice = parse_notice(n.payload, &why);
  if (!notice) {
    // Checked before anything else so that a foreign payload cannot disturb the protocol state.
    ctx_.counters->notifications_ignored.fetch_add(1);
    if (malformed_logged_++ % 100 == 0) {
      ctx_.logger->warn("syncconfig: ignored a foreign payload on channel '{}' ({}): {:.200}",
                        n.channel, why, n.payload);
    }
    return;
  }
  if (notice->txid != group_txid_) {
    // The previous transaction is complete: apply it, and everything up to its last revision is.
    complete_group();
    group_txid_ = notice->txid;
  }
  if (notice->revision <= ctx_.cache->watermark()) {
    ctx_.counters->notifications_ignored.fetch_add(1);  // Already read by a catch-up.
    return;
  }
  group_max_revision_ = std::max(group_max_revision_, notice->revision);
  // A write of this instance's own pool is reported as local, whichever path applies it first.
  const ChangeOrigin origin = ctx_.is_own_backend && ctx_.is_own_backend(n.backend_pid)
                                  ? ChangeOrigin::kLocal
                                  : ChangeOrigin::kRemote;
  const bool ends = notice->ends_transaction;
  group_.push_back(Pending{std::move(*notice), origin});
  if (ends) complete_group();
}

void SyncWorker::complete_group() {
  group_max_revision_ = 0;
  if (group_.empty()) return;
  ready_.push_back(std::move(group_));
  group_.clear();
}

namespace {

// The change log's record at a revision, as apply_ready() reads it.
struct LogRecord {
  std::optional<std::string> key;  // NULL for a truncation mark.
  std::string op;
  std::optional<std::string> value_text;
};

// Whether `record` is the change `notice` claims.
bool matches(const Notice& notice, const LogRecord& record) {
  switch (notice.op) {
    case Notice::Op::kUpsert:
      return record.op == "set" && record.key == notice.key && record.value_text.has_value();
    case Notice::Op::kDelete:
      return (record.op == (notice.expired ? "expire" : "delete")) && record.key == notice.key;
    case Notice::Op::kTruncate:
      return record.op == "truncate" && !record.key;
  }
  return false;
}

// The record a signed notification stands for: the signature says the library's own function
// wrote this payload in the transaction that committed the change.
LogRecord record_of(const Notice& notice) {
  LogRecord rec;
  switch (notice.op) {
    case Notice::Op::kUpsert:
      rec.key = notice.key;
      rec.op = "set";
      rec.value_text = notice.value_text;
      break;
    case Notice::Op::kDelete:
      rec.key = notice.key;
      rec.op = notice.expired ? "expire" : "delete";
      break;
    case Notice::Op::kTruncate:
      rec.op = "truncate";
      break;
  }
  return rec;
}

}  // namespace

void SyncWorker::load_key() {
  key_loaded_ = true;
  key_checked_at_ = steady_clock::now();
  key_.reset();
  const Deadline deadline = deadline_after(ctx_.options.db_timeout);
  try {
    Result installed = conn_->exec(ctx_.sql->signing_installed, {}, deadline);
    if (installed.text(0, 0) != "t") return;
    if (installed.text(0, 1) != "t") {
      if (!key_denied_logged_) {
        key_denied_logged_ = true;
        ctx_.logger->info(
            "syncconfig: this role may not read the payload key of {} (GRANT SELECT on its "
            "_sc_key table to sign and to check signatures): every payload is verified by a read",
            ctx_.sql->qualified_table);
      }
      return;
    }
    Result r = conn_->exec(ctx_.sql->select_key, {}, deadline);
    if (r.rows() == 1) key_ = payload_key_from_hex(r.text(0, 0), r.text(0, 1));
  } catch (const Error& e) {
    if (!conn_->ok()) throw;
    ctx_.logger->warn(
        "syncconfig: reading the payload key of {} failed ({}); payloads are "
        "verified by a read",
        ctx_.sql->qualified_table, e.message());
  }
}

void SyncWorker::apply_ready() {
  if (ready_.empty() || !conn_) return;
  if (!key_loaded_) load_key();
  std::vector<std::vector<Pending>> groups;
  groups.swap(ready_);
  // A catch-up (heartbeat, sync) since these arrived may have read past them: what it read is
  // the table's state at its snapshot, so a change at or below the watermark is in the cache or
  // was undone since (a later TRUNCATE drops keys without a tombstone). Applying it now would
  // bring back a value the table no longer has. handle() checked this on arrival; check again.
  const int64_t covered = ctx_.cache->watermark();
  for (auto& group : groups) {
    const auto stale = std::remove_if(
        group.begin(), group.end(), [&](const Pending& p) { return p.notice.revision <= covered; });
    ctx_.counters->notifications_ignored.fetch_add(
        static_cast<uint64_t>(std::distance(stale, group.end())));
    group.erase(stale, group.end());
  }
  std::unordered_map<int64_t, LogRecord> records;
  std::string revisions = "{";
  std::size_t signed_count = 0;
  // Signed notices whose signature did not check: if the read confirms one, the table has another
  // key than the one this instance holds (or it holds none).
  std::vector<const Notice*> unchecked;
  for (const auto& group : groups) {
    for (const Pending& p : group) {
      const Notice& n = p.notice;
      // An upsert's value must be in the payload (not too large, not too deep) to be taken
      // from it; a signature that does not check is no verdict (another key, since the table
      // was recreated?): the read decides.
      if (key_ && n.signature && (n.op != Notice::Op::kUpsert || n.value_text) &&
          signature_matches(*key_, n.signature->signed_text, n.signature->signature)) {
        records.emplace(n.revision, record_of(n));
        ++signed_count;
        continue;
      }
      if (n.signature) unchecked.push_back(&n);
      if (revisions.size() > 1) revisions += ',';
      revisions += std::to_string(n.revision);
    }
  }
  revisions += '}';
  if (revisions.size() > 2) {
    Result r = conn_->exec_prepared("syncconfig_records_at", ctx_.sql->records_at, {revisions},
                                    deadline_after(ctx_.options.db_timeout));
    records.reserve(records.size() + static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      LogRecord rec;
      if (!r.is_null(i, 1)) rec.key = std::string(r.text(i, 1));
      rec.op = std::string(r.text(i, 2));
      if (!r.is_null(i, 3)) rec.value_text = std::string(r.text(i, 3));
      records.emplace(r.int64(i, 0), std::move(rec));
    }
  }
  if (signed_count > 0) ctx_.counters->notifications_signed.fetch_add(signed_count);
  // Signed with a key this instance does not hold (none was readable when it looked, or the key
  // table was recreated): once a read confirms such a change, look again, at most once a second
  // (a role that may not read the key would otherwise ask on every drain).
  if (!unchecked.empty() && steady_clock::now() - key_checked_at_ >= std::chrono::seconds(1)) {
    for (const Notice* n : unchecked) {
      auto it = records.find(n->revision);
      if (it != records.end() && matches(*n, it->second)) {
        key_loaded_ = false;  // A genuine change signed with another key: read it again.
        break;
      }
    }
  }
  for (auto& group : groups) {
    std::vector<CacheChange> changes;
    changes.reserve(group.size());
    int64_t max_revision = 0;
    std::size_t forged = 0;
    for (Pending& p : group) {
      const Notice& notice = p.notice;
      auto it = records.find(notice.revision);
      if (it == records.end() || !matches(notice, it->second)) {
        ++forged;
        if (forged_logged_++ % 100 == 0) {
          ctx_.logger->warn(
              "syncconfig: ignored a notification on channel '{}' that no commit made: revision {} "
              "({} of '{:.100}') is {} the change log of {} (forged, or meant for another table)",
              ctx_.options.channel, notice.revision,
              notice.op == Notice::Op::kUpsert   ? "write"
              : notice.op == Notice::Op::kDelete ? "deletion"
                                                 : "truncation",
              notice.key, it == records.end() ? "not in" : "another change in",
              ctx_.sql->qualified_table);
        }
        continue;
      }
      LogRecord& record = it->second;
      CacheChange c;
      c.revision = notice.revision;
      if (notice.written_at_us) {
        c.written_at = WriteTime(std::chrono::microseconds(*notice.written_at_us));
      }
      switch (notice.op) {
        case Notice::Op::kTruncate:
          c.kind = CacheChange::Kind::kTruncate;
          break;
        case Notice::Op::kDelete:
          c.kind = CacheChange::Kind::kRemove;
          c.key = notice.key;
          c.expired = notice.expired;
          break;
        case Notice::Op::kUpsert:
          c.kind = CacheChange::Kind::kUpsert;
          // The logged value, whatever the payload carried (or left out: too large for it).
          c.value = parse_value(notice.key, *record.value_text);
          if (!c.value) continue;
          break;
      }
      max_revision = std::max(max_revision, notice.revision);
      changes.push_back(std::move(c));
    }
    if (forged > 0) {
      ctx_.counters->notifications_forged.fetch_add(forged);
      ctx_.counters->notifications_ignored.fetch_add(forged);
    }
    if (changes.empty()) continue;
    const std::size_t count = changes.size();
    // Origins: a unit holds one transaction, so one origin (the first's) describes it.
    const ChangeOrigin origin = group.front().origin;
    const std::size_t applied = ctx_.cache->apply(std::move(changes), origin, AppliedBy::kFeed);
    ctx_.counters->notifications_applied.fetch_add(applied);
    ctx_.counters->notifications_ignored.fetch_add(count - std::min(applied, count));
    ctx_.cache->advance_watermark(max_revision);
  }
}

void SyncWorker::heartbeat() {
  // Catch up and compare with the table in one snapshot. A local write landing between the
  // snapshot and the comparison makes it inconclusive; then try again with a new snapshot.
  for (int attempt = 0; attempt < 3; ++attempt) {
    ReadResult r = catch_up(*conn_, *ctx_.sql, *ctx_.cache, WithDigest::kYes,
                            deadline_after(ctx_.options.load_timeout));
    if (r.full) {
      ctx_.counters->resyncs.fetch_add(1);
      if (r.reset) ctx_.counters->history_resets.fetch_add(1);
      return;
    }
    if (r.changed > 0) ctx_.counters->catch_ups.fetch_add(1);
    CacheDigest mine = ctx_.cache->digest();
    if (mine.max_revision > r.snapshot_revision) continue;
    if (mine.count == r.digest->count && mine.md5_sum == r.digest->md5_sum) {
      ctx_.logger->debug("syncconfig: heartbeat: {} keys in sync (crc {:08x})", mine.count,
                         mine.crc);
      return;
    }
    ctx_.counters->crc_mismatches.fetch_add(1);
    ctx_.logger->warn(
        "syncconfig: heartbeat: cache differs from {} ({} keys cached, {} in the table){}",
        ctx_.sql->qualified_table, mine.count, r.digest->count,
        ctx_.options.sync_on_mismatch ? "; resyncing" : "; sync_on_mismatch is off");
    if (ctx_.options.sync_on_mismatch) {
      ReadResult full = load_all(*conn_, *ctx_.sql, *ctx_.cache, ReplaceMode::kResync,
                                 deadline_after(ctx_.options.load_timeout));
      ctx_.counters->resyncs.fetch_add(1);
      if (full.reset) ctx_.counters->history_resets.fetch_add(1);
      ctx_.logger->info("syncconfig: resync repaired {} keys", full.changed);
    }
    return;
  }
  ctx_.logger->debug("syncconfig: heartbeat inconclusive (local writes raced it); next time");
}

void SyncWorker::prune_history() {
  // Records older than the retention are not needed by any instance that is less far behind; one
  // further behind does a full reload instead (it sees the compaction mark). Batches of 1,000 in
  // their own short transactions (no writer lock), at most 20 per heartbeat.
  const double seconds = std::chrono::duration<double>(ctx_.options.history_retention).count();
  for (int batch = 0; batch < 20; ++batch) {
    const Deadline deadline = deadline_after(ctx_.options.db_timeout);  // Each batch its own.
    conn_->exec_script("BEGIN", deadline);
    try {
      Result r = conn_->exec(
          ctx_.sql->prune,
          {std::to_string(seconds), std::to_string(ctx_.options.history_min_versions), "1000"},
          deadline);
      const bool pruned = r.rows() == 1 && !r.is_null(0, 0);
      if (pruned) conn_->exec(ctx_.sql->record_compaction, {std::string(r.text(0, 0))}, deadline);
      conn_->exec_script("COMMIT", deadline);
      if (!pruned) return;
    } catch (const Error&) {
      if (conn_->ok()) conn_->exec_script("ROLLBACK", deadline);
      throw;
    }
  }
}

void SyncWorker::sweep_leases() {
  Deadline deadline = deadline_after(ctx_.options.db_timeout);
  if (!is_sweeper_) {
    is_sweeper_ = conn_->exec(ctx_.sql->sweeper_lock, {}, deadline).text(0, 0) == "t";
    if (!is_sweeper_) return;
    ctx_.logger->info("syncconfig: this instance sweeps the expired leases of {}",
                      ctx_.sql->qualified_table);
  }
  Result mark = conn_->exec(ctx_.sql->sweep_mark, {}, deadline);
  const double grace = std::chrono::duration<double>(ctx_.options.lease_grace).count();
  // The first sweep of a table ever has nothing to make up for.
  if (!mark.is_null(0, 0) && std::stod(std::string(mark.text(0, 0))) > grace) {
    // Nobody swept for longer than the grace: the database or every instance was down, and
    // owners could not keep their leases alive. Give every lease the grace instead of expiring
    // them all at once.
    conn_->exec(ctx_.sql->leases_grace, {std::to_string(grace)}, deadline);
  }
  conn_->exec(ctx_.sql->leases_expire, {}, deadline);
  Result keys = conn_->exec(ctx_.sql->orphan_keys, {}, deadline);
  for (int i = 0; i < keys.rows(); ++i) {
    // Guarded by the revision read with it: a key rewritten meanwhile (with a new lease, or none)
    // stays.
    const std::string comment = fmt::format("lease {} expired", keys.text(i, 2));
    conn_->exec(ctx_.sql->del,
                {keys.text(i, 0), keys.text(i, 1), "syncconfig/lease-sweeper", comment, "expire"},
                deadline);
  }
}

void SyncWorker::drain_notifications() {
  while (conn_) {
    std::optional<Notification> note = conn_->next_notification();
    if (note) {
      handle(*note);
      continue;
    }
    if (ready_.empty()) break;
    // One verifying read for every transaction that completed in this drain; its round trip may
    // buffer more notifications, which the loop then takes.
    apply_ready();
  }
}

// PostgreSQL sends a committed transaction's notifications to a listener in one go (the backend
// reads the notification queue up to its end and writes every entry of a committed transaction
// before it handles the next client message). So once a query sent after we read some of a
// transaction's notifications has been answered, all of them have arrived: the transaction is
// complete and the watermark can pass it now instead of when the next transaction starts. That
// keeps Stats::revision and the progress reported to subscribers (what /watch numbers its
// events by) current when writes stop. One round trip per batch of notifications.
bool SyncWorker::settle_open_transaction() {
  for (int round = 0; round < 3 && conn_ && group_max_revision_ > 0; ++round) {
    const int64_t txid = group_txid_;
    conn_->exec("SELECT 1", {}, deadline_after(ctx_.options.db_timeout));
    drain_notifications();
    if (conn_ && group_txid_ == txid && group_max_revision_ > 0) {
      complete_group();
      drain_notifications();  // Applies it.
    }
    // Otherwise a later transaction's notifications came in meanwhile (the previous one is
    // complete with it); settle that one too.
  }
  return conn_ && group_max_revision_ > 0;
}

void SyncWorker::run() {
  while (!stopping_.load()) {
    try {
      auto now = steady_clock::now();
      if (!conn_ && now >= next_reconnect_) try_connect();
      // The catch-up's queries may have read notifications into libpq's queue; the socket will
      // not signal them again, so apply them before sleeping.
      drain_notifications();
      const bool still_open = settle_open_transaction();

      // Sleep until a notification, a wake-up (stop, sync request), the heartbeat or the next
      // reconnect attempt.
      auto until = conn_ ? std::min(next_heartbeat_, next_sweep_)
                         : std::min(next_heartbeat_, next_reconnect_);
      auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
      pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
      if (conn_ && ctx_.options.enable_notification) fds[1].fd = conn_->socket();
      if (still_open) wait_ms = 0;
      int n = ::poll(fds, 2, static_cast<int>(std::clamp<int64_t>(wait_ms, 0, 60'000)));
      if (n < 0 && errno != EINTR) {
        ctx_.logger->error("syncconfig: poll failed: {}", std::strerror(errno));
      }
      if (stopping_.load()) break;
      if (fds[0].revents & POLLIN) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
      }
      serve_requests();
      if (conn_ && (fds[1].revents & (POLLIN | POLLERR | POLLHUP))) {
        if (!conn_->consume_input()) {
          drop_connection("the server closed it");
          continue;
        }
      }
      if (conn_ && steady_clock::now() >= next_sweep_) {
        next_sweep_ = steady_clock::now() + ctx_.options.lease_sweep_interval;
        sweep_leases();
      }
      if (steady_clock::now() >= next_heartbeat_) {
        next_heartbeat_ = steady_clock::now() + ctx_.options.heartbeat_interval;
        if (conn_ || try_connect()) {
          heartbeat();
          prune_history();
        }
      }
      // Any query above may have buffered notifications in libpq: apply them all now, or they
      // would wait for the socket's next wake-up.
      drain_notifications();
    } catch (const Error& e) {
      // Any failed query leaves the connection suspect: replace it and catch up.
      drop_connection(e.message());
    } catch (const std::exception& e) {
      ctx_.logger->error("syncconfig: unexpected error in the sync thread: {}", e.what());
      drop_connection(e.what());
    }
  }
}

}  // namespace syncconfig::internal
