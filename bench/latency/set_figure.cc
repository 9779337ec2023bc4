// Figure 1, set() next to a raw upsert + pg_notify, and 1b, where its time goes on the server.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {

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

}  // namespace latency
