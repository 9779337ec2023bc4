// Figure 8: catch-up after an outage next to a full reload.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {
namespace {

// A login role whose sessions can be cut off (NOLOGIN + terminate) and let back in, to hold one
// instance away from the database while changes commit (as tests/recovery_test.cc does).
class BlockableRole {
 public:
  BlockableRole(PgConn& admin, const std::string& dsn, std::string name)
      : admin_(admin), name_(std::move(name)) {
    admin_.exec("DROP ROLE IF EXISTS " + name_);
    admin_.exec("CREATE ROLE " + name_ + " LOGIN SUPERUSER");
    const std::string user = "://postgres@";
    const auto at = dsn.find(user);
    if (at == std::string::npos) bench::die("unexpected DSN form: " + dsn);
    dsn_ = dsn;
    dsn_.replace(at, user.size(), "://" + name_ + "@");
  }
  const std::string& dsn() const { return dsn_; }
  const std::string& name() const { return name_; }
  void block() {
    admin_.exec("ALTER ROLE " + name_ + " NOLOGIN");
    admin_.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + name_ +
                "'");
  }
  void unblock() { admin_.exec("ALTER ROLE " + name_ + " LOGIN"); }

 private:
  PgConn& admin_;
  std::string name_;
  std::string dsn_;
};

int64_t system_micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace

// An instance on the filled table is cut off; `outage_changes` rows (distinct random keys) are
// updated by plain SQL meanwhile (one commit each, stamped and notified by the triggers, to
// nobody); then it is let back in. Timed from the moment the role can log in again until the
// store's callbacks have run for every missed change (the catch-up applies them with
// ChangeOrigin::kResync). With reconnect_interval = 2 ms the instance retries at once; the part
// of the time spent waiting for its next attempt is taken out: the server records when the new
// listener backend started (pg_stat_activity.backend_start, same machine clock), and the figure
// is the work from there — connect, LISTEN, read rows and tombstones above the watermark, apply,
// callbacks.
// Baseline: Store::sync(), the library's full reload (the path a reconnect takes when it cannot
// catch up: read every row in a snapshot, diff with the cache, apply). It runs on the already
// connected listener, so it does not even pay the connect that the catch-up pays.
std::vector<Row> bench_catch_up(const std::string& dsn, PgConn& admin, const Config& cfg,
                                const FilledTable& t, int rows) {
  BlockableRole role(admin, dsn, "bench_blockable");
  syncconfig::Options o = store_options(t.table);
  o.reconnect_interval = 2ms;
  o.pool_size = 1;  // It never writes.
  // The failed attempts during the outage log warnings: keep them out of the results.
  o.logger = std::make_shared<spdlog::logger>("bench-catch-up");  // No sinks.
  auto store = syncconfig::Store::open(role.dsn(), o);
  FanIn applied(1);
  store->subscribe([&applied](const syncconfig::Change& c) {
    if (c.origin == syncconfig::ChangeOrigin::kResync) applied.arrive(0);
  });
  PgConn writer(dsn);
  writer.prepare("touch", "UPDATE " + t.table + " SET value = $2::jsonb WHERE key = $1", 2);
  const syncconfig::Stats before = store->stats();

  std::mt19937 rng(7);
  std::vector<double> work, total, wait;
  for (int round = 0; round < cfg.catchup_rounds + 1; ++round) {  // Round 0 warms up.
    role.block();
    for (auto t0 = Clock::now(); store->stats().connected;) {
      if (Clock::now() - t0 > 10s) bench::die("catch-up: the listener was not cut off");
      std::this_thread::sleep_for(1ms);
    }
    std::set<int> keys;
    while (static_cast<int>(keys.size()) < cfg.outage_changes) keys.insert(1 + rng() % rows);
    int j = 0;
    for (int k : keys) {
      std::string key = "k";  // Not "k" + to_string(): GCC 12 warns falsely (-Wrestrict) there.
      key += std::to_string(k);
      // A value no other figure writes, so that every update is a change (and a callback).
      const std::string value =
          "\"outage-" + std::to_string(round) + "-" + std::to_string(j++) + "\"";
      writer.exec_prepared("touch", {key, value});
    }
    applied.expect(static_cast<uint64_t>(cfg.outage_changes));
    role.unblock();
    const auto t0 = Clock::now();
    const auto sys0 = std::chrono::system_clock::now();
    const auto t1 = applied.wait_last();
    // The role's newest backend is the listener that caught up (no attempt follows a success).
    const int64_t started = std::atoll(
        admin
            .scalar("SELECT coalesce((extract(epoch FROM max(backend_start)) * 1e6)::bigint, 0) "
                    "FROM pg_stat_activity WHERE usename = '" +
                    role.name() + "'")
            .c_str());
    const double total_us = micros(t1 - t0);
    const double wait_us =
        std::clamp(static_cast<double>(started - system_micros(sys0)), 0.0, total_us);
    if (round > 0) {
      total.push_back(total_us);
      wait.push_back(wait_us);
      work.push_back(total_us - wait_us);
    }
  }
  const syncconfig::Stats after_catch_ups = store->stats();

  std::vector<double> reload;
  for (int i = 0; i < cfg.reload_runs; ++i) {
    auto t0 = Clock::now();
    store->sync();
    reload.push_back(micros(Clock::now() - t0));
  }
  store->shutdown();

  const std::string n = count_label(rows);
  const std::string c = std::to_string(cfg.outage_changes);
  Row row{"catch-up, " + c + " changes @" + n + " vs full reload", summarize(work),
          summarize(reload)};
  row.target = "p50 <= 0.05x (>= 20x faster)";
  row.met = bench::met_text(20 * row.mine.p50 <= row.base.p50);
  Row with_wait{"  catch-up incl. reconnect wait vs reload", summarize(total), row.base};
  print_pair(("8. catch-up, " + c + " changes @" + n).c_str(), row.mine,
             "catch-up work (from backend start)", row.base, "full reload (Store::sync)");
  const Summary w = summarize(wait);
  std::printf(
      "   reconnect wait (role allowed -> listener backend started): p50 %.1f  p99 %.1f us; "
      "total p50 %.1f us\n",
      w.p50, w.p99, with_wait.mine.p50);
  std::printf(
      "   store stats over the %d outages: catch_ups +%llu, resyncs +%llu, reconnects +%llu\n",
      cfg.catchup_rounds + 1,
      static_cast<unsigned long long>(after_catch_ups.catch_ups - before.catch_ups),
      static_cast<unsigned long long>(after_catch_ups.resyncs - before.resyncs),
      static_cast<unsigned long long>(after_catch_ups.reconnects - before.reconnects));
  if (after_catch_ups.resyncs != before.resyncs) {
    std::printf("   WARNING: an outage ended in a full reload instead of a catch-up\n");
  }
  std::fflush(stdout);
  return {row, with_wait};
}

}  // namespace latency
