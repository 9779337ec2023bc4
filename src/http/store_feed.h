// StoreFeed: what the HTTP server keeps per served store for /watch, fed by one subscription.
//
// Events are numbered by database revision, so a client can resume on any server of the table.
// A store delivers changes per key in commit order, but across keys its own writes can come
// before older commits of other instances. So the feed holds changes back until the store
// reports progress past them (Store::subscribe with a ProgressCallback: every change at or
// below that revision has been delivered), then releases them in revision order into a history
// bounded by count and bytes. Streams read that history by cursor ("everything after revision
// R"), so replaying and delivering live are one mechanism: a stream can neither miss nor repeat
// a change, and every id it sends is a point it can resume from.
//
// A cursor older than the history is served from the table (backfill: Store::changes_since,
// merged into the front of the history, so a herd of clients resuming after a restart costs one
// read). Where the table cannot say exactly what changed (pruned deletions, a TRUNCATE, a
// revision this table never had, the table recreated, a heartbeat that repaired a change the
// notifications missed), streams get a reset: the current snapshot, then changes after it.
//
// Threads: on_change/on_progress run on the store's dispatcher thread and never wait for a
// stream; waiters they wake must only post work elsewhere. backfill() does database I/O and runs
// on the server's blocking pool. Everything else is quick, under one mutex. StoreFeed is safe for
// concurrent access from multiple threads without external synchronization.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/request.h"
#include "syncconfig/store.h"
#include "util/mutex.h"

namespace syncconfig::service::detail {

// One change as /watch sends it.
struct WatchEvent {
  int64_t revision = 0;
  std::string key;
  // The SSE event ("id: R\nevent: change\ndata: {...}\n\n") framed as one chunk of a chunked
  // response body, so that every stream writes these very bytes, several back to back.
  std::string chunk;
  // Bytes of history up to and including this event (for a stream's lag in bytes).
  int64_t offset = 0;
  uint32_t fingerprint = 0;  // change_fingerprint() of the change: its event id's anchor.
};
using WatchEventPtr = std::shared_ptr<const WatchEvent>;

// The SSE text of an event: "id: <id>\nevent: <type>\ndata: <data>\n\n".
std::string sse_event(std::string_view id, std::string_view type, std::string_view data);
// `payload` as one chunk of a chunked body: "<hex size>\r\n<payload>\r\n".
std::string chunk(std::string_view payload);

// Prometheus histogram of notification lag in seconds. Thread-safe.
class LagHistogram {
 public:
  static constexpr std::array<double, 13> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

  struct Snapshot {
    std::array<uint64_t, kBounds.size()> cumulative{};  // Observations <= kBounds[i].
    uint64_t count = 0;
    double sum = 0;
  };

  void observe(double seconds);
  Snapshot snapshot() const;

 private:
  mutable internal::Mutex mu_;
  std::array<uint64_t, kBounds.size()> buckets_ SC_GUARDED_BY(mu_){};  // Not cumulative.
  uint64_t count_ SC_GUARDED_BY(mu_) = 0;
  double sum_ SC_GUARDED_BY(mu_) = 0;
};

class StoreFeed {
 public:
  // History keeps at most `max_events` changes and `max_bytes` bytes of event text.
  StoreFeed(std::string name, Config* store, std::size_t max_events, std::size_t max_bytes);
  ~StoreFeed();
  StoreFeed(const StoreFeed&) = delete;
  StoreFeed& operator=(const StoreFeed&) = delete;

  const std::string& name() const { return name_; }
  Config& store() const { return *store_; }

  // Subscribes to the store / unsubscribes (idempotent). Not concurrently with each other.
  void attach();
  void detach();

  // The subscription's callbacks (public for tests).
  void on_change(const Change& change);
  void on_progress(const Progress& progress);

  // Something parked until there is something to read: its wake() is called once, on the
  // dispatcher thread (or wherever close() runs), and must only post work elsewhere.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    virtual void wake() = 0;
  };
  using Waker = std::shared_ptr<Waiter>;

  struct Read {
    enum class Status {
      kOk,        // `events` (maybe none) and `cursor`; with none, `waker` was parked.
      kNotReady,  // The feed has no position yet (just attached); `waker` was parked.
      kBehind,    // The cursor is older than the history: backfill(), or close a slow stream.
      kReset,     // The history this stream follows was replaced: send a reset.
      kClosed,    // close() was called.
    };
    Status status = Status::kOk;
    int64_t cursor = 0;     // The new cursor: everything up to it was read.
    int64_t lag_bytes = 0;  // Bytes of history after the new cursor.
    // kReset: the store's history itself started over since `generation` (Cache progress with
    // reset), not only a repair: revisions from before name nothing now.
    bool history_reset = false;
  };
  // Reads the changes after `cursor` in history generation `generation`, at most about
  // `max_bytes` of them (at least one), into `events` (cleared first; a caller reuses it). When
  // there is nothing to read and `waker` is not null, it is woken once (on the dispatcher
  // thread, or where close() runs) as soon as there is.
  Read read(int64_t cursor, uint64_t generation, std::size_t max_bytes, Waker waker,
            std::vector<WatchEventPtr>& events);

  struct Start {
    int64_t position = 0;     // Complete to here.
    uint64_t generation = 0;  // Of the history.
    bool ready = false;       // False: no position yet; `waker` was parked.
  };
  // Where a new stream starts; parks `waker` until the feed is ready when it is not.
  Start start(Waker waker);

  // Makes the history reach back to `since` from the table. Blocks on the database.
  struct Backfill {
    // The table cannot say what changed after `since`: the stream must be reset, for this reason.
    std::optional<std::string> reset;
    // When the changes are more than the history holds, they are handed to this stream alone:
    // send them, then read on after `cursor`. Empty when the history now reaches back.
    std::vector<WatchEventPtr> direct;
    int64_t cursor = 0;
  };
  Backfill backfill(int64_t since);

  // The state a reset sends: the store's settings under `prefix` and the feed position the
  // stream continues after (the settings hold at least every change up to it).
  struct ResetPoint {
    int64_t position = 0;
    uint64_t generation = 0;
    std::map<std::string, nlohmann::json> settings;
    // At least the highest revision the settings can hold (they may hold changes after
    // `position`): sent as "newest", so that a relay starts its own history above it.
    int64_t newest = 0;
  };
  ResetPoint reset_point(std::string_view prefix) const;

  // The position (0 before the feed is ready).
  int64_t position() const;

  // The anchor of an event id at `revision` (a position a stream reached): the newest change at
  // or below it that this feed released, if it still knows one.
  std::optional<ResumeAnchor> anchor_at(int64_t revision) const;
  // Checks a resuming client's anchor against the history in memory: the change released at
  // its revision has the same fingerprint (kMatch) or not (kMismatch: the client followed
  // another history), or the history does not hold that revision (kUnknown: ask the table).
  enum class AnchorCheck { kMatch, kMismatch, kUnknown };
  AnchorCheck check_anchor(const ResumeAnchor& anchor) const;
  // Checks it against the change log (Config::history, one indexed read; blocks on the
  // database): std::nullopt when the log's record at the anchor's revision is that change, else
  // why not (no record there: lost in a failover, a recreated table, or pruned; another change).
  // Throws what Config::history throws.
  std::optional<std::string> verify_anchor(const ResumeAnchor& anchor) const;
  // check_anchor(), then verify_anchor() when memory cannot tell (blocks on the database then):
  // std::nullopt when the anchor holds, else why not.
  std::optional<std::string> anchor_problem(const ResumeAnchor& anchor) const;
  // Why an anchor check_anchor() found kMismatch does not hold.
  static std::string mismatch_reason(const ResumeAnchor& anchor);

  // Ends every stream: read() answers kClosed, parked wakers are called. Idempotent.
  void close();

  const LagHistogram& lag() const { return lag_; }

  // For /metrics. Streams are counted by the server.
  std::atomic<std::size_t> open_streams{0};
  std::atomic<uint64_t> streams_dropped_slow{0};
  std::atomic<uint64_t> resets_sent{0};
  std::atomic<uint64_t> backfills{0};

 private:
  // The parked wakers, taken to be called once mu_ is released (wake_all): a waker may run a
  // stream's code.
  std::vector<Waker> take_wakers() SC_REQUIRES(mu_) { return std::exchange(wakers_, {}); }
  static void wake_all(std::vector<Waker>& wakers);
  // `same_history`: the store repaired its cache but its revisions still name the same changes
  // (the newest anchor stays valid).
  void reset_history(int64_t position, bool same_history) SC_REQUIRES(mu_);
  void trim() SC_REQUIRES(mu_);
  WatchEventPtr make_event(const Change& change) const;

  const std::string name_;
  Config* const store_;
  const std::size_t max_events_;
  const std::size_t max_bytes_;
  std::optional<SubscriptionId> subscription_;
  LagHistogram lag_;
  std::mutex backfill_mu_;  // One table read at a time: later callers find it done.

  mutable internal::Mutex mu_;
  bool ready_ SC_GUARDED_BY(mu_) = false;
  // Before ready: changes at or below it predate the feed (unknown until attach() reads it).
  int64_t start_revision_ SC_GUARDED_BY(mu_) = INT64_MAX;
  // Every change up to here was released (or predates history).
  int64_t position_ SC_GUARDED_BY(mu_) = 0;
  // The history holds every change in (history_start_, position_].
  int64_t history_start_ SC_GUARDED_BY(mu_) = 0;
  uint64_t generation_ SC_GUARDED_BY(mu_) = 0;
  // generation_ as of the last history reset.
  uint64_t history_generation_ SC_GUARDED_BY(mu_) = 0;
  // A repair changed a key below the position: reset at progress.
  bool reset_pending_ SC_GUARDED_BY(mu_) = false;
  bool closed_ SC_GUARDED_BY(mu_) = false;
  std::vector<Change> pending_ SC_GUARDED_BY(mu_);  // Changes above position_, not yet released.
  std::deque<WatchEventPtr> history_ SC_GUARDED_BY(mu_);  // In revision order.
  // The newest change released below the history (trimmed, or before a reset that was not a
  // history reset): anchors ids at positions the history no longer reaches.
  std::optional<ResumeAnchor> floor_anchor_ SC_GUARDED_BY(mu_);
  std::size_t history_bytes_ SC_GUARDED_BY(mu_) = 0;
  std::vector<Waker> wakers_ SC_GUARDED_BY(mu_);
};

}  // namespace syncconfig::service::detail
