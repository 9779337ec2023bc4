#include "cache/read_mostly_mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

namespace syncconfig::internal {
namespace {

// Writers keep two counters equal only outside their critical section; a reader must never see
// them differ, and no increment may be lost.
TEST(ReadMostlyMutex, readers_never_see_a_half_done_write) {
  ReadMostlyMutex mu;
  long a = 0, b = 0;
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0}, reads{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        std::shared_lock lock(mu);
        if (a != b) torn.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  constexpr int kWrites = 20000;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kWrites; ++i) {
        std::unique_lock lock(mu);
        ++a;
        ++b;
      }
    });
  }
  for (std::size_t i = 3; i < threads.size(); ++i) threads[i].join();
  stop.store(true);
  for (int i = 0; i < 3; ++i) threads[i].join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(a, 2 * kWrites);
  EXPECT_EQ(b, 2 * kWrites);
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace syncconfig::internal
