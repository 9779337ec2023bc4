// Rate limits changed live: per-endpoint limits under `rate_limit:<endpoint>` (requests per
// window) are read on every request with get_int and a default, straight from the in-memory
// cache. Instance A (the operator) changes them; the request loops on instances B and C admit more
// or fewer requests per window as soon as the change arrives, with no restart and no polling.
//
// The "windows" are simulated: each window offers a fixed number of requests and counts the
// decisions, so the outcome is deterministic (no wall-clock timing involved).
//
// Usage: rate_limiter [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is started
// in a temporary directory. Exits 1 if the admitted counts are not the expected ones.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "example_support.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

using namespace std::chrono_literals;

using namespace example;

namespace {

constexpr int64_t kDefaultLimit = 10;  // Requests per window for an endpoint with no setting.
constexpr int kOfferedPerWindow = 100;

// A fixed-window limiter. The limit is looked up on every request: Store::get_int is a hash
// lookup under a shared lock, cheap enough for the hot path, so a new limit applies from the very
// next request after it arrives.
class RateLimiter {
 public:
  explicit RateLimiter(const syncconfig::Store& config) : config_(config) {}

  bool admit(const std::string& endpoint) {
    int64_t limit = config_.get_int("rate_limit:" + endpoint, kDefaultLimit);
    int64_t& used = used_in_window_[endpoint];
    if (used >= limit) return false;
    ++used;
    return true;
  }
  void next_window() { used_in_window_.clear(); }

 private:
  const syncconfig::Store& config_;
  std::map<std::string, int64_t> used_in_window_;
};

// One window of traffic: kOfferedPerWindow requests to `endpoint`; how many were admitted.
int run_window(RateLimiter& limiter, const std::string& endpoint) {
  limiter.next_window();
  int admitted = 0;
  for (int i = 0; i < kOfferedPerWindow; ++i) admitted += limiter.admit(endpoint) ? 1 : 0;
  return admitted;
}

}  // namespace

int main(int argc, char** argv) try {
  spdlog::set_level(spdlog::level::warn);
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  std::string dsn = dsn_for(argc, argv, embedded);

  syncconfig::Options options;
  options.table_name = "example_rate_limits";
  options.channel = "example_rate_limits_changes";
  auto a = syncconfig::Store::open(dsn, options);  // the operator's instance
  auto b = syncconfig::Store::open(dsn, options);  // two API servers
  auto c = syncconfig::Store::open(dsn, options);
  for (const auto& [key, value] : a->get_all("rate_limit:")) a->remove(key);  // a clean slate
  if (!wait_for(
          [&] { return b->get_all("rate_limit:").empty() && c->get_all("rate_limit:").empty(); })) {
    std::cout << "FAILED: the servers did not catch up with the reset\n";
    return 1;
  }

  RateLimiter on_b(*b);
  RateLimiter on_c(*c);
  const std::string search = "/api/search";
  const std::string login = "/api/login";
  auto expect_window = [&](int want, const std::string& endpoint, const std::string& why) {
    int got_b = run_window(on_b, endpoint);
    int got_c = run_window(on_c, endpoint);
    std::cout << "  window on " << endpoint << ": B admitted " << got_b << "/" << kOfferedPerWindow
              << ", C admitted " << got_c << "/" << kOfferedPerWindow << "\n";
    check(got_b == want && got_c == want,
          why + ": both servers admit " + std::to_string(want) + " per window");
  };
  // Waits until both servers read `want` as the limit of `endpoint`.
  auto arrives = [&](const std::string& endpoint, int64_t want) {
    return wait_for([&] {
      return b->get_int("rate_limit:" + endpoint, kDefaultLimit) == want &&
             c->get_int("rate_limit:" + endpoint, kDefaultLimit) == want;
    });
  };

  std::cout << "No limits configured yet\n";
  expect_window(10, search, "the default limit");

  std::cout << "A raises rate_limit:" << search << " to 25\n";
  a->set("rate_limit:" + search, 25);
  check(arrives(search, 25), "the new limit reached B and C");
  expect_window(25, search, "the raised limit");
  expect_window(10, login, "another endpoint keeps the default");

  std::cout << "A throttles " << search << " to 3 and sets " << login << " to 40\n";
  a->set("rate_limit:" + search, 3);
  a->set("rate_limit:" + login, 40);
  check(arrives(search, 3) && arrives(login, 40), "both limits reached B and C");
  expect_window(3, search, "the throttled limit");
  expect_window(40, login, "the login limit");

  std::cout << "A sets a limit above the traffic: 1000 (written as the string \"1000\")\n";
  a->set("rate_limit:" + search, "1000");  // get_int accepts a string holding an integer.
  check(arrives(search, 1000), "the limit reached B and C");
  expect_window(kOfferedPerWindow, search, "nothing rejected");

  std::cout << "A writes a malformed limit (\"lots\"), then removes the login limit\n";
  a->set("rate_limit:" + search, "lots");
  a->remove("rate_limit:" + login);
  check(wait_for([&] {
          return b->get("rate_limit:" + search) == nlohmann::json("lots") &&
                 c->get("rate_limit:" + search) == nlohmann::json("lots");
        }),
        "the malformed value reached B and C");
  expect_window(10, search, "a value that is not an integer falls back to the default");
  check(arrives(login, kDefaultLimit), "the removal reached B and C");
  expect_window(10, login, "a removed limit falls back to the default");

  if (failures > 0) {
    std::cout << "FAILED: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "The servers' admitted counts followed A's live changes.\n";
  return 0;
} catch (const std::exception& e) {
  std::cout << "FAILED: " << e.what() << "\n";
  return 1;
}
