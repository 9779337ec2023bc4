// syncconfig_latency: end-to-end figures of syncconfig next to raw libpq baselines, measured in
// the same process against the same embedded PostgreSQL server, interleaved sample by sample (or
// round by round) so that both sides see the same machine noise.
//
//   1. set()            vs a prepared one-statement upsert + pg_notify
//   2. propagation      set() on store A until store B's callback runs
//                       vs upsert + pg_notify on conn A until LISTEN conn B receives it
//   3. set() at 1M (and 100k) vs 1k existing keys, and the same for the raw upsert, next to the
//      reference service's per-write CRC recompute at 1k and 1M entries
//   4. Store::open on 100k and 1M rows vs connect + SELECT key, value::text through libpq
//   5. heap (and RSS) growth per entry of Store::open on 1M rows vs the rows' key + value text
//   6. fan-out: set() on a writer until the callbacks of 50 other stores ran, vs upsert +
//      pg_notify until 50 raw LISTEN connections (a thread each) received it
//   7. write throughput of 8 threads on one store vs 8 raw connections
//   8. catch-up of an instance that missed 100 changes on a 1M-row table vs a full reload
//  11. a transaction of 1,000 sets (Store::commit) vs 1,000 set() calls, and vs the same rows
//      written by one raw statement (INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE,
//      pg_notify per row)
//  12. set_if() (compare-and-set on the key's revision) vs set()
//
// The 100k and 1M tables are filled once, before any figure, with one INSERT ... SELECT through
// the library's triggers (fill times are printed). Diagnostics are printed next to the figures;
// the table at the end has one row per figure with its target. Rows of the Google Benchmark
// driver (get_int) are merged into that table with --rows-from.
//
// Usage: syncconfig_latency [--samples N] [--fsync] [--smoke] [--rows-from FILE] [--sql-profile]
//                           [--only set|propagation|scaling|startup|memory|fanout|throughput|
//                                   catchup|txn|setif]
//   N samples per latency figure (default 2000); --fsync runs the server with fsync=on (default:
//   the temporary embedded cluster's fsync=off); --smoke runs every figure at tiny sizes with a
//   few samples (checks that the benchmark works; its numbers mean nothing). --sql-profile loads
//   pg_stat_statements (nested statements tracked) and, for the set, throughput, txn and setif
//   figures, prints where the server's time went (statements and PL/pgSQL functions by total time)
//   and what the active backends waited on (pg_stat_activity sampled every ~2 ms): a diagnostic
//   run, whose figures carry the profiler's overhead. --pg-setting NAME=VALUE (repeatable) adds a
//   server setting, for experiments (plan_cache_mode=force_generic_plan, ...).
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

namespace {

using bench::Clock;
using bench::FanIn;
using bench::micros;
using bench::PgConn;
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
std::string count_label(int n) {
  if (n >= 1000000 && n % 1000000 == 0) return std::to_string(n / 1000000) + "M";
  if (n >= 1000 && n % 1000 == 0) return std::to_string(n / 1000) + "k";
  return std::to_string(n);
}

// Table names must be lowercase: "bench_keys_1m".
std::string table_for(const std::string& prefix, int n) {
  std::string name = prefix + count_label(n);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

// A small value of constant size, the same for syncconfig and the raw baseline: the JSON string
// "v-000123" (10 bytes of JSON text).
std::string value_string(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "v-%06d", i % 1000000);
  return buf;
}
std::string value_json_text(int i) { return "\"" + value_string(i) + "\""; }

std::string raw_upsert_sql(const std::string& table, const std::string& channel) {
  return "WITH u AS (INSERT INTO " + table +
         " (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO UPDATE SET value = "
         "EXCLUDED.value RETURNING key) SELECT pg_notify('" +
         channel + "', $1)";
}

// What Store::set sends on protocol 2 (src/db/table_sql.cc): one call of the table's put
// function, which takes the writer lock, writes the row and its change-log record and notifies.
// $3 is the actor ('' lets the function name the session, as a store with Options::actor unset
// does); no expected revision, no lease, no comment.
std::string put_fn_sql(const std::string& table) {
  return "SELECT status, rev, val FROM \"public\".\"" + table +
         "_sc_put\"($1, $2::jsonb, NULL::bigint, 0::bigint, $3, '')";
}

// Raw baseline table: just key and value, no triggers, filled with n rows ('k1'..'kn', values
// 1..n).
void create_raw_table(PgConn& admin, const std::string& table, int n) {
  admin.exec("DROP TABLE IF EXISTS " + table);
  admin.exec("CREATE TABLE " + table + " (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL)");
  if (n > 0) {
    admin.exec("INSERT INTO " + table + " (key, value) SELECT 'k' || i, to_jsonb(i) " +
               "FROM generate_series(1, " + std::to_string(n) + ") AS i");
  }
  admin.exec("VACUUM ANALYZE " + table);
}

syncconfig::Options store_options(const std::string& table, const std::string& channel) {
  syncconfig::Options o;
  o.table_name = table;
  o.channel = channel;
  return o;
}
syncconfig::Options store_options(const std::string& table) {
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
FilledTable fill_store_table(const std::string& dsn, PgConn& admin, int n) {
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

void print_pair(const char* title, const Summary& a, const char* a_name, const Summary& b,
                const char* b_name) {
  auto line = [](const char* t, const char* name, const Summary& s) {
    std::printf("%-38s %-29s p50 %9.1f  p90 %9.1f  p99 %9.1f  max %9.1f us  (n=%zu)\n", t, name,
                s.p50, s.p90, s.p99, s.max, s.n);
  };
  line(title, a_name, a);
  line("", b_name, b);
  std::printf("%-38s %-29s p50 %8.2fx  p90 %8.2fx  p99 %8.2fx\n", "", "ratio", a.p50 / b.p50,
              a.p90 / b.p90, a.p99 / b.p99);
  std::fflush(stdout);
}

// Targets on mine/base ratios; a bound left at 0 is not checked.
void ratio_target(Row& r, double p50_max, double p99_max) {
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

// ---- 1. set() vs raw upsert + notify ------------------------------------------------------

std::vector<Row> bench_set(const std::string& dsn, PgConn& admin, const Config& cfg) {
  create_raw_table(admin, "raw_kv", 0);
  PgConn raw(dsn);
  raw.prepare("upsert", raw_upsert_sql("raw_kv", "raw_ch"), 2);
  auto store = syncconfig::Store::open(dsn, store_options("bench_set", "bench_set_ch"));

  // Decomposition: the statement Store::set sends (protocol 2: one call of the table's put
  // function, src/db/table_sql.cc) run through plain libpq on a table of its own with no
  // listening instance. Its difference to the raw baseline is the database-side cost (writer
  // lock, revision, change-log record, payload); its difference to Store::set is the client side
  // (validation, pool, parsing/hashing the returned value, cache update, and the writer's own
  // listener consuming the echo).
  {
    syncconfig::Options o = store_options("bench_set_sql", "bench_set_sql_ch");
    o.enable_notification = false;
    syncconfig::Store::open(dsn, o).reset();  // Creates the table, log and functions.
  }
  // And the same Store::set with enable_notification = false (no listening connection): its
  // difference to Store::set is what the writer's own listener costs while the write is timed.
  syncconfig::Options quiet = store_options("bench_set_quiet", "bench_set_quiet_ch");
  quiet.enable_notification = false;
  auto quiet_store = syncconfig::Store::open(dsn, quiet);
  // Its own connection: every measured series uses a backend of its own, idle while the other
  // series run, as the store's pooled connection is (a backend that just ran is warmer).
  PgConn sql_conn(dsn);
  sql_conn.prepare("store_sql", put_fn_sql("bench_set_sql"), 3);

  constexpr int kKeys = 100;  // Rotating keys: after the warm-up every write is an update.
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) keys.push_back("key-" + std::to_string(k));

  std::vector<double> mine, base, sql, no_listen;
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    const std::string& key = keys[i % kKeys];
    auto t0 = Clock::now();
    store->set(key, nlohmann::json(value_string(i)));
    auto t1 = Clock::now();
    raw.exec_prepared("upsert", {key, value_json_text(i)});
    auto t2 = Clock::now();
    sql_conn.exec_prepared("store_sql", {key, value_json_text(i), ""});
    auto t3 = Clock::now();
    quiet_store->set(key, nlohmann::json(value_string(i)));
    auto t4 = Clock::now();
    if (i >= cfg.warmup) {
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(t2 - t1));
      sql.push_back(micros(t3 - t2));
      no_listen.push_back(micros(t4 - t3));
    }
  }
  Row row{"set (small value, existing key)", summarize(mine), summarize(base)};
  ratio_target(row, 1.15, 1.3);
  Row triggers{"  syncconfig's put function via libpq", summarize(sql), row.base};
  Row client{"  Store::set vs its own SQL via libpq", row.mine, triggers.mine};
  Row quiet_row{"  Store::set, notifications off vs SQL", summarize(no_listen), triggers.mine};
  print_pair("1. set", row.mine, "syncconfig Store::set", row.base, "raw upsert+notify");
  print_pair("   put function (DB side)", triggers.mine, "syncconfig SQL via libpq", triggers.base,
             "raw upsert+notify");
  print_pair("   client side", client.mine, "syncconfig Store::set", client.base,
             "syncconfig SQL via libpq");
  print_pair("   without listener", quiet_row.mine, "Store::set, notifications off", quiet_row.base,
             "syncconfig SQL via libpq");
  return {row, triggers, client, quiet_row};
}

// ---- 1b. where set's time goes, on the server ----------------------------------------------

// Printed, not tabulated: executor time (EXPLAIN ANALYZE; per trigger where there are triggers),
// HOT updates and WAL bytes per write, for the put function Store::set calls (bench_set_sql), for
// a foreign write (plain upsert through the triggers) on the same table, and for the raw upsert on
// raw_kv. Run after bench_set(), which creates both tables.
void diagnose_set(const std::string& dsn) {
  constexpr int kRuns = 300;
  const std::string store_sql =
      "SELECT status, rev, val FROM bench_set_sql_sc_put($K, $V::jsonb, NULL::bigint, 0::bigint, "
      "'', '')";
  const std::string foreign_sql =
      "INSERT INTO bench_set_sql (key, value) VALUES ($K, $V::jsonb) ON CONFLICT (key) DO UPDATE "
      "SET value = EXCLUDED.value RETURNING revision, value::text";
  const std::string raw_sql =
      "WITH u AS (INSERT INTO raw_kv (key, value) VALUES ($K, $V::jsonb) ON CONFLICT (key) DO "
      "UPDATE SET value = EXCLUDED.value RETURNING key) SELECT pg_notify('raw_ch', $K)";
  auto with_literals = [](std::string sql, int i) {
    const std::string k = "'key-" + std::to_string(i % 100) + "'";
    const std::string v = "'" + value_json_text(i) + "'";
    for (std::size_t p; (p = sql.find("$K")) != std::string::npos;) sql.replace(p, 2, k);
    for (std::size_t p; (p = sql.find("$V")) != std::string::npos;) sql.replace(p, 2, v);
    return sql;
  };
  PgConn conn(dsn);
  std::printf("   server side, %d EXPLAIN ANALYZE runs each (executor time, p50):\n", kRuns);
  for (const auto& [name, sql] : {std::pair{"syncconfig put fn", store_sql},
                                  {"foreign upsert", foreign_sql},
                                  {"raw upsert", raw_sql}}) {
    std::map<std::string, std::vector<double>> times;  // "Execution Time", "Trigger x (calls)"
    for (int i = 0; i < kRuns + 50; ++i) {
      auto lines = conn.column("EXPLAIN (ANALYZE) " + with_literals(sql, i));
      if (i < 50) continue;  // Warm-up (plan and PL/pgSQL caches).
      for (const std::string& l : lines) {
        if (l.rfind("Execution Time: ", 0) == 0) {
          times["executor total"].push_back(1000 * std::atof(l.c_str() + 16));
        } else if (l.rfind("Trigger ", 0) == 0) {
          auto colon = l.find(": time=");
          auto calls = l.find("calls=");
          if (colon == std::string::npos || calls == std::string::npos) continue;
          std::string label =
              "trigger " + l.substr(8, colon - 8) + " (calls=" + l.substr(calls + 6) + ")";
          times[label].push_back(1000 * std::atof(l.c_str() + colon + 7));
        }
      }
    }
    for (const auto& [label, t] : times) {
      std::printf("     %-18s %-44s %7.1f us\n", name, label.c_str(), summarize(t).p50);
    }
  }

  // WAL per write over 200 autocommit writes each (the stores are idle meanwhile), and how many
  // updates were HOT (no index touched).
  for (const auto& [name, sql, table] :
       {std::tuple{"syncconfig put fn", store_sql, "bench_set_sql"},
        {"raw upsert", raw_sql, "raw_kv"}}) {
    constexpr int kWrites = 200;
    const std::string before = conn.scalar("SELECT pg_current_wal_insert_lsn()");
    for (int i = 0; i < kWrites; ++i) conn.exec(with_literals(sql, 7000 + i));
    const std::string wal =
        conn.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '" + before + "')");
    // This connection's update counters (pending, not yet flushed to the shared statistics):
    // every update above, the EXPLAIN ANALYZE runs included.
    const std::string oid = std::string("'") + table + "'::regclass";
    const std::string upd = conn.scalar("SELECT pg_stat_get_xact_tuples_updated(" + oid + ")");
    const std::string hot = conn.scalar("SELECT pg_stat_get_xact_tuples_hot_updated(" + oid + ")");
    std::printf("     %-18s WAL %6.0f bytes/write; HOT updates: %s of %s\n", name,
                std::atof(wal.c_str()) / kWrites, hot.c_str(), upd.c_str());
  }
  const std::string size_store =
      conn.scalar("SELECT pg_size_pretty(pg_total_relation_size('bench_set_sql'))");
  const std::string size_raw =
      conn.scalar("SELECT pg_size_pretty(pg_total_relation_size('raw_kv'))");
  std::printf("     table + indexes after the run (100 keys): syncconfig %s, raw %s\n",
              size_store.c_str(), size_raw.c_str());
  std::fflush(stdout);
}

// ---- 2 and 6. propagation and fan-out ------------------------------------------------------

// set() on a writer store until the callbacks of `readers` other stores (one listener thread and
// one dispatcher thread each) have all run, vs a prepared upsert + pg_notify on a raw connection
// until `readers` raw LISTEN connections (one thread each) have all received it. One reader is
// the propagation figure; 50 the fan-out figure. Both sides' listeners are connected for the
// whole run, so every NOTIFY wakes the same number of listening backends on either side.
Row bench_fanout(const std::string& dsn, PgConn& admin, const std::string& name, int readers,
                 int samples, int warmup) {
  const std::string table = "bench_" + name;
  const std::string raw_table = "raw_" + name;
  const std::string raw_channel = raw_table + "_ch";
  constexpr const char* kKey = "fan";
  create_raw_table(admin, raw_table, 0);
  PgConn raw_writer(dsn);
  raw_writer.prepare("upsert", raw_upsert_sql(raw_table, raw_channel), 2);
  FanIn raw_fan(readers);  // Declared before what calls it, so it is destroyed after.
  std::vector<std::unique_ptr<RawListener>> raw_listeners;
  for (int i = 0; i < readers; ++i) {
    raw_listeners.push_back(
        std::make_unique<RawListener>(dsn, raw_channel, [&raw_fan, i] { raw_fan.arrive(i); }));
  }

  auto writer = syncconfig::Store::open(dsn, store_options(table));
  syncconfig::Options reader_options = store_options(table);
  reader_options.pool_size = 1;  // Readers never write: no pooled connection is ever opened.
  FanIn fan(readers);
  std::vector<std::unique_ptr<syncconfig::Store>> stores;
  for (int i = 0; i < readers; ++i) {
    stores.push_back(syncconfig::Store::open(dsn, reader_options));
    stores.back()->subscribe([&fan, i](const syncconfig::Change& c) {
      if (c.key == kKey) fan.arrive(i);
    });
  }

  std::vector<double> mine, base;
  for (int i = 0; i < warmup + samples; ++i) {
    fan.expect();
    auto t0 = Clock::now();
    writer->set(kKey, nlohmann::json(value_string(i)));  // A new value every time: one change.
    auto t1 = fan.wait_last();

    raw_fan.expect();
    auto r0 = Clock::now();
    raw_writer.exec_prepared("upsert", {kKey, value_json_text(i)});
    auto r1 = raw_fan.wait_last();
    if (i >= warmup) {
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(r1 - r0));
    }
  }
  // Stores first: their dispatcher threads call `fan` until they are shut down.
  for (auto& s : stores) s->shutdown();
  stores.clear();
  writer->shutdown();
  raw_listeners.clear();
  return Row{"", summarize(mine), summarize(base)};
}

Row bench_propagation(const std::string& dsn, PgConn& admin, const Config& cfg) {
  Row row = bench_fanout(dsn, admin, "prop", 1, cfg.samples, cfg.warmup);
  row.figure = "propagation A.set -> B callback";
  ratio_target(row, 1.2, 1.3);
  print_pair("2. propagation", row.mine, "set on A -> callback on B", row.base,
             "upsert+notify A -> LISTEN B");
  return row;
}

Row bench_fanout_figure(const std::string& dsn, PgConn& admin, const Config& cfg) {
  Row row =
      bench_fanout(dsn, admin, "fan", cfg.fanout_readers, cfg.fanout_samples, cfg.fanout_warmup);
  const std::string n = std::to_string(cfg.fanout_readers);
  row.figure = "fan-out: set -> last of " + n + " callbacks";
  ratio_target(row, 0, 1.3);
  print_pair(("6. fan-out, " + n + " instances").c_str(), row.mine,
             ("set -> last of " + n + " callbacks").c_str(), row.base,
             ("upsert+notify -> last of " + n + " LISTEN").c_str());
  return row;
}

// ---- 7. write throughput ---------------------------------------------------------------------

// `writers` threads on one store (pool_size = writers) vs `writers` raw connections, each thread
// writing its own 100 keys in rotation (no two threads touch the same row, so the only
// contention is what the database and the library impose). Alternating rounds of a fixed
// window; the table shows the median and the slowest round. A third series runs the library's
// own write (its put function, what Store::set sends) through `writers` plain libpq connections:
// what the function's work and the per-table writer lock cost under concurrency, without the
// client.
std::vector<Row> bench_throughput(const std::string& dsn, PgConn& admin, const Config& cfg) {
  const int n = cfg.writers;
  create_raw_table(admin, "raw_tp", 0);
  syncconfig::Options o = store_options("bench_tp");
  o.pool_size = static_cast<std::size_t>(n);
  auto store = syncconfig::Store::open(dsn, o);
  {
    syncconfig::Options quiet = store_options("bench_tp_sql");
    quiet.enable_notification = false;
    syncconfig::Store::open(dsn, quiet).reset();  // Creates the table, log and functions.
  }
  std::vector<std::unique_ptr<PgConn>> raw, sql;
  for (int t = 0; t < n; ++t) {
    raw.push_back(std::make_unique<PgConn>(dsn));
    raw.back()->prepare("upsert", raw_upsert_sql("raw_tp", "raw_tp_ch"), 2);
    sql.push_back(std::make_unique<PgConn>(dsn));
    sql.back()->prepare("store_sql", put_fn_sql("bench_tp_sql"), 3);
  }
  std::vector<int> seq(n, 0);  // Per thread: which write it is at (only that thread touches it).
  auto key = [](int t, int i) { return "w" + std::to_string(t) + "-" + std::to_string(i % 100); };
  auto store_op = [&](int t) {
    int i = seq[t]++;
    store->set(key(t, i), nlohmann::json(value_string(i)));
  };
  auto raw_op = [&](int t) {
    int i = seq[t]++;
    raw[t]->exec_prepared("upsert", {key(t, i), value_json_text(i)});
  };
  auto sql_op = [&](int t) {
    int i = seq[t]++;
    sql[t]->exec_prepared("store_sql", {key(t, i), value_json_text(i), ""});
  };
  // Warm-up: every connection opened, every key inserted (later writes are updates).
  const auto warm = std::max(std::chrono::milliseconds(300), cfg.throughput_window / 10);
  const std::vector<std::function<void(int)>> ops = {store_op, raw_op, sql_op};
  for (const auto& op : ops) bench::ops_per_second(n, warm, op);

  std::vector<double> mine, base, via_sql;
  for (int r = 0; r < cfg.throughput_rounds; ++r) {
    mine.push_back(bench::ops_per_second(n, cfg.throughput_window, ops[0]));
    base.push_back(bench::ops_per_second(n, cfg.throughput_window, ops[1]));
    via_sql.push_back(bench::ops_per_second(n, cfg.throughput_window, ops[2]));
  }
  store->shutdown();
  // Median and slowest round, in the p50 and p99 slots.
  auto rounds = [](std::vector<double> v) {
    Summary s = summarize(v);
    s.p99 = *std::min_element(v.begin(), v.end());
    return s;
  };
  const std::string w = std::to_string(n);
  Row row{"write throughput, " + w + " threads, 1 instance", rounds(mine), rounds(base),
          Unit::kOpsPerSecond};
  row.target = "median >= 0.9x";
  row.met = bench::met_text(row.mine.p50 >= 0.9 * row.base.p50);
  Row diag{"  syncconfig SQL via " + w + " libpq conns", rounds(via_sql), row.base,
           Unit::kOpsPerSecond};
  std::printf("7. write throughput, %d writers, %d rounds of %lld ms (ops/s, median / slowest)\n",
              n, cfg.throughput_rounds, static_cast<long long>(cfg.throughput_window.count()));
  for (const Row* r : {&row, &diag}) {
    std::printf("   %-44s %8.0f / %8.0f   raw upsert+notify %8.0f / %8.0f   ratio %.2fx\n",
                r->figure.c_str(), r->mine.p50, r->mine.p99, r->base.p50, r->base.p99,
                r->mine.p50 / r->base.p50);
  }
  std::fflush(stdout);
  return {row, diag};
}

// ---- 3. set() at 1k, 100k and 1M keys, and the reference's CRC recompute ----------------

// The reference service's checksum, recomputed after every write: sort all keys, concatenate
// key + value text, CRC32 over the whole buffer.
uint32_t reference_crc(const std::unordered_map<std::string, std::string>& data) {
  std::vector<const std::string*> keys;
  keys.reserve(data.size());
  for (const auto& [k, v] : data) keys.push_back(&k);
  std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
  std::string buf;
  for (const std::string* k : keys) {
    buf += *k;
    buf += data.at(*k);
  }
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(buf.size())));
}

Summary time_reference_crc(int entries, int runs) {
  std::unordered_map<std::string, std::string> data;
  for (int i = 1; i <= entries; ++i) {
    std::string key = "k";
    key += std::to_string(i);
    data.emplace(std::move(key), std::to_string(i));
  }
  volatile uint32_t sink = 0;
  std::vector<double> t;
  const int warm = runs >= 10 ? 3 : 1;  // At 1M a run takes ~1 s: one warm-up is enough.
  for (int i = 0; i < runs + warm; ++i) {
    data["k1"] = std::to_string(i);  // The write that triggers the recompute.
    auto t0 = Clock::now();
    sink = sink + reference_crc(data);
    auto t1 = Clock::now();
    if (i >= warm) t.push_back(micros(t1 - t0));
  }
  return summarize(t);
}

// One store per table size (the tables filled before any figure) and one raw connection per
// size on a raw table of the same rows; each sample writes a random existing key of every size,
// the store and the raw upsert back to back.
std::vector<Row> bench_set_scaling(const std::string& dsn, PgConn& admin, const Config& cfg,
                                   const std::map<int, FilledTable>& filled) {
  struct Series {
    int keys = 0;
    std::unique_ptr<syncconfig::Store> store;
    std::unique_ptr<PgConn> raw;  // Its own backend, like each store's pooled connection.
    std::vector<double> mine, base;
  };
  std::vector<Series> series;
  for (int n : {cfg.small_keys, cfg.mid_keys, cfg.large_keys}) {
    Series s;
    s.keys = n;
    s.store = syncconfig::Store::open(dsn, store_options(filled.at(n).table));
    if (s.store->size() != static_cast<std::size_t>(n)) bench::die("pre-fill not loaded");
    const std::string raw_table = table_for("raw_keys_", n);
    create_raw_table(admin, raw_table, n);
    s.raw = std::make_unique<PgConn>(dsn);
    s.raw->prepare("upsert", raw_upsert_sql(raw_table, "raw_keys_ch"), 2);
    series.push_back(std::move(s));
  }

  std::mt19937 rng(42);
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    for (Series& s : series) {
      const std::string key = "k" + std::to_string(1 + rng() % s.keys);
      auto t0 = Clock::now();
      s.store->set(key, nlohmann::json(value_string(i)));
      auto t1 = Clock::now();
      s.raw->exec_prepared("upsert", {key, value_json_text(i)});
      auto t2 = Clock::now();
      if (i >= cfg.warmup) {
        s.mine.push_back(micros(t1 - t0));
        s.base.push_back(micros(t2 - t1));
      }
    }
  }
  for (Series& s : series) s.store->shutdown();

  const Series& small = series[0];
  const Series& mid = series[1];
  const Series& large = series[2];
  const std::string ls = count_label(small.keys), lm = count_label(mid.keys),
                    ll = count_label(large.keys);
  Row set_large{"set @" + ll + " keys vs @" + ls + " keys", summarize(large.mine),
                summarize(small.mine)};
  ratio_target(set_large, 1.3, 0);
  Row set_mid{"  set @" + lm + " keys vs @" + ls + " keys", summarize(mid.mine),
              summarize(small.mine)};
  Row raw_large{"  raw upsert+notify @" + ll + " vs @" + ls + " rows", summarize(large.base),
                summarize(small.base)};
  Summary crc_small = time_reference_crc(small.keys, cfg.crc_runs_small);
  Summary crc_large = time_reference_crc(large.keys, cfg.crc_runs_large);
  Row crc{"  reference CRC per write @" + ll + " vs @" + ls, crc_large, crc_small};

  print_pair(("3. set at " + ll + " vs " + ls + " keys").c_str(), set_large.mine,
             ("syncconfig set @" + ll).c_str(), set_large.base, ("syncconfig set @" + ls).c_str());
  print_pair("", set_mid.mine, ("syncconfig set @" + lm).c_str(), set_mid.base,
             ("syncconfig set @" + ls).c_str());
  print_pair("   raw upsert", raw_large.mine, ("raw upsert+notify @" + ll).c_str(), raw_large.base,
             ("raw upsert+notify @" + ls).c_str());
  for (const Series& s : series) {
    std::printf("   set vs raw upsert+notify @%s: p50 %.2fx\n", count_label(s.keys).c_str(),
                summarize(s.mine).p50 / summarize(s.base).p50);
  }
  print_pair("   reference CRC recompute per write", crc.mine, ("sort+concat+crc32 @" + ll).c_str(),
             crc.base, ("sort+concat+crc32 @" + ls).c_str());
  std::printf("   syncconfig set @%s p50 %.1f us vs reference CRC alone @%s p50 %.1f us\n",
              ll.c_str(), set_large.mine.p50, ll.c_str(), crc_large.p50);
  std::fflush(stdout);
  return {set_large, set_mid, raw_large, crc};
}

// ---- 4. start-up -------------------------------------------------------------------------

// Store::open on a filled table (its objects in place, as every start after the first finds
// them; shutdown not timed) vs raw connect + `SELECT key, value::text` into a PGresult that is
// then cleared — every row over the wire into client memory, the least a start can do — and vs
// the SELECT alone on an open connection. One warm-up round, then `runs` rounds, interleaved.
std::vector<Row> bench_startup(const std::string& dsn, const FilledTable& t, int rows, int runs) {
  const auto opts = store_options(t.table);
  const std::string select = "SELECT key, value::text FROM " + t.table;
  auto raw_select = [&](PgConn& c) {
    PGresult* r = PQexec(c.get(), select.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != rows) bench::die(select);
    PQclear(r);
  };
  std::vector<double> mine, base, query_only;
  PgConn warm(dsn);
  for (int i = 0; i < runs + 1; ++i) {
    auto t0 = Clock::now();
    auto store = syncconfig::Store::open(dsn, opts);
    auto t1 = Clock::now();
    if (store->size() != static_cast<std::size_t>(rows)) bench::die("start-up: rows missing");
    store.reset();

    auto r0 = Clock::now();
    {
      PgConn c(dsn);
      raw_select(c);
    }
    auto r1 = Clock::now();
    raw_select(warm);
    auto r2 = Clock::now();
    if (i > 0) {  // The first round warms caches.
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(r1 - r0));
      query_only.push_back(micros(r2 - r1));
    }
  }
  const std::string n = count_label(rows);
  Row open{"start-up, " + n + " keys (open until ready)", summarize(mine), summarize(base)};
  Row query{"  Store::open " + n + " vs SELECT only", open.mine, summarize(query_only)};
  print_pair(("4. start-up, " + n + " rows").c_str(), open.mine, "Store::open", open.base,
             "raw connect+SELECT");
  print_pair("", query.mine, "Store::open", query.base, "raw SELECT (open conn)");
  return {open, query};
}

// Fixed cost of opening: Store::open on an empty table next to a bare connect.
Row bench_open_fixed_cost(const std::string& dsn, int runs) {
  auto opts = store_options("bench_open_empty");
  syncconfig::Store::open(dsn, opts).reset();  // Installs the objects.
  std::vector<double> mine, base;
  for (int i = 0; i < runs + 1; ++i) {
    auto e0 = Clock::now();
    auto store = syncconfig::Store::open(dsn, opts);
    auto e1 = Clock::now();
    store.reset();
    auto c0 = Clock::now();
    { PgConn c(dsn); }
    auto c1 = Clock::now();
    if (i > 0) {
      mine.push_back(micros(e1 - e0));
      base.push_back(micros(c1 - c0));
    }
  }
  Row fixed{"  Store::open, empty table vs connect", summarize(mine), summarize(base)};
  print_pair("   fixed cost (empty table)", fixed.mine, "Store::open, empty table", fixed.base,
             "raw connect");
  return fixed;
}

// ---- 5. memory per entry -------------------------------------------------------------------

// Heap growth from before Store::open until it is ready (mallinfo2: every arena, small and
// mmapped chunks; free memory trimmed first), per entry, next to the key + value text bytes per
// entry (octet_length of key and of value::text, what any cache must hold). RSS growth is
// printed as a cross-check. Nothing else runs in the process meanwhile.
Row bench_memory(const std::string& dsn, PgConn& admin, const FilledTable& t, int rows) {
  const double text = std::atof(
      admin.scalar("SELECT sum(octet_length(key) + octet_length(value::text)) FROM " + t.table)
          .c_str());
  const bench::MemoryProbe before = bench::probe_memory();
  auto store = syncconfig::Store::open(dsn, store_options(t.table));
  const bench::MemoryProbe after = bench::probe_memory();
  if (store->size() != static_cast<std::size_t>(rows)) bench::die("memory: rows missing");
  store->shutdown();
  const double heap = (after.heap_bytes - before.heap_bytes) / rows;
  const double rss = (after.rss_bytes - before.rss_bytes) / rows;
  const double text_per_entry = text / rows;
  const std::string n = count_label(rows);
  Summary mine{heap, heap, heap, heap, 1};
  Summary base{text_per_entry, text_per_entry, text_per_entry, text_per_entry, 1};
  Row row{"memory per entry, " + n + " entries (heap)", mine, base, Unit::kBytes};
  row.target = "heap - text <= 100 B/entry";
  row.met = bench::met_text(heap - text_per_entry <= 100);
  std::printf(
      "5. memory, %s entries: heap +%.1f MB (%.1f B/entry), RSS +%.1f MB (%.1f B/entry); key + "
      "value text %.1f B/entry; overhead (heap - text) %.1f B/entry\n",
      n.c_str(), (after.heap_bytes - before.heap_bytes) / 1e6, heap,
      (after.rss_bytes - before.rss_bytes) / 1e6, rss, text_per_entry, heap - text_per_entry);
  std::fflush(stdout);
  return row;
}

// ---- 8. catch-up after an outage vs a full reload --------------------------------------------

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

// ---- SQL profile (--sql-profile) -------------------------------------------------------------

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

// ---- 11. a transaction of 1,000 sets ----------------------------------------------------------

// A PostgreSQL array literal of text elements: {"a","b\"c"}.
std::string pg_text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// Waits (untimed) until the store's listener has consumed the echoes of its own writes up to
// `revision`, so that its work does not spill into the next series' timing. Gives up after 10 s.
void wait_for_echoes(const syncconfig::Store& store, int64_t revision) {
  for (auto t0 = Clock::now(); store.stats().revision < revision;) {
    if (Clock::now() - t0 > 10s) {
      std::printf("   WARNING: the store's listener did not reach revision %lld in 10 s\n",
                  static_cast<long long>(revision));
      return;
    }
    std::this_thread::sleep_for(200us);
  }
}

// Each round writes the same `txn_ops` keys (all existing after the warm-up round, so every
// write is an update) with new values, four ways, each timed until it returns:
//   - Store::commit of one Transaction with txn_ops sets (one call of the table's txn function);
//   - txn_ops Store::set calls, one after the other (txn_ops commits);
//   - raw: one prepared statement, `WITH u AS (INSERT INTO raw_txn SELECT k, v::jsonb FROM
//     unnest($1::text[], $2::text[]) ON CONFLICT (key) DO UPDATE ... RETURNING key) SELECT
//     count(pg_notify(channel, key)) FROM u`: one round trip, one transaction, one notification
//     per row (payload: the key, as figure 1's baseline), on a two-column table without triggers
//     or log; a raw LISTEN connection on that channel receives them, as the store's own listener
//     receives the echoes of its writes;
//   - diagnostic: the same transaction document sent to the txn function through plain libpq on
//     a table of its own with no listening instance (the database side alone).
// Between series, untimed, the listeners drain (the store's reaches the commit's revision, the
// raw listener has received every notification).
std::vector<Row> bench_txn(const std::string& dsn, PgConn& admin, const Config& cfg, bool profile) {
  const int n = cfg.txn_ops;
  create_raw_table(admin, "raw_txn", 0);
  FanIn raw_fan(1);
  RawListener raw_listener(dsn, "raw_txn_ch", [&raw_fan] { raw_fan.arrive(0); });
  PgConn raw(dsn);
  raw.prepare("bulk",
              "WITH u AS (INSERT INTO raw_txn (key, value) SELECT k, v::jsonb FROM "
              "unnest($1::text[], $2::text[]) AS u(k, v) ON CONFLICT (key) DO UPDATE SET value = "
              "EXCLUDED.value RETURNING key) SELECT count(pg_notify('raw_txn_ch', key)) FROM u",
              2);
  auto store = syncconfig::Store::open(dsn, store_options("bench_txn"));
  {
    syncconfig::Options o = store_options("bench_txn_sql");
    o.enable_notification = false;
    syncconfig::Store::open(dsn, o).reset();  // Creates the table, log and functions.
  }
  PgConn sql(dsn);
  sql.prepare("txn_fn",
              "SELECT kind, idx, k, rev, val FROM \"public\".\"bench_txn_sql_sc_txn\"($1::jsonb, "
              "'', '')",
              1);

  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back("t-" + std::to_string(i));
  SqlProfile prof(dsn, profile, "11. transaction of " + std::to_string(n) + " sets");
  std::vector<double> commit_us, singles_us, raw_us, fn_us;
  for (int round = 0; round < cfg.txn_rounds + 1; ++round) {  // Round 0 warms up.
    auto value = [&](int i) { return (round * n + i) % 1000000; };
    syncconfig::Transaction txn;
    std::vector<std::string> values;
    std::string doc = "{\"guards\":[],\"operations\":[";
    for (int i = 0; i < n; ++i) {
      txn.set(keys[i], nlohmann::json(value_string(value(i))));
      values.push_back(value_json_text(value(i)));
      doc += (i > 0 ? ",{\"key\":\"" : "{\"key\":\"") + keys[i] + "\",\"value\":" + values[i] + "}";
    }
    doc += "]}";
    const std::string key_array = pg_text_array(keys), value_array = pg_text_array(values);

    auto t0 = Clock::now();
    syncconfig::TxnResult r = store->commit(txn);
    auto t1 = Clock::now();
    if (!r) bench::die("txn: the transaction did not commit: " + r.reason);
    wait_for_echoes(*store, r.revision);

    raw_fan.expect(static_cast<uint64_t>(n));
    auto r0 = Clock::now();
    raw.exec_prepared("bulk", {key_array, value_array});
    auto r1 = Clock::now();
    raw_fan.wait_last();

    auto f0 = Clock::now();
    sql.exec_prepared("txn_fn", {doc});
    auto f1 = Clock::now();

    // The singles write the next values, so that each is a change too.
    int64_t last = 0;
    auto s0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      last = store->set(keys[i], nlohmann::json(value_string(value(i) + 1)));
    }
    auto s1 = Clock::now();
    wait_for_echoes(*store, last);
    if (round > 0) {
      commit_us.push_back(micros(t1 - t0));
      raw_us.push_back(micros(r1 - r0));
      fn_us.push_back(micros(f1 - f0));
      singles_us.push_back(micros(s1 - s0));
    }
  }
  store->shutdown();
  prof.report();

  // Keys per second, per round: the median in the p50 slot, the slowest round in the p99 slot.
  auto keys_per_second = [n](const std::vector<double>& us) {
    std::vector<double> v;
    for (double t : us) v.push_back(n * 1e6 / t);
    Summary s = summarize(v);
    s.p99 = *std::min_element(v.begin(), v.end());
    return s;
  };
  const std::string c = count_label(n);
  Row vs_singles{"txn of " + c + " sets (commit) vs " + c + " set calls, keys/s",
                 keys_per_second(commit_us), keys_per_second(singles_us), Unit::kOpsPerSecond};
  vs_singles.target = "median >= 20x";
  vs_singles.met = bench::met_text(vs_singles.mine.p50 >= 20 * vs_singles.base.p50);
  // Time per transaction (rounds: "p99" is the slowest of them when there are fewer than 100).
  Row vs_raw{"txn of " + c + " sets vs raw unnest upsert+notify", summarize(commit_us),
             summarize(raw_us)};
  ratio_target(vs_raw, 1.5, 0);
  Row fn{"  syncconfig's txn function via libpq vs raw", summarize(fn_us), vs_raw.base};
  Row client{"  Store::commit vs its txn function via libpq", vs_raw.mine, fn.mine};
  std::printf("11. transaction of %s sets, %d rounds (time per round; keys/s = %d / time)\n",
              c.c_str(), cfg.txn_rounds, n);
  print_pair("   commit vs raw", vs_raw.mine, "Store::commit", vs_raw.base,
             "raw unnest upsert+notify");
  print_pair("   commit vs set calls", vs_raw.mine, "Store::commit", summarize(singles_us),
             (c + " x Store::set").c_str());
  print_pair("   txn function (DB side)", fn.mine, "txn function via libpq", fn.base,
             "raw unnest upsert+notify");
  std::printf(
      "   keys/s (median / slowest round): commit %.0f / %.0f, set calls %.0f / %.0f, "
      "raw %.0f / %.0f; commit vs set calls %.1fx\n",
      vs_singles.mine.p50, vs_singles.mine.p99, vs_singles.base.p50, vs_singles.base.p99,
      keys_per_second(raw_us).p50, keys_per_second(raw_us).p99,
      vs_singles.mine.p50 / vs_singles.base.p50);
  std::fflush(stdout);
  return {vs_singles, vs_raw, fn, client};
}

// ---- 12. set_if vs set ------------------------------------------------------------------------

// One store, 100 rotating keys for set() and 100 others for set_if(), each set_if naming the
// revision its key's previous write returned (so every one succeeds: the figure is the cost of
// the check, not of a conflict). Sample by sample, alternating which of the two goes first.
Row bench_set_if(const std::string& dsn, const Config& cfg, bool profile) {
  auto store = syncconfig::Store::open(dsn, store_options("bench_setif"));
  constexpr int kKeys = 100;
  std::vector<std::string> plain, cas;
  std::vector<int64_t> revision(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    plain.push_back("s-" + std::to_string(k));
    cas.push_back("c-" + std::to_string(k));
    store->set(plain[k], nlohmann::json(value_string(0)));
    revision[k] = store->set(cas[k], nlohmann::json(value_string(0)));
  }
  SqlProfile prof(dsn, profile, "12. set_if vs set");
  std::vector<double> mine, base;
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    const int k = i % kKeys;
    const nlohmann::json v(value_string(i + 1));
    double set_us = 0, cas_us = 0;
    auto do_set = [&] {
      auto t0 = Clock::now();
      store->set(plain[k], v);
      set_us = micros(Clock::now() - t0);
    };
    auto do_cas = [&] {
      auto t0 = Clock::now();
      syncconfig::CasResult r = store->set_if(cas[k], v, revision[k]);
      cas_us = micros(Clock::now() - t0);
      if (!r) bench::die("setif: an unexpected conflict on " + cas[k]);
      revision[k] = r.revision;
    };
    if (i % 2 == 0) {
      do_set();
      do_cas();
    } else {
      do_cas();
      do_set();
    }
    if (i >= cfg.warmup) {
      mine.push_back(cas_us);
      base.push_back(set_us);
    }
  }
  store->shutdown();
  prof.report();
  Row row{"set_if (CAS, succeeds) vs set", summarize(mine), summarize(base)};
  ratio_target(row, 1.1, 0);
  print_pair("12. set_if vs set", row.mine, "Store::set_if (succeeds)", row.base, "Store::set");
  return row;
}

// ---- 4b. start-up next to an open transaction ------------------------------------------------

// Printed, not tabulated. A reader keeps a transaction open on the table for 1 s (a report, a
// pg_dump, an idle-in-transaction session). Control: a set() on a running instance meanwhile.
// Then a second instance starts, and a set() on the first instance is issued while it starts.
void diagnose_open_lock(const std::string& dsn) {
  constexpr auto kHold = std::chrono::milliseconds(1000);
  auto opts = store_options("bench_lock", "bench_lock_ch");
  auto first = syncconfig::Store::open(dsn, opts);
  first->set("x", 1);
  PgConn reader(dsn);
  reader.exec("BEGIN; SELECT count(*) FROM bench_lock");
  auto c0 = Clock::now();
  first->set("x", 2);
  double control_us = micros(Clock::now() - c0);

  auto start = Clock::now();
  std::thread committer([&] {
    std::this_thread::sleep_until(start + kHold);
    reader.exec("COMMIT");
  });
  double open_us = 0;
  std::thread opener([&] {
    auto t0 = Clock::now();
    auto second = syncconfig::Store::open(dsn, opts);
    open_us = micros(Clock::now() - t0);
  });
  std::this_thread::sleep_until(start + std::chrono::milliseconds(200));
  auto s0 = Clock::now();
  first->set("x", 3);
  double set_us = micros(Clock::now() - s0);
  opener.join();
  committer.join();
  std::printf("   next to a reader transaction held open for %lld ms:\n",
              static_cast<long long>(kHold.count()));
  std::printf("     %-66s %8.1f ms\n", "set() on a running instance, reader open",
              control_us / 1000);
  std::printf("     %-66s %8.1f ms\n",
              "Store::open of a second instance, started with the reader open", open_us / 1000);
  std::printf("     %-66s %8.1f ms\n",
              "set() on the running instance, issued 200 ms into that open", set_us / 1000);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  Config cfg;
  bool fsync = false;
  bool smoke = false;
  bool profile = false;
  int samples = 0;
  std::string only;       // Run one figure.
  std::string rows_from;  // Rows of the other driver, merged into the final table.
  std::vector<std::pair<std::string, std::string>> pg_settings;  // --pg-setting name=value
  const std::vector<std::string> figures = {"set",    "propagation", "scaling", "startup", "memory",
                                            "fanout", "throughput",  "catchup", "txn",     "setif"};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--fsync") {
      fsync = true;
    } else if (a == "--smoke") {
      smoke = true;
    } else if (a == "--sql-profile") {
      profile = true;
    } else if (a == "--pg-setting" && i + 1 < argc && std::strchr(argv[i + 1], '=') != nullptr) {
      const std::string kv = argv[++i];
      pg_settings.emplace_back(kv.substr(0, kv.find('=')), kv.substr(kv.find('=') + 1));
    } else if (a == "--only" && i + 1 < argc &&
               std::find(figures.begin(), figures.end(), argv[i + 1]) != figures.end()) {
      only = argv[++i];
    } else if (a == "--samples" && i + 1 < argc) {
      samples = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--rows-from" && i + 1 < argc) {
      rows_from = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--samples N] [--fsync] [--smoke] [--rows-from FILE] "
                   "[--sql-profile] [--pg-setting NAME=VALUE] [--only "
                   "set|propagation|scaling|startup|memory|fanout|"
                   "throughput|catchup|txn|setif]\n",
                   argv[0]);
      return 2;
    }
  }
  if (smoke) cfg.smoke();
  if (samples > 0) cfg.samples = samples;
  auto want = [&](const char* name) { return only.empty() || only == name; };

  try {
    // A temporary embedded cluster runs with fsync=off (synchronous_commit on); --fsync turns
    // fsync back on, so that commits wait for the disk as in production. The fan-out figure
    // holds 51 stores (a listener each, the writer's pool) and 51 raw connections at once.
    syncconfig::EmbeddedPostgresOptions pg_options;
    pg_options.settings["max_connections"] = "400";
    if (fsync) pg_options.settings["fsync"] = "on";
    if (profile) {
      pg_options.settings["shared_preload_libraries"] = "pg_stat_statements";
      pg_options.settings["pg_stat_statements.track"] = "all";
      pg_options.settings["track_functions"] = "pl";
    }
    for (const auto& [name, value] : pg_settings) pg_options.settings[name] = value;
    syncconfig::EmbeddedPostgres pg(pg_options);
    pg.start();
    const std::string dsn = pg.dsn();
    PgConn admin(dsn);
    if (profile) admin.exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    std::printf(
        "PostgreSQL %s (embedded, temporary cluster; fsync=%s, synchronous_commit=%s)%s, %d "
        "samples per latency figure, %d warm-up\n\n",
        admin.scalar("SHOW server_version").c_str(), admin.scalar("SHOW fsync").c_str(),
        admin.scalar("SHOW synchronous_commit").c_str(), smoke ? " SMOKE RUN (tiny sizes)" : "",
        cfg.samples, cfg.warmup);

    // The large tables, filled before any store listens (see fill_store_table).
    std::map<int, FilledTable> filled;
    std::set<int> sizes;
    if (want("scaling")) sizes.insert({cfg.small_keys, cfg.mid_keys, cfg.large_keys});
    if (want("startup")) sizes.insert({cfg.mid_keys, cfg.large_keys});
    if (want("memory") || want("catchup")) sizes.insert(cfg.large_keys);
    for (int n : sizes) {
      filled[n] = fill_store_table(dsn, admin, n);
      std::printf("fill: %s rows into %s through its triggers (one INSERT ... SELECT): %.2f s\n",
                  count_label(n).c_str(), filled[n].table.c_str(), filled[n].fill_seconds);
    }
    if (!sizes.empty()) {
      // Should be ~0: with nobody listening, the fill's notifications are dropped at its commit
      // (otherwise the first listener would have to read through them).
      std::printf("notification queue usage after the fills: %s\n\n",
                  admin.scalar("SELECT pg_notification_queue_usage()").c_str());
    }

    std::vector<Row> rows;
    auto add = [&rows](std::vector<Row> more) {
      for (Row& r : more) rows.push_back(std::move(r));
    };
    if (want("set")) {
      {
        SqlProfile prof(dsn, profile, "1. set (its four series)");
        add(bench_set(dsn, admin, cfg));
      }
      diagnose_set(dsn);
    }
    if (want("propagation")) rows.push_back(bench_propagation(dsn, admin, cfg));
    // get_int (the Google Benchmark driver) belongs here in the issue's order.
    if (!rows_from.empty()) add(bench::read_rows(rows_from));
    if (want("scaling")) add(bench_set_scaling(dsn, admin, cfg, filled));
    if (want("startup")) {
      add(bench_startup(dsn, filled.at(cfg.mid_keys), cfg.mid_keys, cfg.startup_runs));
      std::vector<Row> large =
          bench_startup(dsn, filled.at(cfg.large_keys), cfg.large_keys, cfg.startup_runs_large);
      large[0].target = "p50 <= 3 s and <= 2x";
      large[0].met =
          bench::met_text(large[0].mine.p50 <= 3e6 && large[0].mine.p50 <= 2 * large[0].base.p50);
      add(std::move(large));
      rows.push_back(bench_open_fixed_cost(dsn, cfg.startup_runs));
      diagnose_open_lock(dsn);
    }
    if (want("memory")) {
      rows.push_back(bench_memory(dsn, admin, filled.at(cfg.large_keys), cfg.large_keys));
    }
    if (want("fanout")) rows.push_back(bench_fanout_figure(dsn, admin, cfg));
    if (want("throughput")) {
      SqlProfile prof(dsn, profile, "7. write throughput (its three series)");
      add(bench_throughput(dsn, admin, cfg));
    }
    if (want("catchup")) {
      add(bench_catch_up(dsn, admin, cfg, filled.at(cfg.large_keys), cfg.large_keys));
    }
    if (want("txn")) add(bench_txn(dsn, admin, cfg, profile));
    if (want("setif")) rows.push_back(bench_set_if(dsn, cfg, profile));
    bench::print_table(rows);
  } catch (const syncconfig::Error& e) {
    std::fprintf(stderr, "syncconfig error: %s\n", e.what());
    return 1;
  }
  return 0;
}
