// Helpers shared by the benchmark drivers: a minimal raw libpq connection (the baselines) and
// percentile summaries. Nothing here uses syncconfig's internals.
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::exit(1);
}

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

}  // namespace bench
