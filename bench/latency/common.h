// Shared by the figures of syncconfig_latency (main.cc lists them): sizes and sample counts, table
// and value helpers, the raw baselines' SQL, printing, and the --sql-profile profiler.
#pragma once

#include <spdlog/logger.h>
#include <spdlog/spdlog.h>
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/syncconfig.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bench_util.h"

namespace latency {

using bench::Clock;
using bench::FanIn;
using bench::micros;
using bench::PgConn;
using bench::print_pair;
using bench::RawListener;
using bench::Row;
using bench::summarize;
using bench::Summary;
using bench::Unit;
using namespace std::chrono_literals;

// Sizes and sample counts. The defaults keep the whole run (both drivers, build included) well
// under 10 minutes on a 2-core machine; smoke() shrinks everything to a few seconds.
struct Config {
  int samples = 2000;  // Per latency figure (set, propagation, scaling).
  int warmup = 200;
  int small_keys = 1000;
  int mid_keys = 100000;
  int large_keys = 1000000;
  int startup_runs = 5;        // Timed opens at 100k (after one warm-up) ...
  int startup_runs_large = 3;  // ... and at 1M.
  int crc_runs_small = 500;
  int crc_runs_large = 3;
  int fanout_readers = 50;
  int fanout_samples = 500;
  int fanout_warmup = 50;
  int writers = 8;
  std::chrono::milliseconds throughput_window = 3s;  // Per round and side.
  int throughput_rounds = 3;
  int outage_changes = 100;
  int catchup_rounds = 15;
  int reload_runs = 3;
  int txn_ops = 1000;   // Sets per transaction (figure 11).
  int txn_rounds = 15;  // Rounds of figure 11 (each: one commit, 1,000 set calls, one raw write).

  void smoke() {
    samples = 20;
    warmup = 5;
    small_keys = 100;
    mid_keys = 1000;
    large_keys = 10000;
    startup_runs = startup_runs_large = 1;
    crc_runs_small = crc_runs_large = 2;
    fanout_readers = 5;
    fanout_samples = 10;
    fanout_warmup = 2;
    throughput_window = 200ms;
    throughput_rounds = 1;
    catchup_rounds = 2;
    reload_runs = 1;
    txn_ops = 50;
    txn_rounds = 2;
  }
};

// "1k", "100k", "1M": row labels follow the configured sizes.
inline std::string count_label(int n) {
  if (n >= 1000000 && n % 1000000 == 0) return std::to_string(n / 1000000) + "M";
  if (n >= 1000 && n % 1000 == 0) return std::to_string(n / 1000) + "k";
  return std::to_string(n);
}

// Table names must be lowercase: "bench_keys_1m".
inline std::string table_for(const std::string& prefix, int n) {
  std::string name = prefix + count_label(n);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

// A small value of constant size, the same for syncconfig and the raw baseline: the JSON string
// "v-000123" (10 bytes of JSON text).
inline std::string value_string(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "v-%06d", i % 1000000);
  return buf;
}
inline std::string value_json_text(int i) { return "\"" + value_string(i) + "\""; }

inline std::string raw_upsert_sql(const std::string& table, const std::string& channel) {
  return "WITH u AS (INSERT INTO " + table +
         " (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO UPDATE SET value = "
         "EXCLUDED.value RETURNING key) SELECT pg_notify('" +
         channel + "', $1)";
}

// What Store::set sends on protocol 2 (src/db/table_sql.cc): one call of the table's put
// function, which takes the writer lock, writes the row and its change-log record and notifies.
// $3 is the actor ('' lets the function name the session, as a store with Options::actor unset
// does); no expected revision, no lease, no comment.
inline std::string put_fn_sql(const std::string& table) {
  return "SELECT status, rev, val FROM \"public\".\"" + table +
         "_sc_put\"($1, $2::jsonb, NULL::bigint, 0::bigint, $3, '')";
}

// Raw baseline table: just key and value, no triggers, filled with n rows ('k1'..'kn', values
// 1..n).
inline void create_raw_table(PgConn& admin, const std::string& table, int n) {
  admin.exec("DROP TABLE IF EXISTS " + table);
  admin.exec("CREATE TABLE " + table + " (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL)");
  if (n > 0) {
    admin.exec("INSERT INTO " + table + " (key, value) SELECT 'k' || i, to_jsonb(i) " +
               "FROM generate_series(1, " + std::to_string(n) + ") AS i");
  }
  admin.exec("VACUUM ANALYZE " + table);
}

inline syncconfig::Options store_options(const std::string& table, const std::string& channel) {
  syncconfig::Options o;
  o.table_name = table;
  o.channel = channel;
  return o;
}
inline syncconfig::Options store_options(const std::string& table) {
  return store_options(table, table + "_ch");
}

// A library table of n rows ('k1'..'kn', values 1..n): an untimed Store::open installs the
// protocol's objects, then one INSERT ... SELECT goes through the triggers, so every row is
// stamped with its own revision (and notified, to nobody) as if written by set(). Call it before
// any store listens: every listening backend would have to read the fill's notifications.
struct FilledTable {
  std::string table;
  double fill_seconds = 0;
};
inline FilledTable fill_store_table(const std::string& dsn, PgConn& admin, int n) {
  FilledTable f{table_for("bench_keys_", n)};
  syncconfig::Options o = store_options(f.table);
  o.enable_notification = false;
  syncconfig::Store::open(dsn, o).reset();
  auto t0 = Clock::now();
  admin.exec("INSERT INTO " + f.table + " (key, value) SELECT 'k' || i, to_jsonb(i) " +
             "FROM generate_series(1, " + std::to_string(n) + ") AS i");
  f.fill_seconds = micros(Clock::now() - t0) / 1e6;
  admin.exec("VACUUM ANALYZE " + f.table);
  admin.exec("CHECKPOINT");  // The fill's dirty pages are not written during later figures.
  return f;
}

// Targets on mine/base ratios; a bound left at 0 is not checked.
inline void ratio_target(Row& r, double p50_max, double p99_max) {
  std::string t;
  bool ok = true;
  char buf[48];
  if (p50_max > 0) {
    std::snprintf(buf, sizeof buf, "p50 <= %.3gx", p50_max);
    t = buf;
    ok = ok && r.mine.p50 <= p50_max * r.base.p50;
  }
  if (p99_max > 0) {
    std::snprintf(buf, sizeof buf, "%sp99 <= %.3gx", t.empty() ? "" : ", ", p99_max);
    t += buf;
    ok = ok && r.mine.p99 <= p99_max * r.base.p99;
  }
  r.target = t;
  r.met = bench::met_text(ok);
}

// While it lives, a thread samples what the active client backends are doing (wait event, or
// "CPU" when none, and the start of the statement) every ~2 ms; report() prints those counts and
// the top statements and PL/pgSQL functions by server time since construction (pg_stat_statements
// with nested statements, pg_stat_user_functions). Only in --sql-profile runs: the profiler's
// own overhead goes into every figure of such a run.
class SqlProfile {
 public:
  SqlProfile(const std::string& dsn, bool enabled, std::string title)
      : enabled_(enabled), title_(std::move(title)) {
    if (!enabled_) return;
    conn_ = std::make_unique<PgConn>(dsn);
    conn_->exec("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset()");
    sampler_conn_ = std::make_unique<PgConn>(dsn);
    sampler_ = std::thread([this] {
      const std::string q =
          "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || '  ' || "
          "regexp_replace(left(query, 60), '\\s+', ' ', 'g') FROM pg_stat_activity "
          "WHERE backend_type = 'client backend' AND state = 'active' AND pid <> "
          "pg_backend_pid()";
      while (!stop_.load()) {
        for (const std::string& w : sampler_conn_->column(q)) ++waits_[w];
        ++samples_;
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  ~SqlProfile() { report(); }

  void report() {
    if (!enabled_ || reported_) return;
    reported_ = true;
    stop_ = true;
    sampler_.join();
    std::printf("   SQL profile, %s:\n", title_.c_str());
    std::printf("     active client backends over %d samples of pg_stat_activity:\n", samples_);
    std::vector<std::pair<int, std::string>> w;
    for (const auto& [k, n] : waits_) w.emplace_back(n, k);
    std::sort(w.rbegin(), w.rend());
    for (std::size_t i = 0; i < w.size() && i < 12; ++i) {
      std::printf("       %6d  %s\n", w[i].first, w[i].second.c_str());
    }
    conn_->exec("SELECT pg_stat_force_next_flush()");
    std::printf("     statements by total time (pg_stat_statements, nested included):\n");
    for (const std::string& l : conn_->column(
             "SELECT lpad(calls::text, 9) || ' calls ' || lpad(round((1000 * total_exec_time / "
             "calls)::numeric, 1)::text, 9) || ' us/call ' || lpad(round(total_exec_time::numeric, "
             "1)::text, 9) || ' ms total  ' || CASE WHEN toplevel THEN '' ELSE '(nested) ' END || "
             "regexp_replace(left(query, 110), '\\s+', ' ', 'g') FROM pg_stat_statements "
             "WHERE calls > 0 "
             "ORDER BY total_exec_time DESC LIMIT 30")) {
      std::printf("       %s\n", l.c_str());
    }
    std::printf("     PL/pgSQL functions (pg_stat_user_functions):\n");
    for (const std::string& l : conn_->column(
             "SELECT lpad(calls::text, 9) || ' calls ' || lpad(round((1000 * total_time / "
             "calls)::numeric, 1)::text, 9) || ' us/call total ' || lpad(round((1000 * self_time / "
             "calls)::numeric, 1)::text, 9) || ' us/call self  ' || funcname "
             "FROM pg_stat_user_functions WHERE calls > 0 "
             "ORDER BY total_time DESC LIMIT 8")) {
      std::printf("       %s\n", l.c_str());
    }
    std::fflush(stdout);
  }

 private:
  bool enabled_;
  std::string title_;
  std::unique_ptr<PgConn> conn_, sampler_conn_;
  std::thread sampler_;
  std::atomic<bool> stop_{false};
  std::map<std::string, int> waits_;  // Only the sampler thread touches it until report().
  int samples_ = 0;
  bool reported_ = false;
};

}  // namespace latency
