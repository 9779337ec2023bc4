#include "util/backoff.h"

#include <gtest/gtest.h>

#include <set>

namespace syncconfig::internal {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, delays_double_from_the_first_and_stop_at_the_cap) {
  Backoff b(milliseconds(100), milliseconds(1000));
  const int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t c : ceilings) {
    EXPECT_EQ(b.ceiling().count(), c);
    const milliseconds d = b.next();
    EXPECT_GE(d.count(), c - c / 2) << "ceiling " << c;
    EXPECT_LE(d.count(), c) << "ceiling " << c;
  }
}

TEST(Backoff, reset_starts_again_from_the_first_delay) {
  Backoff b(milliseconds(100), milliseconds(10000));
  for (int i = 0; i < 5; ++i) b.next();
  b.reset();
  EXPECT_EQ(b.ceiling().count(), 100);
  EXPECT_LE(b.next().count(), 100);
}

TEST(Backoff, delays_are_jittered_so_a_fleet_does_not_retry_in_lockstep) {
  // Twenty instances that lost the server at the same moment: their first retries spread.
  std::set<int64_t> first_delays;
  for (int i = 0; i < 20; ++i)
    first_delays.insert(Backoff(milliseconds(100), milliseconds(1000)).next().count());
  EXPECT_GT(first_delays.size(), 5u);
}

TEST(Backoff, a_first_delay_above_the_cap_is_the_cap_and_many_failures_do_not_overflow) {
  Backoff b(milliseconds(5000), milliseconds(300));
  EXPECT_EQ(b.ceiling().count(), 300);
  for (int i = 0; i < 200; ++i) EXPECT_LE(b.next().count(), 300);
}

}  // namespace
}  // namespace syncconfig::internal
