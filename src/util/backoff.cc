#include "util/backoff.h"

#include <algorithm>

namespace syncconfig::internal {

Backoff::Backoff(std::chrono::milliseconds first, std::chrono::milliseconds cap)
    : first_(
          std::max<std::chrono::milliseconds>(std::min(first, cap), std::chrono::milliseconds(1))),
      cap_(std::max<std::chrono::milliseconds>(cap, std::chrono::milliseconds(1))),
      rng_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::ceiling() const {
  // first * 2^attempt without overflow: past 30 doublings every cap is reached.
  const uint32_t shift = std::min<uint32_t>(attempt_, 30);
  const auto d = first_.count() * (int64_t{1} << shift);
  return std::min(cap_, std::chrono::milliseconds(d));
}

std::chrono::milliseconds Backoff::next() {
  const std::chrono::milliseconds d = ceiling();
  if (attempt_ < 64) ++attempt_;
  std::uniform_int_distribution<int64_t> upper_half(d.count() - d.count() / 2, d.count());
  return std::chrono::milliseconds(upper_half(rng_));
}

}  // namespace syncconfig::internal
