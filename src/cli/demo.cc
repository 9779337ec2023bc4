// `syncconfig demo`: three instances on one table of an embedded PostgreSQL. Shows a write
// reaching the others through NOTIFY, then a change that sent no notification at all being
// repaired by each instance's heartbeat.
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

namespace syncconfig::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

constexpr int kInstances = 3;
constexpr auto kDeadline = std::chrono::seconds(15);

int64_t micros(Clock::duration d) { return std::chrono::duration_cast<microseconds>(d).count(); }

// When each instance's callback first saw `key` take `value`.
class Arrivals {
 public:
  Arrivals(std::string key, nlohmann::json value)
      : key_(std::move(key)), value_(std::move(value)) {}

  Callback callback(int instance) {
    return [this, instance](const Change& c) {
      if (c.key != key_ || c.value != value_) return;
      std::lock_guard lock(mu_);
      seen_.try_emplace(instance, Clock::now(), c.origin);
      cv_.notify_all();
    };
  }
  // Waits until every instance in `instances` has seen it; false on timeout.
  bool wait(const std::vector<int>& instances, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [&] {
      for (int i : instances) {
        if (seen_.count(i) == 0) return false;
      }
      return true;
    });
  }
  bool has(int instance) {
    std::lock_guard lock(mu_);
    return seen_.count(instance) != 0;
  }
  std::pair<Clock::time_point, ChangeOrigin> at(int instance) {
    std::lock_guard lock(mu_);
    return seen_.at(instance);
  }

 private:
  std::string key_;
  nlohmann::json value_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::pair<Clock::time_point, ChangeOrigin>> seen_;
};

// Plain SQL through libpq, as psql would run it.
bool exec_sql(const std::string& dsn, const std::string& sql) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (ok) {
    PGresult* r = PQexec(conn, sql.c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) std::printf("SQL failed: %s\n", PQresultErrorMessage(r));
    PQclear(r);
  } else {
    std::printf("connecting failed: %s\n", PQerrorMessage(conn));
  }
  PQfinish(conn);
  return ok;
}

std::string show(const std::optional<nlohmann::json>& value) {
  return value ? value->dump() : std::string("(absent)");
}

}  // namespace

int run_demo() {
  std::printf("Starting an embedded PostgreSQL in a temporary directory...\n");
  std::fflush(stdout);
  EmbeddedPostgres pg;
  pg.start();

  Options options;
  options.table_name = "demo_config";
  options.channel = "demo_changes";
  options.heartbeat_interval = std::chrono::seconds(1);
  options.reconnect_interval = std::chrono::seconds(1);
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kInstances; ++i) stores.push_back(Store::open(pg.dsn(), options));
  std::printf("Opened %d instances on table public.%s (channel %s, heartbeat every %lld ms).\n\n",
              kInstances, options.table_name.c_str(), options.channel.c_str(),
              static_cast<long long>(options.heartbeat_interval.count()));
  bool ok = true;

  // 1. A write on instance 1 reaches the others through NOTIFY.
  {
    // The first write also opens a pool connection: warm up so that the timing is typical.
    stores[0]->set("demo:started", true);
    std::printf("1. Instance 1 sets feature:new_ui = true.\n");
    Arrivals arrivals("feature:new_ui", true);
    std::vector<SubscriptionId> ids;
    for (int i = 1; i < kInstances; ++i) ids.push_back(stores[i]->subscribe(arrivals.callback(i)));
    Clock::time_point start = Clock::now();
    stores[0]->set("feature:new_ui", true);
    Clock::time_point committed = Clock::now();
    std::printf("   instance 1: set() returned after the commit, %lld us\n",
                static_cast<long long>(micros(committed - start)));
    bool arrived = arrivals.wait({1, 2}, Clock::now() + kDeadline);
    for (int i = 1; i < kInstances; ++i) {
      if (!arrivals.has(i)) {
        std::printf("   instance %d: did NOT receive it within %lld s\n", i + 1,
                    static_cast<long long>(kDeadline.count()));
        continue;
      }
      auto [at, origin] = arrivals.at(i);
      std::printf(
          "   instance %d: its callback got it %lld us after set() was called "
          "(origin %s: through NOTIFY)\n",
          i + 1, static_cast<long long>(micros(at - start)), to_string(origin).data());
    }
    ok = ok && arrived;
    for (int i = 1; i < kInstances; ++i) stores[i]->unsubscribe(ids[i - 1]);
  }

  // 2. A change that fires no trigger sends no notification: every instance misses it, and each
  //    one's heartbeat (comparing its cache with the table) repairs it.
  {
    std::printf("\n2. A change that no notification announces.\n");
    Arrivals base("max_users", 100);
    std::vector<SubscriptionId> base_ids;
    for (int i = 0; i < kInstances; ++i) base_ids.push_back(stores[i]->subscribe(base.callback(i)));
    stores[0]->set("max_users", 100);
    ok = base.wait({0, 1, 2}, Clock::now() + kDeadline) && ok;
    for (int i = 0; i < kInstances; ++i) stores[i]->unsubscribe(base_ids[i]);
    std::printf("   instance 1 sets max_users = 100; every instance has it.\n");

    Arrivals repaired("max_users", 500);
    std::vector<SubscriptionId> ids;
    for (int i = 0; i < kInstances; ++i) ids.push_back(stores[i]->subscribe(repaired.callback(i)));
    Clock::time_point start = Clock::now();
    if (!exec_sql(pg.dsn(),
                  "SET session_replication_role = replica; "
                  "UPDATE public.demo_config SET value = '500' WHERE key = 'max_users'")) {
      return kExitFailure;
    }
    std::printf(
        "   plain SQL under session_replication_role = replica sets max_users = 500:\n"
        "   no trigger fires, no NOTIFY is sent, no instance is told.\n");
    for (int i = 0; i < kInstances; ++i) {
      std::printf("   before: instance %d has max_users = %s\n", i + 1,
                  show(stores[i]->get("max_users")).c_str());
    }
    bool converged = repaired.wait({0, 1, 2}, Clock::now() + kDeadline);
    for (int i = 0; i < kInstances; ++i) {
      Stats stats = stores[i]->stats();
      std::string after = show(stores[i]->get("max_users"));
      if (!repaired.has(i)) {
        std::printf("   after:  instance %d has max_users = %s: NOT repaired within %lld s\n",
                    i + 1, after.c_str(), static_cast<long long>(kDeadline.count()));
        continue;
      }
      auto [at, origin] = repaired.at(i);
      std::printf(
          "   after:  instance %d has max_users = %s, repaired by its heartbeat %lld us "
          "after the write (origin %s, crc_mismatches = %llu)\n",
          i + 1, after.c_str(), static_cast<long long>(micros(at - start)),
          to_string(origin).data(), static_cast<unsigned long long>(stats.crc_mismatches));
    }
    ok = ok && converged;
    for (int i = 0; i < kInstances; ++i) stores[i]->unsubscribe(ids[i]);
  }

  // 3. Everyone agrees.
  std::printf("\n3. Checksums:");
  for (int i = 0; i < kInstances; ++i) {
    std::printf(" instance %d crc=%u%s", i + 1, stores[i]->get_crc(),
                i + 1 < kInstances ? "," : "");
    ok = ok && stores[i]->get_crc() == stores[0]->get_crc();
  }
  std::printf("\n\n%s\n", ok ? "All instances converged." : "Some instance did NOT converge.");
  std::fflush(stdout);
  for (auto& store : stores) store->shutdown();
  return ok ? kExitOk : 1;  // 1: something did not converge.
}

}  // namespace syncconfig::cli
