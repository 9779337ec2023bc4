// Backoff: the delays between reconnection attempts. The first retry comes after `first`, each
// later one after twice the previous, capped at `cap`; every delay is drawn uniformly from its
// upper half ([d/2, d]) so that a fleet that lost the same server does not reconnect in lockstep.
// A failover that takes 0.2 s then costs about that long, not a whole `cap`.
//
// Not thread safe: one owner (a worker thread) uses it.
#pragma once
#include <chrono>
#include <cstdint>
#include <random>

namespace syncconfig::internal {

class Backoff {
 public:
  // `first` and `cap` must be positive; a `first` above `cap` is taken as `cap`.
  Backoff(std::chrono::milliseconds first, std::chrono::milliseconds cap);

  // The delay before the next attempt (advances the sequence).
  std::chrono::milliseconds next();
  // After a success: the next failure starts again from `first`.
  void reset() { attempt_ = 0; }
  // The undrawn ceiling of the next delay (for log messages).
  std::chrono::milliseconds ceiling() const;

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds cap_;
  uint32_t attempt_ = 0;
  std::minstd_rand rng_;
};

}  // namespace syncconfig::internal
