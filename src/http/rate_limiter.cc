#include "http/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace syncconfig::service::detail {

RateLimiter::RateLimiter(double rate, double burst) : rate_(rate), burst_(std::max(1.0, burst)) {}

bool RateLimiter::admit(std::string_view client, Clock::time_point now,
                        std::chrono::milliseconds* retry_after) {
  internal::MutexLock lock(mu_);
  auto it = buckets_.find(std::string(client));
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxClients) evict_full(now);
    it = buckets_.emplace(std::string(client), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  const std::chrono::duration<double> elapsed = now - b.at;
  if (elapsed.count() > 0) {
    b.tokens = std::min(burst_, b.tokens + elapsed.count() * rate_);
    b.at = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  if (retry_after) {
    *retry_after =
        std::chrono::milliseconds(static_cast<int64_t>(std::ceil((1 - b.tokens) / rate_ * 1000)));
  }
  return false;
}

std::size_t RateLimiter::clients() const {
  internal::MutexLock lock(mu_);
  return buckets_.size();
}

void RateLimiter::evict_full(Clock::time_point now) {
  std::erase_if(buckets_, [&](const auto& entry) {
    const std::chrono::duration<double> elapsed = now - entry.second.at;
    return entry.second.tokens + elapsed.count() * rate_ >= burst_;
  });
}

}  // namespace syncconfig::service::detail
