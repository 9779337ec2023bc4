// syncconfig_bench: Google Benchmark of the read path.
//
// Store::get_int on a present key, 1 and 2 threads, vs a bare
// std::unordered_map<std::string, int64_t>::find on the same key.
//
// The store is opened once, on an embedded PostgreSQL, on a table pre-filled with kKeys rows;
// the baseline map holds the same keys. Every benchmark runs kRepetitions times; the summary at
// the end prints the median (and the slowest) repetition of each, with the ratio.
//
// --rows-out FILE appends the get_int rows of the final results table (see bench_util.h) to FILE,
// for syncconfig_latency --rows-from FILE to print with the other figures. --smoke runs each
// benchmark briefly (checks that it works; its numbers mean nothing).
//
// With ->Threads(2)->UseRealTime(), Google Benchmark reports the wall time divided by the
// iterations of both threads together: "ns/op" is the inverse of the aggregate throughput, and
// items/s is the aggregate throughput. Perfect scaling would halve ns/op from 1 to 2 threads.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/syncconfig.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bench_util.h"

namespace {

constexpr int kKeys = 1000;  // Keys besides the one read.
constexpr int kRepetitions = 5;
constexpr std::string_view kKey = "feature:max_users";

std::unique_ptr<syncconfig::Store> g_store;
std::unordered_map<std::string, int64_t> g_map;

void BM_syncconfig_get_int(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(g_store->get_int(kKey, -1));
  }
  state.SetItemsProcessed(state.iterations());
}

// Diagnostic: the same find under a std::shared_lock on a std::shared_mutex, the way the store's
// cache guards its map. Shows how much of get_int's cost (and of its 2-thread scaling) is the
// reader lock itself: every lock_shared/unlock_shared is an atomic read-modify-write on one
// shared cache line.
std::shared_mutex g_mu;

void BM_shared_mutex_map_find(benchmark::State& state) {
  const std::string key(kKey);
  for (auto _ : state) {
    std::shared_lock lock(g_mu);
    auto it = g_map.find(key);
    int64_t v = it == g_map.end() ? -1 : it->second;
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_unordered_map_find(benchmark::State& state) {
  const std::string key(kKey);
  for (auto _ : state) {
    auto it = g_map.find(key);
    int64_t v = it == g_map.end() ? -1 : it->second;
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

BENCHMARK(BM_syncconfig_get_int)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true)
    ->ComputeStatistics("max", max_of);
BENCHMARK(BM_shared_mutex_map_find)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true)
    ->ComputeStatistics("max", max_of);
BENCHMARK(BM_unordered_map_find)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true)
    ->ComputeStatistics("max", max_of);

// Console output as usual, and keeps the median and max aggregates for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  explicit SummaryReporter(bool color) : ConsoleReporter(color ? OO_ColorTabular : OO_Tabular) {}
  struct Figure {
    double ns = 0;  // Adjusted real time per iteration, ns.
    double items_per_s = 0;
  };
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Aggregate) continue;
      if (r.aggregate_name != "median" && r.aggregate_name != "max") continue;
      Figure f;
      f.ns = r.GetAdjustedRealTime();  // Time unit: ns (the default).
      auto it = r.counters.find("items_per_second");
      if (it != r.counters.end()) f.items_per_s = it->second.value;
      results_[{r.run_name.function_name, r.threads, r.aggregate_name}] = f;
    }
  }
  Figure get(const std::string& fn, int threads, const std::string& agg) const {
    auto it = results_.find({fn, threads, agg});
    return it == results_.end() ? Figure{} : it->second;
  }

 private:
  std::map<std::tuple<std::string, int, std::string>, Figure> results_;
};

void print_summary(const SummaryReporter& rep) {
  std::printf("\n%-42s | %-21s | %-21s | %s\n", "figure (ns/op: median / max of 5 reps)",
              "syncconfig", "unordered_map::find", "ratio median / max");
  std::printf("%s\n", std::string(42, '-')
                          .append(" | ")
                          .append(21, '-')
                          .append(" | ")
                          .append(21, '-')
                          .append(" | ")
                          .append(18, '-')
                          .c_str());
  for (int threads : {1, 2}) {
    auto m = rep.get("BM_syncconfig_get_int", threads, "median");
    auto mx = rep.get("BM_syncconfig_get_int", threads, "max");
    auto bm = rep.get("BM_unordered_map_find", threads, "median");
    auto bx = rep.get("BM_unordered_map_find", threads, "max");
    char fig[64], a[32], b[32];
    std::snprintf(fig, sizeof fig, "get_int, %d thread%s", threads, threads > 1 ? "s" : "");
    std::snprintf(a, sizeof a, "%.1f / %.1f ns", m.ns, mx.ns);
    std::snprintf(b, sizeof b, "%.1f / %.1f ns", bm.ns, bx.ns);
    std::printf("%-42s | %-21s | %-21s | %.2fx / %.2fx\n", fig, a, b, m.ns / bm.ns, mx.ns / bx.ns);
    std::printf("%-42s | %-21s | %-21s |\n", "  aggregate items/s (median)",
                (std::to_string(static_cast<long long>(m.items_per_s / 1e6)) + " M/s").c_str(),
                (std::to_string(static_cast<long long>(bm.items_per_s / 1e6)) + " M/s").c_str());
  }
  for (int threads : {1, 2}) {
    auto m = rep.get("BM_shared_mutex_map_find", threads, "median");
    auto mx = rep.get("BM_shared_mutex_map_find", threads, "max");
    auto bm = rep.get("BM_unordered_map_find", threads, "median");
    auto bx = rep.get("BM_unordered_map_find", threads, "max");
    char fig[64], a[32], b[32];
    std::snprintf(fig, sizeof fig, "  diag: find under shared_lock, %d thr", threads);
    std::snprintf(a, sizeof a, "%.1f / %.1f ns", m.ns, mx.ns);
    std::snprintf(b, sizeof b, "%.1f / %.1f ns", bm.ns, bx.ns);
    std::printf("%-42s | %-21s | %-21s | %.2fx / %.2fx\n", fig, a, b, m.ns / bm.ns, mx.ns / bx.ns);
  }
  auto scaling = [&](const char* fn) {
    return rep.get(fn, 2, "median").items_per_s / rep.get(fn, 1, "median").items_per_s;
  };
  std::printf(
      "scaling 1 -> 2 threads (aggregate throughput): get_int %.2fx, find under shared_lock "
      "%.2fx, bare find %.2fx\n",
      scaling("BM_syncconfig_get_int"), scaling("BM_shared_mutex_map_find"),
      scaling("BM_unordered_map_find"));
  if (scaling("BM_unordered_map_find") < 1.5) {
    std::printf(
        "WARNING: the bare find did not scale to 2 threads: the second CPU was busy, so the "
        "2-thread figures are not meaningful. Rerun on a quiet machine.\n");
  }
  std::fflush(stdout);
}

// The get_int rows of the final table: ns/op, median and slowest of the repetitions.
std::vector<bench::Row> table_rows(const SummaryReporter& rep) {
  std::vector<bench::Row> rows;
  auto summary = [&](const char* fn, int threads) {
    bench::Summary s;
    s.p50 = rep.get(fn, threads, "median").ns;
    s.p99 = rep.get(fn, threads, "max").ns;
    s.n = kRepetitions;
    return s;
  };
  bench::Row one("get_int, 1 thread (ns/op)", summary("BM_syncconfig_get_int", 1),
                 summary("BM_unordered_map_find", 1), bench::Unit::kNanos);
  one.target = "p50 <= 50 ns";
  one.met = bench::met_text(one.mine.p50 <= 50);
  const double scaling = rep.get("BM_syncconfig_get_int", 2, "median").items_per_s /
                         rep.get("BM_syncconfig_get_int", 1, "median").items_per_s;
  char name[64];
  std::snprintf(name, sizeof name, "get_int, 2 threads (ns/op total; %.2fx 1 thr)", scaling);
  bench::Row two(name, summary("BM_syncconfig_get_int", 2), summary("BM_unordered_map_find", 2),
                 bench::Unit::kNanos);
  two.target = "throughput >= 1.8x 1 thread";
  two.met = bench::met_text(scaling >= 1.8);
  rows.push_back(one);
  rows.push_back(two);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  // Our own flags first; the rest is Google Benchmark's.
  std::string rows_out;
  bool smoke = false;
  std::vector<char*> args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--rows-out" && i + 1 < argc) {
      rows_out = argv[++i];
    } else if (a == "--smoke") {
      smoke = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  static char kSmokeMinTime[] = "--benchmark_min_time=0.01";
  if (smoke) args.push_back(kSmokeMinTime);
  argc = static_cast<int>(args.size());
  argv = args.data();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  syncconfig::EmbeddedPostgres pg;
  pg.start();
  {
    bench::PgConn admin(pg.dsn());
    admin.exec(
        "CREATE TABLE bench_get (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL, "
        "updated_at TIMESTAMP NOT NULL DEFAULT NOW())");
    admin.exec(
        "INSERT INTO bench_get (key, value) SELECT 'k' || i, to_jsonb(i) "
        "FROM generate_series(1, " +
        std::to_string(kKeys) + ") AS i");
    admin.exec("INSERT INTO bench_get (key, value) VALUES ('" + std::string(kKey) + "', '42')");
  }
  syncconfig::Options options;
  options.table_name = "bench_get";
  options.channel = "bench_get_ch";
  g_store = syncconfig::Store::open(pg.dsn(), options);
  for (int i = 1; i <= kKeys; ++i) {
    std::string key = "k";  // Not "k" + to_string(): GCC 12 warns falsely (-Wrestrict) there.
    key += std::to_string(i);
    g_map.emplace(std::move(key), i);
  }
  g_map.emplace(std::string(kKey), 42);
  if (g_store->get_int(kKey, -1) != 42 || g_store->size() != g_map.size()) {
    std::fprintf(stderr, "bench: store not loaded as expected\n");
    return 1;
  }

  SummaryReporter reporter(::isatty(STDOUT_FILENO) != 0);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  print_summary(reporter);
  if (!rows_out.empty()) bench::append_rows(rows_out, table_rows(reporter));
  benchmark::Shutdown();
  g_store.reset();
  return 0;
}
