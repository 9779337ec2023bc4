// Helpers shared by the benchmark drivers: a minimal raw libpq connection and LISTEN thread (the
// baselines), percentile summaries, arrival tracking for many listeners, heap/RSS probes, and the
// results table both drivers print. Nothing here uses syncconfig's internals.
#pragma once

#include <libpq-fe.h>
#include <malloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// die() ends the program with exit(), which skips the destructors of objects on the stack. A
// driver that owns something that must not outlive it (a child process, an embedded server
// started by pg_ctl) puts its release here (DieCleanup below); die() runs it once before exiting.
inline std::function<void()>& die_cleanup() {
  static std::function<void()> cleanup;
  return cleanup;
}

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  static std::atomic<bool> dying{false};
  if (!dying.exchange(true) && die_cleanup()) die_cleanup()();
  std::exit(1);
}

// Installs a die_cleanup() for its lifetime: declared after the objects it releases, so that it
// is gone before they are destroyed.
class DieCleanup {
 public:
  explicit DieCleanup(std::function<void()> cleanup) { die_cleanup() = std::move(cleanup); }
  ~DieCleanup() { die_cleanup() = nullptr; }
  DieCleanup(const DieCleanup&) = delete;
  DieCleanup& operator=(const DieCleanup&) = delete;
};

// A plain libpq connection for the raw baselines. Failures end the program: a benchmark that
// cannot run its baseline has nothing to report.
class PgConn {
 public:
  explicit PgConn(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) die(std::string("connect: ") + PQerrorMessage(conn_));
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);  // "table does not exist, skipping"
  }
  ~PgConn() { PQfinish(conn_); }
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  PGconn* get() const { return conn_; }

  // Runs one or more statements that return no rows worth keeping.
  void exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    check(r, sql);
    PQclear(r);
  }

  // First column of every row of the (last) result, as text.
  std::vector<std::string> column(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    check(r, sql);
    std::vector<std::string> out;
    for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetvalue(r, i, 0));
    PQclear(r);
    return out;
  }
  std::string scalar(const std::string& sql) {
    auto c = column(sql);
    if (c.empty()) die("no row: " + sql);
    return c[0];
  }

  void prepare(const char* name, const std::string& sql, int nparams) {
    std::vector<Oid> types(nparams, 25);  // text
    PGresult* r = PQprepare(conn_, name, sql.c_str(), nparams, types.data());
    check(r, sql);
    PQclear(r);
  }

  void exec_prepared(const char* name, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecPrepared(conn_, name, static_cast<int>(values.size()), values.data(),
                                 nullptr, nullptr, 0);
    check(r, name);
    PQclear(r);
  }

 private:
  void check(PGresult* r, const std::string& what) {  // Clears r and ends the program on error.
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
      std::string msg = PQresultErrorMessage(r);
      PQclear(r);
      die(what + ": " + msg);
    }
  }
  PGconn* conn_;
};

struct Summary {
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
  std::size_t n = 0;
};

// Nearest-rank percentiles of `samples` (any unit).
inline Summary summarize(std::vector<double> samples) {
  Summary s;
  s.n = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  auto rank = [&](double p) {
    auto i = static_cast<std::size_t>(p * static_cast<double>(samples.size()) + 0.999999);
    if (i == 0) i = 1;
    return samples[std::min(i, samples.size()) - 1];
  };
  s.p50 = rank(0.50);
  s.p90 = rank(0.90);
  s.p99 = rank(0.99);
  s.max = samples.back();
  return s;
}

// Prints two latency series (microseconds) and their ratio, first over second, in three lines;
// the columns are `title_width` and `name_width` wide.
inline void print_pair(const char* title, const Summary& a, const char* a_name, const Summary& b,
                       const char* b_name, int title_width = 38, int name_width = 29) {
  auto line = [&](const char* t, const char* name, const Summary& s) {
    std::printf("%-*s %-*s p50 %9.1f  p90 %9.1f  p99 %9.1f  max %9.1f us  (n=%zu)\n", title_width,
                t, name_width, name, s.p50, s.p90, s.p99, s.max, s.n);
  };
  line(title, a_name, a);
  line("", b_name, b);
  std::printf("%-*s %-*s p50 %8.2fx  p90 %8.2fx  p99 %8.2fx\n", title_width, "", name_width,
              "ratio", a.p50 / b.p50, a.p90 / b.p90, a.p99 / b.p99);
  std::fflush(stdout);
}

// ---- Arrivals from many listeners ------------------------------------------------------------

// Counts arrivals per source (a store's callback, a raw LISTEN connection) and records when the
// last source of a round got its share. The writer calls expect() before each write, then
// wait_last(); listener threads call arrive(i). Counts are cumulative, so a round needs no reset
// of the sources.
class FanIn {
 public:
  explicit FanIn(std::size_t sources) : counts_(sources, 0) {}

  // Starts a round in which every source must arrive `per_source` more times.
  void expect(uint64_t per_source = 1) {
    std::lock_guard lock(mu_);
    target_ += per_source;
    done_ = 0;
    for (uint64_t c : counts_) done_ += c >= target_ ? 1 : 0;
  }
  void arrive(std::size_t source) {
    const Clock::time_point now = Clock::now();
    std::lock_guard lock(mu_);
    if (++counts_[source] != target_) return;
    last_ = now;
    if (++done_ == counts_.size()) cv_.notify_all();
  }
  // When the last source completed the round; ends the program after `timeout` (an error, not
  // a slow sample: nothing in these benchmarks takes seconds to arrive).
  Clock::time_point wait_last(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return done_ == counts_.size(); })) {
      die("only " + std::to_string(done_) + " of " + std::to_string(counts_.size()) +
          " listeners received the change within " + std::to_string(timeout.count()) + " s");
    }
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> counts_;
  uint64_t target_ = 0;
  std::size_t done_ = 0;
  Clock::time_point last_;
};

// The raw receiving side: one LISTEN connection and one thread that waits in poll() (on the
// socket and an eventfd for stopping, no timeout, like a store's listener thread) and calls
// on_notify for every notification on the channel. The destructor stops and joins the thread.
class RawListener {
 public:
  RawListener(const std::string& dsn, const std::string& channel, std::function<void()> on_notify)
      : conn_(dsn), on_notify_(std::move(on_notify)), stop_fd_(::eventfd(0, EFD_CLOEXEC)) {
    if (stop_fd_ < 0) die("eventfd failed");
    conn_.exec("LISTEN " + channel);
    thread_ = std::thread([this] { run(); });
  }
  ~RawListener() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(stop_fd_);
  }
  RawListener(const RawListener&) = delete;
  RawListener& operator=(const RawListener&) = delete;

 private:
  void run() {
    PGconn* c = conn_.get();
    for (;;) {
      pollfd p[2] = {{PQsocket(c), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;  // EINTR
      if (p[1].revents & POLLIN) return;
      if (!PQconsumeInput(c)) die(std::string("listener: ") + PQerrorMessage(c));
      while (PGnotify* n = PQnotifies(c)) {
        PQfreemem(n);
        on_notify_();
      }
    }
  }
  PgConn conn_;
  std::function<void()> on_notify_;
  int stop_fd_;
  std::thread thread_;
};

// ---- Throughput --------------------------------------------------------------------------------

// Runs op(thread_index) in a loop on `threads` threads for `window` (all start together) and
// returns the completed operations per second. Every thread is joined before returning.
inline double ops_per_second(int threads, std::chrono::milliseconds window,
                             const std::function<void(int)>& op) {
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> done(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      uint64_t n = 0;
      try {
        while (!stop.load(std::memory_order_relaxed)) {
          op(t);
          ++n;
        }
      } catch (const std::exception& e) {  // An error, not a slow sample: end the run.
        die(std::string("throughput: ") + e.what());
      }
      done[t] = n;
    });
  }
  const auto t0 = Clock::now();
  go.store(true);
  std::this_thread::sleep_for(window);
  stop.store(true);
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  uint64_t total = 0;
  for (uint64_t n : done) total += n;
  return static_cast<double>(total) / seconds;
}

// ---- Memory --------------------------------------------------------------------------------

// Bytes the process holds from malloc (all arenas, small and mmapped chunks), after returning
// free memory to the system so that the RSS next to it is comparable.
struct MemoryProbe {
  double heap_bytes = 0;
  double rss_bytes = 0;
};
inline MemoryProbe probe_memory() {
  ::malloc_trim(0);
  struct mallinfo2 mi = ::mallinfo2();
  MemoryProbe m;
  m.heap_bytes = static_cast<double>(mi.uordblks + mi.hblkhd);
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  m.rss_bytes = static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  return m;
}

// ---- The results table ---------------------------------------------------------------------

// One line of the final table. Units decide how values print: kMicros (latencies, kept in us),
// kNanos, kBytes (per entry), kOpsPerSecond, kCount (a number of things, e.g. connections). For
// latencies the two values are p50 and p99; for Google Benchmark rows the median and slowest of the
// repetitions; for throughput the median and slowest round; for memory a single measurement (both
// the same). A row whose figure has no baseline leaves `base` at zero: the baseline and ratio cells
// print "-".
enum class Unit { kMicros, kNanos, kBytes, kOpsPerSecond, kCount };

struct Row {
  Row() = default;
  Row(std::string figure_, Summary mine_, Summary base_, Unit unit_ = Unit::kMicros)
      : figure(std::move(figure_)), mine(mine_), base(base_), unit(unit_) {}

  std::string figure;
  Summary mine;
  Summary base;
  Unit unit = Unit::kMicros;
  std::string target;  // Empty: no target (a diagnostic row).
  std::string met;     // "yes", "NO", or empty when there is no target.
};

inline const char* met_text(bool ok) { return ok ? "yes" : "NO"; }

inline std::string format_value(double v, Unit unit) {
  char buf[32];
  switch (unit) {
    case Unit::kMicros:
      if (v >= 1e6) {
        std::snprintf(buf, sizeof buf, "%.2f s", v / 1e6);
      } else if (v >= 10000) {
        std::snprintf(buf, sizeof buf, "%.1f ms", v / 1000);
      } else if (v >= 1000) {
        std::snprintf(buf, sizeof buf, "%.2f ms", v / 1000);
      } else {
        std::snprintf(buf, sizeof buf, "%.0f us", v);
      }
      break;
    case Unit::kNanos:
      std::snprintf(buf, sizeof buf, "%.1f ns", v);
      break;
    case Unit::kBytes:
      std::snprintf(buf, sizeof buf, "%.1f B", v);
      break;
    case Unit::kOpsPerSecond:
      std::snprintf(buf, sizeof buf, "%.0f/s", v);
      break;
    case Unit::kCount:
      std::snprintf(buf, sizeof buf, "%.0f", v);
      break;
  }
  return buf;
}

inline void print_table(const std::vector<Row>& rows) {
  constexpr int kFig = 46, kVal = 21, kRatio = 15, kTarget = 30;
  std::printf("\n%-*s | %-*s | %-*s | %-*s | %-*s | %s\n", kFig, "figure", kVal,
              "syncconfig p50 / p99", kVal, "baseline p50 / p99", kRatio, "ratio p50 / p99",
              kTarget, "target", "met?");
  std::printf("%s\n", std::string(kFig + 3 * 5 + 2 * kVal + kRatio + kTarget + 4, '-').c_str());
  for (const Row& r : rows) {
    std::string a = format_value(r.mine.p50, r.unit) + " / " + format_value(r.mine.p99, r.unit);
    const bool no_base = r.base.p50 == 0 && r.base.p99 == 0;
    std::string b =
        no_base ? "-" : format_value(r.base.p50, r.unit) + " / " + format_value(r.base.p99, r.unit);
    // Small ratios (catch-up vs reload) keep two significant digits instead of printing 0.00x.
    auto ratio_text = [](double x) {
      char buf[24];
      std::snprintf(buf, sizeof buf, x < 0.1 ? "%.2gx" : "%.2fx", x);
      return std::string(buf);
    };
    const std::string ratio =
        no_base ? "-"
                : ratio_text(r.mine.p50 / r.base.p50) + " / " + ratio_text(r.mine.p99 / r.base.p99);
    std::printf("%-*s | %-*s | %-*s | %-*s | %-*s | %s\n", kFig, r.figure.c_str(), kVal, a.c_str(),
                kVal, b.c_str(), kRatio, ratio.c_str(), kTarget, r.target.c_str(), r.met.c_str());
  }
  std::fflush(stdout);
}

// Rows pass from one driver to the other through a tab-separated file (one row a line), so that
// the last driver prints one table with every figure.
inline void append_rows(const std::string& path, const std::vector<Row>& rows) {
  std::ofstream out(path, std::ios::app);
  if (!out) die("cannot write " + path);
  for (const Row& r : rows) {
    out << r.figure << '\t' << static_cast<int>(r.unit) << '\t' << r.mine.p50 << '\t' << r.mine.p99
        << '\t' << r.base.p50 << '\t' << r.base.p99 << '\t' << r.target << '\t' << r.met << '\n';
  }
}
inline std::vector<Row> read_rows(const std::string& path) {
  std::ifstream in(path);
  if (!in) die("cannot read " + path);
  std::vector<Row> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string field; std::getline(ss, field, '\t');) f.push_back(field);
    f.resize(8);
    Row r;
    r.figure = f[0];
    r.unit = static_cast<Unit>(std::atoi(f[1].c_str()));
    r.mine.p50 = std::atof(f[2].c_str());
    r.mine.p99 = std::atof(f[3].c_str());
    r.base.p50 = std::atof(f[4].c_str());
    r.base.p99 = std::atof(f[5].c_str());
    r.target = f[6];
    r.met = f[7];
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace bench
