// The figures of syncconfig_latency, one function each (main.cc runs them in the issues' order;
// each file says how its figure is measured). A function returning rows prints its series as it
// goes; the rows go into the final table. A diagnose_* function only prints.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "latency/common.h"

namespace latency {

// 1. set() next to a prepared upsert + pg_notify; 1b. where set's time goes on the server.
std::vector<Row> bench_set(const std::string& dsn, PgConn& admin, const Config& cfg);
void diagnose_set(const std::string& dsn);

// 2. propagation to one other store; 6. fan-out to `fanout_readers` stores.
Row bench_propagation(const std::string& dsn, PgConn& admin, const Config& cfg);
Row bench_fanout_figure(const std::string& dsn, PgConn& admin, const Config& cfg);

// 3. set() at the three table sizes, next to the reference's per-write CRC recompute.
std::vector<Row> bench_set_scaling(const std::string& dsn, PgConn& admin, const Config& cfg,
                                   const std::map<int, FilledTable>& filled);

// 4. Store::open on a filled table, and its fixed cost on an empty one; 4b. start-up next to an
// open transaction; 5. memory per entry.
std::vector<Row> bench_startup(const std::string& dsn, const FilledTable& t, int rows, int runs);
Row bench_open_fixed_cost(const std::string& dsn, int runs);
void diagnose_open_lock(const std::string& dsn);
Row bench_memory(const std::string& dsn, PgConn& admin, const FilledTable& t, int rows);

// 7. write throughput of `writers` threads.
std::vector<Row> bench_throughput(const std::string& dsn, PgConn& admin, const Config& cfg);

// 8. catch-up after an outage next to a full reload.
std::vector<Row> bench_catch_up(const std::string& dsn, PgConn& admin, const Config& cfg,
                                const FilledTable& t, int rows);

// 11. a transaction of `txn_ops` sets; 12. set_if() next to set(). `profile`: --sql-profile.
std::vector<Row> bench_txn(const std::string& dsn, PgConn& admin, const Config& cfg, bool profile);
Row bench_set_if(const std::string& dsn, const Config& cfg, bool profile);

}  // namespace latency
