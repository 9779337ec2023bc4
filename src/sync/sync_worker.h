// SyncWorker: the store's background thread and its connection. It listens for notifications
// and applies them, reconnects after a lost connection (catching up on what it missed), runs the
// heartbeat that compares the cache with the table, and serves sync() requests.
//
// Owns its thread: stop() (also run by the destructor) sets the stop flag, wakes the thread
// through an eventfd and joins it. Errors in the thread are logged, never thrown out of it.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cache/cache.h"
#include "db/connection.h"
#include "db/table_sql.h"
#include "sync/counters.h"
#include "sync/payload.h"
#include "sync/payload_signature.h"
#include "syncconfig/options.h"
#include "util/backoff.h"
#include "util/mutex.h"

namespace syncconfig::internal {

struct SyncContext {
  std::string dsn;
  Options options;
  const TableSql* sql;
  Cache* cache;
  Counters* counters;
  std::shared_ptr<spdlog::logger> logger;
  // Whether a backend pid is one of this store's own write connections (its notifications are
  // then reported with ChangeOrigin::kLocal). May be empty.
  std::function<bool(int)> is_own_backend;
  // Run on every new listener connection before its catch-up (the store opened from its snapshot
  // file creates the table's objects there if missing). May be empty.
  std::function<void(Connection&, Deadline)> on_connect;
};

// Opens the worker's connection and, with notifications enabled, LISTENs on the channel (before
// any read, so nothing committed afterwards can be missed). See Connection for interrupt_fd.
std::unique_ptr<Connection> open_listener(const SyncContext& ctx, Deadline deadline,
                                          int interrupt_fd = -1);

class SyncWorker {
 public:
  // `conn` comes from open_listener, and the cache has been loaded through it. Its database
  // calls cannot be interrupted by stop(); the worker's later connections can.
  SyncWorker(SyncContext ctx, std::unique_ptr<Connection> conn);
  ~SyncWorker();
  SyncWorker(const SyncWorker&) = delete;
  SyncWorker& operator=(const SyncWorker&) = delete;

  // Full reload on the worker thread; waits for it. Throws kUnavailable/kTimeout/kShutdown.
  void request_sync();
  // Idempotent; returns once the thread has exited.
  void stop();

 private:
  void run();
  void wake();
  bool try_connect();  // Connects and catches up; false (logged) on failure.
  void drop_connection(const std::string& why);
  void handle(const Notification& n);
  void drain_notifications();  // Applies what libpq has already read.
  // Completes the transaction whose notifications were read last (see the .cc). Returns whether
  // one is still open (the loop then comes back without sleeping).
  bool settle_open_transaction();
  void heartbeat();
  void prune_history();
  // The lease sweeper: one instance at a time (a session advisory lock on the listener
  // connection) deletes the keys of expired leases.
  void sweep_leases();
  bool is_sweeper_ = false;
  std::chrono::steady_clock::time_point next_sweep_;
  void serve_requests();

  SyncContext ctx_;
  std::unique_ptr<Connection> conn_;
  int wake_fd_ = -1;  // Written to wake the loop (sync request, stop).
  int stop_fd_ = -1;  // Written once by stop(): also interrupts a database call in progress.
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;

  Mutex requests_mu_;
  struct SyncOutcome {
    std::optional<ErrorCode> failure;  // Empty: success.
    std::string message;
  };
  std::deque<std::shared_ptr<std::promise<SyncOutcome>>> requests_ SC_GUARDED_BY(requests_mu_);

  // Notification grouping: one transaction's notifications arrive together, and are applied to
  // the cache together, as one unit, once the transaction is complete: at its "e" mark (the
  // library's writes), when the next transaction starts, or when a round trip on the connection
  // shows that no more of its notifications can follow (docs/protocol.md). Then the watermark
  // moves past it. An open group has group_max_revision_ > 0.
  //
  // A payload is a claim, not the data: any session may NOTIFY the channel. A complete group
  // waits in ready_ until the drain ends; then apply_ready() applies each group: a notification
  // signed with the table's key (sync/payload_signature.h) as it is, every other one from the
  // change log's record at its revision, read for all of them in one query. A notification
  // whose revision has no record, or another key or operation there, is dropped as forged
  // (Stats::notifications_forged), and only verified revisions move the watermark.
  struct Pending {
    Notice notice;
    ChangeOrigin origin = ChangeOrigin::kRemote;
  };
  // Moves the open group to ready_.
  void complete_group();
  // Verifies and applies the ready groups, each as one unit, in order.
  void apply_ready();
  int64_t group_txid_ = -1;
  int64_t group_max_revision_ = 0;
  std::vector<Pending> group_;
  std::vector<std::vector<Pending>> ready_;
  uint64_t forged_logged_ = 0;
  // The table's payload key, read once per connection (std::nullopt: none, or not readable by
  // this role: every payload is then verified by a read). key_loaded_ is reset on reconnect.
  void load_key();
  std::optional<PayloadKey> key_;
  bool key_loaded_ = false;
  std::chrono::steady_clock::time_point key_checked_at_;
  bool key_denied_logged_ = false;

  std::chrono::steady_clock::time_point next_heartbeat_;
  std::chrono::steady_clock::time_point next_reconnect_;
  bool ever_lost_ = false;
  uint64_t failed_attempts_ = 0;
  // From 100 ms, doubling, capped at options.reconnect_interval, jittered (util/backoff.h).
  Backoff reconnect_backoff_;
  uint64_t malformed_logged_ = 0;

  std::thread thread_;
};

}  // namespace syncconfig::internal
