// StoreFeed: what the HTTP server keeps per served store, fed by one store subscription.
//
//  - the change history for /watch: every change gets a sequence number (in delivery order, per
//    store) and the last ones are kept in a ring buffer bounded by count and bytes. Streams read
//    it by cursor ("everything after seq N"), so replaying and delivering live are one mechanism
//    under one mutex: a resumed stream can neither miss nor repeat a change.
//  - the notification lag histogram (now - Change::written_at) for /metrics.
//
// The subscription callback runs on the store's dispatcher thread: it only formats the event,
// appends it under the mutex and notifies; it never waits for a stream.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "syncconfig/store.h"

namespace syncconfig::service::detail {

// One change as /watch sends it.
struct WatchEvent {
  uint64_t seq = 0;
  std::string key;
  std::string data;  // JSON text of the `data:` line: {"key","value","deleted","revision"}.
};

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
  mutable std::mutex mu_;
  std::array<uint64_t, kBounds.size()> buckets_{};  // Not cumulative.
  uint64_t count_ = 0;
  double sum_ = 0;
};

class StoreFeed {
 public:
  // `first_seq`: the sequence number before the first change (the first change gets
  // first_seq + 1). History keeps at most `max_events` changes and `max_bytes` bytes.
  StoreFeed(std::string name, Store* store, std::size_t max_events, std::size_t max_bytes,
            uint64_t first_seq);
  ~StoreFeed();
  StoreFeed(const StoreFeed&) = delete;
  StoreFeed& operator=(const StoreFeed&) = delete;

  const std::string& name() const { return name_; }
  Store& store() const { return *store_; }

  // Subscribes to the store / unsubscribes (idempotent). Not concurrently with each other.
  void attach();
  void detach();

  // Records a change (the subscription callback; public for tests).
  void on_change(const Change& change);

  // The sequence number of the newest change (first_seq before any).
  uint64_t current_seq() const;

  struct Batch {
    bool closed = false;  // close() was called: the stream must end.
    bool lost = false;    // Changes after the cursor are no longer (or were never) in history.
    std::vector<std::shared_ptr<const WatchEvent>> events;  // In seq order, all after cursor.
  };
  // Waits until there is a change after `cursor`, close() was called or `deadline` passes, then
  // returns the changes after `cursor` (possibly none, at the deadline).
  Batch wait_after(uint64_t cursor, std::chrono::steady_clock::time_point deadline) const;

  // Ends every wait_after, now and later. Called by HttpServer::stop().
  void close();

  const LagHistogram& lag() const { return lag_; }

  // Streams open on this store, for /metrics. Maintained by the server.
  std::size_t open_streams() const;
  void stream_opened();
  void stream_closed();

 private:
  const std::string name_;
  Store* const store_;
  const std::size_t max_events_;
  const std::size_t max_bytes_;
  std::optional<SubscriptionId> subscription_;
  LagHistogram lag_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t last_seq_;                                   // Guarded by mu_.
  std::deque<std::shared_ptr<const WatchEvent>> ring_;  // Guarded by mu_; seqs contiguous.
  std::size_t ring_bytes_ = 0;                          // Guarded by mu_.
  bool closed_ = false;                                 // Guarded by mu_.
  std::size_t open_streams_ = 0;                        // Guarded by mu_.
};

}  // namespace syncconfig::service::detail
