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
#include <spdlog/spdlog.h>
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/syncconfig.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "latency/common.h"
#include "latency/figures.h"

using namespace latency;

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
    // get_int (the Google Benchmark driver) belongs here in the order.
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
