// Counters shared by the store's parts; read into syncconfig::Stats.
#pragma once

#include <atomic>
#include <cstdint>

namespace syncconfig::internal {

struct Counters {
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> deletes{0};
  std::atomic<uint64_t> notifications_applied{0};
  std::atomic<uint64_t> notifications_ignored{0};
  std::atomic<uint64_t> notifications_forged{0};
  std::atomic<uint64_t> notifications_signed{0};
  std::atomic<uint64_t> resyncs{0};
  std::atomic<uint64_t> catch_ups{0};
  std::atomic<uint64_t> crc_mismatches{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> history_resets{0};
  std::atomic<uint64_t> callback_errors{0};
  // The dispatcher's queue (Dispatcher keeps them, under its mutex): now and at its highest.
  std::atomic<uint64_t> callback_queue_depth{0};
  std::atomic<uint64_t> callback_queue_peak{0};
  std::atomic<bool> connected{false};
  // Opened from the snapshot file and not caught up with the source since.
  std::atomic<bool> stale{false};
  std::atomic<int64_t> stale_as_of_us{0};  // When that file was written (microseconds, Unix).
};

}  // namespace syncconfig::internal
