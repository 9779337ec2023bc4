// Figure 7: write throughput of 8 threads on one store next to 8 raw connections.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {

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

}  // namespace latency
