// Figures 4 and 5: Store::open on 100k and 1M rows, its fixed cost, memory per entry, and 4b:
// start-up next to an open transaction.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {

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

}  // namespace latency
