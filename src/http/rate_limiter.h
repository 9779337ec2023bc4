// RateLimiter: token buckets per client (a named token, or an address), for
// HttpOptions::rate_limit. Each client may make `rate` requests per second on average and
// `burst` at once; a bucket refills continuously. Buckets of clients that went quiet are
// dropped once more than kMaxClients are held (a full bucket is the same as none), so a flood
// of addresses cannot grow it without bound.
//
// Safe for concurrent access from multiple threads without external synchronization.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "util/mutex.h"

namespace syncconfig::service::detail {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kMaxClients = 100000;

  // `rate` > 0 requests per second, `burst` >= 1 requests.
  RateLimiter(double rate, double burst);

  // Takes one request of `client` at `now`: true if it may go on; false if its bucket is empty,
  // with `*retry_after` (if not null) set to how long until one request is allowed again.
  bool admit(std::string_view client, Clock::time_point now,
             std::chrono::milliseconds* retry_after = nullptr);

  std::size_t clients() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point at;
  };
  void evict_full(Clock::time_point now) SC_REQUIRES(mu_);

  const double rate_;
  const double burst_;
  mutable internal::Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ SC_GUARDED_BY(mu_);
};

}  // namespace syncconfig::service::detail
