// syncconfig_latency: end-to-end latencies of syncconfig next to raw libpq baselines, measured
// in the same process against the same embedded PostgreSQL server, interleaved sample by sample
// so that both sides see the same machine noise.
//
//   1. set()            vs a prepared one-statement upsert + pg_notify
//   2. propagation      set() on store A until store B's callback runs
//                       vs upsert + pg_notify on conn A until LISTEN conn B receives it
//   3. set() at 100k vs 1k existing keys (and the same for the raw upsert), next to the
//      reference service's per-write CRC recompute at 1k and 100k entries
//   4. Store::open on 100k rows vs connect + SELECT key, value::text through libpq
//
// Diagnostics printed (not tabulated): where set()'s server time goes (EXPLAIN ANALYZE per
// trigger, WAL bytes and HOT updates per write), and Store::open next to an open transaction.
//
// Usage: syncconfig_latency [--samples N] [--fsync] [--only set|propagation|scaling|startup]
//   N samples per figure (default 2000; start-up always uses 5 runs); --fsync runs the server
//   with fsync=on (default: the temporary embedded cluster's fsync=off).
#include <poll.h>
#include <spdlog/spdlog.h>
#include <syncconfig/syncconfig.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bench_util.h"

namespace {

using bench::Clock;
using bench::micros;
using bench::PgConn;
using bench::summarize;
using bench::Summary;

constexpr int kWarmup = 200;
constexpr int kStartupRuns = 5;

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

// A table with the reference service's schema, filled with n rows ('k1'..'kn', values 1..n).
void create_filled_table(PgConn& admin, const std::string& table, int n) {
  admin.exec("DROP TABLE IF EXISTS " + table);
  admin.exec("CREATE TABLE " + table +
             " (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL, "
             "updated_at TIMESTAMP NOT NULL DEFAULT NOW())");
  if (n > 0) {
    admin.exec("INSERT INTO " + table + " (key, value) SELECT 'k' || i, to_jsonb(i) " +
               "FROM generate_series(1, " + std::to_string(n) + ") AS i");
  }
  admin.exec("VACUUM ANALYZE " + table);
}

// Raw baseline table: just key and value, no triggers.
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

struct Row {
  std::string figure;
  Summary mine;
  Summary base;
};

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

// ---- 1. set() vs raw upsert + notify ------------------------------------------------------

std::vector<Row> bench_set(const std::string& dsn, PgConn& admin, int samples) {
  create_raw_table(admin, "raw_kv", 0);
  PgConn raw(dsn);
  raw.prepare("upsert", raw_upsert_sql("raw_kv", "raw_ch"), 2);
  auto store = syncconfig::Store::open(dsn, store_options("bench_set", "bench_set_ch"));

  // Decomposition: syncconfig's own upsert statement (as in src/db/table_sql.cc) run through
  // plain libpq on a table that has syncconfig's triggers but no listening instance. Its
  // difference to the raw baseline is the database-side cost of the triggers; its difference
  // to Store::set is the client side (validation, pool, parsing/hashing the returned value,
  // cache update, and the writer's own listener consuming the echo).
  {
    syncconfig::Options o = store_options("bench_set_sql", "bench_set_sql_ch");
    o.enable_notification = false;
    syncconfig::Store::open(dsn, o).reset();  // Creates the table, triggers and sequence.
  }
  // And the same Store::set with enable_notification = false (no listening connection): its
  // difference to Store::set is what the writer's own listener costs while the write is timed.
  syncconfig::Options quiet = store_options("bench_set_quiet", "bench_set_quiet_ch");
  quiet.enable_notification = false;
  auto quiet_store = syncconfig::Store::open(dsn, quiet);
  // Its own connection: every measured series uses a backend of its own, idle while the other
  // series run, as the store's pooled connection is (a backend that just ran is warmer).
  PgConn sql_conn(dsn);
  sql_conn.prepare("store_sql",
                   "INSERT INTO \"public\".\"bench_set_sql\" (key, value) VALUES ($1, $2::jsonb) "
                   "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                   "RETURNING revision, value::text",
                   2);

  constexpr int kKeys = 100;  // Rotating keys: after the warm-up every write is an update.
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) keys.push_back("key-" + std::to_string(k));

  std::vector<double> mine, base, sql, no_listen;
  for (int i = 0; i < kWarmup + samples; ++i) {
    const std::string& key = keys[i % kKeys];
    auto t0 = Clock::now();
    store->set(key, nlohmann::json(value_string(i)));
    auto t1 = Clock::now();
    raw.exec_prepared("upsert", {key, value_json_text(i)});
    auto t2 = Clock::now();
    sql_conn.exec_prepared("store_sql", {key, value_json_text(i)});
    auto t3 = Clock::now();
    quiet_store->set(key, nlohmann::json(value_string(i)));
    auto t4 = Clock::now();
    if (i >= kWarmup) {
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(t2 - t1));
      sql.push_back(micros(t3 - t2));
      no_listen.push_back(micros(t4 - t3));
    }
  }
  Row row{"set (small value, existing key)", summarize(mine), summarize(base)};
  Row triggers{"  syncconfig's upsert SQL+triggers via libpq", summarize(sql), row.base};
  Row client{"  Store::set vs its own SQL via libpq", row.mine, triggers.mine};
  Row quiet_row{"  Store::set, notifications off vs SQL", summarize(no_listen), triggers.mine};
  print_pair("1. set", row.mine, "syncconfig Store::set", row.base, "raw upsert+notify");
  print_pair("   triggers (DB side)", triggers.mine, "syncconfig SQL via libpq", triggers.base,
             "raw upsert+notify");
  print_pair("   client side", client.mine, "syncconfig Store::set", client.base,
             "syncconfig SQL via libpq");
  print_pair("   without listener", quiet_row.mine, "Store::set, notifications off", quiet_row.base,
             "syncconfig SQL via libpq");
  return {row, triggers, client, quiet_row};
}

// ---- 1b. where set's time goes, on the server ----------------------------------------------

// Printed, not tabulated: per-trigger executor time (EXPLAIN ANALYZE), HOT updates and WAL bytes
// per write, for syncconfig's upsert on a table with its triggers (bench_set_sql) and for the raw
// upsert on raw_kv. Run after bench_set(), which creates both tables.
void diagnose_set(const std::string& dsn) {
  constexpr int kRuns = 300;
  const std::string store_sql =
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
  for (const auto& [name, sql] :
       {std::pair{"syncconfig upsert", store_sql}, {"raw upsert", raw_sql}}) {
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
       {std::tuple{"syncconfig upsert", store_sql, "bench_set_sql"},
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

// ---- 2. propagation -----------------------------------------------------------------------

struct Arrival {
  std::mutex mu;
  std::condition_variable cv;
  std::string value;     // Last value seen (store) ...
  uint64_t count = 0;    // ... or number of notifications seen (raw).
  Clock::time_point t1;  // When it was seen.
};

// LISTEN connection B of the raw baseline: poll + PQconsumeInput + PQnotifies in a thread.
class RawListener {
 public:
  RawListener(const std::string& dsn, const std::string& channel, Arrival& arrival)
      : conn_(dsn), arrival_(arrival) {
    conn_.exec("LISTEN " + channel);
    thread_ = std::thread([this] { run(); });
  }
  ~RawListener() {
    stop_.store(true);
    thread_.join();
  }

 private:
  void run() {
    PGconn* c = conn_.get();
    while (!stop_.load()) {
      pollfd p{PQsocket(c), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (!PQconsumeInput(c)) bench::die(std::string("listener: ") + PQerrorMessage(c));
      while (PGnotify* n = PQnotifies(c)) {
        auto t1 = Clock::now();
        PQfreemem(n);
        {
          std::lock_guard lock(arrival_.mu);
          arrival_.t1 = t1;
          ++arrival_.count;
        }
        arrival_.cv.notify_one();
      }
    }
  }
  PgConn conn_;
  Arrival& arrival_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Row bench_propagation(const std::string& dsn, PgConn& admin, int samples) {
  create_raw_table(admin, "raw_prop", 0);
  PgConn raw_a(dsn);
  raw_a.prepare("upsert", raw_upsert_sql("raw_prop", "raw_prop_ch"), 2);
  Arrival raw_arrival;
  RawListener raw_b(dsn, "raw_prop_ch", raw_arrival);

  auto opts = store_options("bench_prop", "bench_prop_ch");
  auto a = syncconfig::Store::open(dsn, opts);
  auto b = syncconfig::Store::open(dsn, opts);
  Arrival store_arrival;
  b->subscribe([&](const syncconfig::Change& c) {
    auto t1 = Clock::now();
    if (c.key != "prop" || !c.value || !c.value->is_string()) return;
    {
      std::lock_guard lock(store_arrival.mu);
      store_arrival.t1 = t1;
      store_arrival.value = c.value->get<std::string>();
    }
    store_arrival.cv.notify_one();
  });

  auto wait = [](Arrival& arr, auto done) {
    std::unique_lock lock(arr.mu);
    if (!arr.cv.wait_for(lock, std::chrono::seconds(10), [&] { return done(); })) {
      bench::die("propagation: nothing arrived within 10 s");
    }
    return arr.t1;
  };

  std::vector<double> mine, base;
  uint64_t raw_expected = 0;
  for (int i = 0; i < kWarmup + samples; ++i) {
    const std::string value = value_string(i);
    auto t0 = Clock::now();
    a->set("prop", nlohmann::json(value));
    auto t1 = wait(store_arrival, [&] { return store_arrival.value == value; });
    double store_us = micros(t1 - t0);

    ++raw_expected;
    auto r0 = Clock::now();
    raw_a.exec_prepared("upsert", {"prop", value_json_text(i)});
    auto r1 = wait(raw_arrival, [&] { return raw_arrival.count >= raw_expected; });
    if (i >= kWarmup) {
      mine.push_back(store_us);
      base.push_back(micros(r1 - r0));
    }
  }
  Row row{"propagation A.set -> B callback", summarize(mine), summarize(base)};
  print_pair("2. propagation", row.mine, "set on A -> callback on B", row.base,
             "upsert+notify A -> LISTEN B");
  return row;
}

// ---- 3. set() at 1k vs 100k keys, and the reference's CRC recompute ---------------------

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
  for (int i = 0; i < runs + 3; ++i) {
    data["k1"] = std::to_string(i);  // The write that triggers the recompute.
    auto t0 = Clock::now();
    sink = sink + reference_crc(data);
    auto t1 = Clock::now();
    if (i >= 3) t.push_back(micros(t1 - t0));
  }
  return summarize(t);
}

std::vector<Row> bench_set_scaling(const std::string& dsn, PgConn& admin, int samples) {
  constexpr int kSmall = 1000;
  constexpr int kLarge = 100000;
  // Pre-filled before the stores are opened (the stores adopt the reference schema).
  create_filled_table(admin, "bench_keys_1k", kSmall);
  create_filled_table(admin, "bench_keys_100k", kLarge);
  create_raw_table(admin, "raw_keys_1k", kSmall);
  create_raw_table(admin, "raw_keys_100k", kLarge);
  auto small = syncconfig::Store::open(dsn, store_options("bench_keys_1k", "bench_keys_1k_ch"));
  auto large = syncconfig::Store::open(dsn, store_options("bench_keys_100k", "bench_keys_100k_ch"));
  if (small->size() != kSmall || large->size() != kLarge) bench::die("pre-fill not loaded");
  PgConn raw_small(dsn);  // One connection (backend) per series, like the two stores.
  PgConn raw_large(dsn);
  raw_small.prepare("up_small", raw_upsert_sql("raw_keys_1k", "raw_keys_ch"), 2);
  raw_large.prepare("up_large", raw_upsert_sql("raw_keys_100k", "raw_keys_ch"), 2);

  std::mt19937 rng(42);
  std::vector<double> s_small, s_large, r_small, r_large;
  for (int i = 0; i < kWarmup + samples; ++i) {
    std::string ks = "k" + std::to_string(1 + rng() % kSmall);
    std::string kl = "k" + std::to_string(1 + rng() % kLarge);
    auto t0 = Clock::now();
    small->set(ks, nlohmann::json(value_string(i)));
    auto t1 = Clock::now();
    large->set(kl, nlohmann::json(value_string(i)));
    auto t2 = Clock::now();
    raw_small.exec_prepared("up_small", {ks, value_json_text(i)});
    auto t3 = Clock::now();
    raw_large.exec_prepared("up_large", {kl, value_json_text(i)});
    auto t4 = Clock::now();
    if (i >= kWarmup) {
      s_small.push_back(micros(t1 - t0));
      s_large.push_back(micros(t2 - t1));
      r_small.push_back(micros(t3 - t2));
      r_large.push_back(micros(t4 - t3));
    }
  }
  Row set_scaling{"set @100k keys vs @1k keys", summarize(s_large), summarize(s_small)};
  Row raw_scaling{"raw upsert+notify @100k vs @1k rows", summarize(r_large), summarize(r_small)};
  print_pair("3. set at 100k vs 1k keys", set_scaling.mine, "syncconfig set @100k",
             set_scaling.base, "syncconfig set @1k");
  print_pair("   raw upsert at 100k vs 1k rows", raw_scaling.mine, "raw upsert+notify @100k",
             raw_scaling.base, "raw upsert+notify @1k");
  std::printf("   set @1k vs raw @1k: p50 %.2fx; set @100k vs raw @100k: p50 %.2fx\n",
              set_scaling.base.p50 / raw_scaling.base.p50,
              set_scaling.mine.p50 / raw_scaling.mine.p50);

  Summary crc_small = time_reference_crc(kSmall, 500);
  Summary crc_large = time_reference_crc(kLarge, 40);
  Row crc{"reference CRC recompute/write 100k vs 1k", crc_large, crc_small};
  print_pair("   reference CRC recompute per write", crc.mine, "sort+concat+crc32 @100k", crc.base,
             "sort+concat+crc32 @1k");
  std::printf("   syncconfig set @100k p50 %.1f us vs reference CRC alone @100k p50 %.1f us\n",
              set_scaling.mine.p50, crc_large.p50);
  std::fflush(stdout);
  return {set_scaling, raw_scaling, crc};
}

// ---- 4. start-up --------------------------------------------------------------------------

std::vector<Row> bench_startup(const std::string& dsn, PgConn& admin) {
  constexpr int kRows = 100000;
  create_filled_table(admin, "bench_open", kRows);
  auto opts = store_options("bench_open", "bench_open_ch");
  // The first open creates the protocol's objects (indexes, triggers, revision column); the
  // timed opens find them in place, as every start after the first does.
  syncconfig::Store::open(dsn, opts).reset();
  admin.exec("VACUUM ANALYZE bench_open");
  const std::string select = "SELECT key, value::text FROM bench_open";

  auto empty_opts = store_options("bench_open_empty", "bench_open_empty_ch");
  syncconfig::Store::open(dsn, empty_opts).reset();

  std::vector<double> mine, base, query_only, empty, connect;
  PgConn warm(dsn);
  for (int i = 0; i < kStartupRuns + 1; ++i) {
    auto t0 = Clock::now();
    auto store = syncconfig::Store::open(dsn, opts);
    auto t1 = Clock::now();
    if (store->size() != kRows) bench::die("start-up: rows missing");
    store.reset();  // Shutdown is not part of the timing.

    auto r0 = Clock::now();
    {
      PgConn c(dsn);
      PGresult* r = PQexec(c.get(), select.c_str());
      if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != kRows) bench::die("select");
      PQclear(r);
    }
    auto r1 = Clock::now();
    PGresult* r = PQexec(warm.get(), select.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK) bench::die("select");
    PQclear(r);
    auto r2 = Clock::now();

    // Fixed cost of opening: the same on an empty table, next to a bare connect.
    auto e0 = Clock::now();
    auto empty_store = syncconfig::Store::open(dsn, empty_opts);
    auto e1 = Clock::now();
    empty_store.reset();
    auto c0 = Clock::now();
    { PgConn c(dsn); }
    auto c1 = Clock::now();
    if (i > 0) {  // The first round warms caches.
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(r1 - r0));
      query_only.push_back(micros(r2 - r1));
      empty.push_back(micros(e1 - e0));
      connect.push_back(micros(c1 - c0));
    }
  }
  Row open{"Store::open, 100k rows", summarize(mine), summarize(base)};
  Row query{"  Store::open vs SELECT only (open conn)", open.mine, summarize(query_only)};
  Row fixed{"  Store::open, empty table vs connect", summarize(empty), summarize(connect)};
  print_pair("4. start-up, 100k rows", open.mine, "Store::open", open.base, "raw connect+SELECT");
  print_pair("", query.mine, "Store::open", query.base, "raw SELECT (open conn)");
  print_pair("   fixed cost (empty table)", fixed.mine, "Store::open, empty table", fixed.base,
             "raw connect");
  return {open, query, fixed};
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

std::string fmt_us(double us) {
  char buf[32];
  if (us >= 10000) {
    std::snprintf(buf, sizeof buf, "%.1f ms", us / 1000);
  } else if (us >= 1000) {
    std::snprintf(buf, sizeof buf, "%.2f ms", us / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f us", us);
  }
  return buf;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-42s | %-21s | %-21s | %s\n", "figure", "syncconfig p50 / p99",
              "baseline p50 / p99", "ratio p50 / p99");
  std::printf("%s\n", std::string(42, '-')
                          .append(" | ")
                          .append(21, '-')
                          .append(" | ")
                          .append(21, '-')
                          .append(" | ")
                          .append(15, '-')
                          .c_str());
  for (const Row& r : rows) {
    std::string a = fmt_us(r.mine.p50) + " / " + fmt_us(r.mine.p99);
    std::string b = fmt_us(r.base.p50) + " / " + fmt_us(r.base.p99);
    std::printf("%-42s | %-21s | %-21s | %.2fx / %.2fx\n", r.figure.c_str(), a.c_str(), b.c_str(),
                r.mine.p50 / r.base.p50, r.mine.p99 / r.base.p99);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  int samples = 2000;
  bool fsync = false;
  std::string only;  // Run one figure: set, propagation, scaling or startup.
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--fsync") {
      fsync = true;
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--samples" && i + 1 < argc) {
      samples = std::max(10, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--samples N] [--fsync] [--only set|propagation|scaling|startup]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    // A temporary embedded cluster runs with fsync=off (synchronous_commit on); --fsync turns
    // fsync back on, so that commits wait for the disk as in production.
    syncconfig::EmbeddedPostgresOptions pg_options;
    if (fsync) pg_options.settings["fsync"] = "on";
    syncconfig::EmbeddedPostgres pg(pg_options);
    pg.start();
    const std::string dsn = pg.dsn();
    PgConn admin(dsn);
    {
      PGresult* v = PQexec(admin.get(), "SHOW server_version");
      PGresult* f = PQexec(admin.get(), "SHOW fsync");
      PGresult* sc = PQexec(admin.get(), "SHOW synchronous_commit");
      std::printf(
          "PostgreSQL %s (embedded, temporary cluster; fsync=%s, synchronous_commit=%s), "
          "%d samples per figure, %d warm-up\n\n",
          PQgetvalue(v, 0, 0), PQgetvalue(f, 0, 0), PQgetvalue(sc, 0, 0), samples, kWarmup);
      PQclear(v);
      PQclear(f);
      PQclear(sc);
    }

    std::vector<Row> rows;
    auto want = [&](const char* name) { return only.empty() || only == name; };
    if (want("set")) {
      for (Row& r : bench_set(dsn, admin, samples)) rows.push_back(std::move(r));
      diagnose_set(dsn);
    }
    if (want("propagation")) rows.push_back(bench_propagation(dsn, admin, samples));
    if (want("scaling")) {
      for (Row& r : bench_set_scaling(dsn, admin, samples)) rows.push_back(std::move(r));
    }
    if (want("startup")) {
      for (Row& r : bench_startup(dsn, admin)) rows.push_back(std::move(r));
      diagnose_open_lock(dsn);
    }
    print_table(rows);
  } catch (const syncconfig::Error& e) {
    std::fprintf(stderr, "syncconfig error: %s\n", e.what());
    return 1;
  }
  return 0;
}
