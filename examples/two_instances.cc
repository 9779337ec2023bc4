// Two instances of an application share one configuration table. A write on one reaches the
// other's cache and callbacks within milliseconds; a change made with plain SQL reaches both.
//
// Usage: two_instances [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is
// started in a temporary directory. Exits non-zero if the instances do not end in sync.
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Waits for B's callback to report `key`, returning how long it took.
class Arrivals {
 public:
  void on_change(const syncconfig::Change& c) {
    std::lock_guard lock(mu_);
    last_key_ = c.key;
    cv_.notify_all();
  }
  std::optional<std::chrono::microseconds> wait_for(const std::string& key, Clock::time_point t0) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 5s, [&] { return last_key_ == key; })) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string last_key_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dsn =
      argc > 1 ? argv[1] : (std::getenv("SYNCCONFIG_DSN") ? std::getenv("SYNCCONFIG_DSN") : "");
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  if (dsn.empty()) {
    std::cout << "No DSN given: starting an embedded PostgreSQL...\n";
    embedded.emplace();
    embedded->start();
    dsn = embedded->dsn();
  }

  syncconfig::Options options;
  options.table_name = "example_config";
  auto a = syncconfig::Store::open(dsn, options);
  auto b = syncconfig::Store::open(dsn, options);
  std::cout << "Two instances opened on table " << options.table_name << " (" << a->size()
            << " keys)\n";

  Arrivals arrivals;
  b->subscribe([&](const syncconfig::Change& c) {
    // One write per line (the main thread prints meanwhile).
    std::cout << ("  [B callback] " + c.key + " = " +
                  (c.value ? c.value->dump() : std::string("<deleted>")) + "  (revision " +
                  std::to_string(c.revision) + ")\n");
    arrivals.on_change(c);
  });

  bool ok = true;
  auto write_and_time = [&](const std::string& key, const nlohmann::json& value) {
    auto t0 = Clock::now();
    a->set(key, value);
    auto took = arrivals.wait_for(key, t0);
    if (!took) {
      std::cout << "  " << key << " did not reach B!\n";
      ok = false;
      return;
    }
    std::cout << "A set " << key << " -> B had it after " << took->count() << " us\n";
  };
  write_and_time("feature:new_ui", true);
  write_and_time("rate_limit:/api/search", 100);
  write_and_time("app_name", "MyApp");

  std::cout << "B reads: feature:new_ui=" << b->get_bool("feature:new_ui", false)
            << " rate_limit:/api/search=" << b->get_int("rate_limit:/api/search", 0)
            << " app_name=" << b->get_string("app_name", "?") << "\n";

  // A change made outside the library, as an operator would in psql.
  PGconn* psql = PQconnectdb(dsn.c_str());
  auto t0 = Clock::now();
  PGresult* r = PQexec(psql,
                       "UPDATE example_config SET value = '250' "
                       "WHERE key = 'rate_limit:/api/search'");
  PQclear(r);
  PQfinish(psql);
  if (auto took = arrivals.wait_for("rate_limit:/api/search", t0)) {
    std::cout << "psql UPDATE -> B had it after " << took->count() << " us\n";
  } else {
    ok = false;
  }

  a->remove("app_name");
  if (!arrivals.wait_for("app_name", Clock::now())) ok = false;

  ok = ok && b->get_int("rate_limit:/api/search", 0) == 250 && !b->contains("app_name");
  // A learns of the psql UPDATE through its own listener, independently of B: give it the same
  // few milliseconds before comparing the checksums.
  auto deadline = Clock::now() + 5s;
  while (a->get_crc() != b->get_crc() && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  std::cout << "CRC A=" << a->get_crc() << " B=" << b->get_crc() << "\n";
  ok = ok && a->get_crc() == b->get_crc();
  std::cout << (ok ? "The instances are in sync.\n" : "FAILED: the instances differ.\n");
  return ok ? 0 : 1;
}
