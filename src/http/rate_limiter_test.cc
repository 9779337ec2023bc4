// RateLimiter (src/http/rate_limiter.h) on a clock the test moves.
#include "http/rate_limiter.h"

#include <gtest/gtest.h>

#include <string>

namespace syncconfig::service::detail {
namespace {

using namespace std::chrono_literals;

TEST(RateLimiter, a_client_gets_its_burst_then_its_rate_and_is_told_when_to_retry) {
  RateLimiter limiter(10, 5);  // 10 per second, 5 at once.
  const auto t0 = RateLimiter::Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.admit("a", t0)) << i;
  std::chrono::milliseconds wait{0};
  EXPECT_FALSE(limiter.admit("a", t0, &wait));
  EXPECT_EQ(wait, 100ms);  // One request refills in 1/10 s.
  EXPECT_FALSE(limiter.admit("a", t0 + 90ms));
  EXPECT_TRUE(limiter.admit("a", t0 + 101ms));
  EXPECT_FALSE(limiter.admit("a", t0 + 101ms));
  // A long pause refills the bucket only up to the burst.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.admit("a", t0 + 1h)) << i;
  EXPECT_FALSE(limiter.admit("a", t0 + 1h));
}

TEST(RateLimiter, clients_have_buckets_of_their_own) {
  RateLimiter limiter(1, 1);
  const auto t0 = RateLimiter::Clock::time_point{} + 1h;
  EXPECT_TRUE(limiter.admit("a", t0));
  EXPECT_FALSE(limiter.admit("a", t0));
  EXPECT_TRUE(limiter.admit("b", t0));
  EXPECT_EQ(limiter.clients(), 2u);
}

TEST(RateLimiter, a_flood_of_clients_does_not_grow_it_past_its_bound) {
  RateLimiter limiter(1000, 1);
  auto t = RateLimiter::Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < RateLimiter::kMaxClients + 10; ++i) {
    t += 1ms;  // Each earlier bucket is full again by the time the table is full.
    ASSERT_TRUE(limiter.admit("client" + std::to_string(i), t));
  }
  EXPECT_LT(limiter.clients(), RateLimiter::kMaxClients);
  // A client still limited is kept: its state is not lost by the eviction.
  EXPECT_FALSE(limiter.admit("client" + std::to_string(RateLimiter::kMaxClients + 9), t));
}

}  // namespace
}  // namespace syncconfig::service::detail
