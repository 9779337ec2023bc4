#include "db/connection.h"

#include <fmt/format.h>
#include <poll.h>

#include <charconv>
#include <cstring>
#include <string>

#include "util/validation.h"

namespace syncconfig::internal {
namespace {

int remaining_ms(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// SQLSTATE classes after which retrying can succeed.
ErrorCode classify(const char* sqlstate) {
  if (sqlstate == nullptr) return ErrorCode::kUnavailable;
  std::string_view s(sqlstate);
  if (s == "57014") return ErrorCode::kTimeout;  // query_canceled (statement_timeout)
  if (s.starts_with("08") || s.starts_with("53") || s.starts_with("57P") || s == "40001" ||
      s == "40P01" || s == "55P03") {
    return ErrorCode::kUnavailable;
  }
  return ErrorCode::kDatabase;
}

// The error a failed result reports, classified by its SQLSTATE.
Error result_error(const PGresult* r, std::string_view what) {
  return Error(classify(PQresultErrorField(r, PG_DIAG_SQLSTATE)),
               fmt::format("{} failed: {}", what, trim(PQresultErrorMessage(r))));
}

}  // namespace

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}

int64_t Result::int64(int row, int col) const {
  std::string_view t = text(row, col);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) {
    throw Error(ErrorCode::kInternal,
                fmt::format("expected an integer from PostgreSQL, got '{:.40}'", t));
  }
  return v;
}

void Connection::fail_link(std::string_view what) {
  std::string message = error_message();
  close();
  throw Error(ErrorCode::kUnavailable, fmt::format("{} failed: {}", what, message));
}

bool Connection::wait_socket(short events, Deadline deadline) {
  for (;;) {
    pollfd p[2] = {{PQsocket(conn_), events, 0}, {interrupt_fd_, POLLIN, 0}};
    int n = ::poll(p, interrupt_fd_ >= 0 ? 2 : 1, remaining_ms(deadline));
    if (n > 0 && (p[1].revents & POLLIN)) {
      close();
      throw Error(ErrorCode::kShutdown, "interrupted: the store is shutting down");
    }
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // Let libpq report the actual error.
  }
}

Connection::Connection(const std::string& dsn, Deadline deadline, const char* application_name,
                       int interrupt_fd)
    : interrupt_fd_(interrupt_fd) {
  // libpq's message for a DSN it cannot parse quotes the DSN, password included: check first
  // and say only that it is malformed.
  if (!is_parsable_dsn(dsn)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the DSN is neither a valid key=value connection string nor a valid "
                "postgresql:// URI (details withheld: libpq's message would quote it)");
  }
  // TCP keepalives notice a peer that vanished without closing (network partition) within about
  // a minute, even on an idle listening connection. They come before "dbname" so that settings
  // in the DSN win.
  const char* keys[] = {"keepalives", "keepalives_idle",  "keepalives_interval", "keepalives_count",
                        "dbname",     "application_name", "client_encoding",     nullptr};
  const char* values[] = {"1", "30", "10", "3", dsn.c_str(), application_name, "UTF8", nullptr};
  conn_ = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  if (conn_ == nullptr) throw Error(ErrorCode::kUnavailable, "connecting failed: out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    std::string message = trim(PQerrorMessage(conn_));
    close();
    throw Error(ErrorCode::kUnavailable,
                fmt::format("connecting to {} failed: {}", redact_dsn(dsn), message));
  }
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED) {
      std::string message = trim(PQerrorMessage(conn_));
      close();
      // A rejected password does not get better by retrying with the same DSN.
      const bool auth = message.find("password authentication failed") != std::string::npos ||
                        message.find("no password supplied") != std::string::npos;
      throw Error(auth ? ErrorCode::kDatabase : ErrorCode::kUnavailable,
                  fmt::format("connecting to {} failed: {}", redact_dsn(dsn), message));
    }
    short events = status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (!wait_socket(events, deadline)) {
      close();
      throw Error(ErrorCode::kTimeout, fmt::format("connecting to {} timed out", redact_dsn(dsn)));
    }
    status = PQconnectPoll(conn_);
  }
  PQsetnonblocking(conn_, 1);
  backend_pid_ = PQbackendPID(conn_);
  // Setup DDL is idempotent and chatty ("already exists, skipping"): keep notices off stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
}

Connection::~Connection() { close(); }

void Connection::close() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  prepared_.clear();
}

bool Connection::ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

int Connection::socket() const { return conn_ ? PQsocket(conn_) : -1; }

std::string Connection::error_message() const {
  return conn_ ? trim(PQerrorMessage(conn_)) : std::string("connection closed");
}

bool Connection::probe() {
  if (!ok()) return false;
  // An idle connection that is not listening has nothing to receive: readable means the server
  // ended the session (restart, pg_terminate_backend) and its farewell is waiting to be read.
  pollfd p{PQsocket(conn_), POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) {
    close();
    return false;
  }
  return true;
}

bool Connection::consume_input() {
  if (!ok()) return false;
  if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
    close();
    return false;
  }
  return true;
}

std::optional<Notification> Connection::next_notification() {
  if (conn_ == nullptr) return std::nullopt;
  PGnotify* n = PQnotifies(conn_);
  if (n == nullptr) return std::nullopt;
  Notification out{n->relname, n->extra, n->be_pid};
  PQfreemem(n);
  return out;
}

std::optional<Notification> Connection::wait_notification(Deadline deadline) {
  for (;;) {
    if (!ok()) throw Error(ErrorCode::kUnavailable, "database connection is closed");
    if (std::optional<Notification> n = next_notification()) return n;
    if (Clock::now() >= deadline || !wait_socket(POLLIN, deadline)) return std::nullopt;
    if (!consume_input()) {
      throw Error(ErrorCode::kUnavailable, "waiting for a notification failed: link lost");
    }
  }
}

void Connection::wait_for_result(Deadline deadline, std::string_view what) {
  // Push the query out, then read until libpq has a whole result.
  for (;;) {
    int flushed = PQflush(conn_);
    if (flushed == 0) break;
    if (flushed < 0) {
      fail_link(what);
    }
    if (!wait_socket(POLLIN | POLLOUT, deadline)) break;  // Checked below.
    if (PQconsumeInput(conn_) == 0) break;
  }
  while (PQisBusy(conn_)) {
    if (Clock::now() >= deadline || !wait_socket(POLLIN, deadline)) {
      // Ask the server to stop, then drop the connection: its state is unknown.
      if (PGcancel* cancel = PQgetCancel(conn_)) {
        char buf[256];
        PQcancel(cancel, buf, sizeof buf);
        PQfreeCancel(cancel);
      }
      close();
      throw Error(ErrorCode::kTimeout, fmt::format("{} timed out", what));
    }
    if (PQconsumeInput(conn_) == 0) {
      fail_link(what);
    }
  }
}

Result Connection::collect(std::string_view what) {
  Result last;
  std::optional<Error> failure;
  while (PGresult* r = PQgetResult(conn_)) {
    ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
        status == PGRES_NONFATAL_ERROR) {
      if (!failure) failure.emplace(result_error(r, what));
      PQclear(r);
    } else {
      last = Result(r);
    }
    if (PQisBusy(conn_)) {
      // More results are on their way (multi-statement script); they arrive promptly.
      if (PQconsumeInput(conn_) == 0) break;
    }
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string message = error_message();
    close();
    if (failure && failure->code() != ErrorCode::kDatabase) throw *failure;
    throw Error(ErrorCode::kUnavailable, fmt::format("{} failed: {}", what, message));
  }
  if (failure) throw *failure;
  return last;
}

namespace {
struct CParams {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<std::string> storage;  // NUL-terminated copies.
  explicit CParams(const Params& params) {
    storage.reserve(params.size());
    for (const auto& p : params) {
      if (p) {
        storage.emplace_back(*p);
      } else {
        storage.emplace_back();
      }
    }
    for (size_t i = 0; i < params.size(); ++i) {
      values.push_back(params[i] ? storage[i].c_str() : nullptr);
      lengths.push_back(params[i] ? static_cast<int>(storage[i].size()) : 0);
    }
  }
};
}  // namespace

Result Connection::exec(std::string_view sql, const Params& params, Deadline deadline) {
  if (!ok()) throw Error(ErrorCode::kUnavailable, "database connection is closed");
  CParams c(params);
  std::string query(sql);
  if (PQsendQueryParams(conn_, query.c_str(), static_cast<int>(params.size()), nullptr,
                        c.values.data(), c.lengths.data(), nullptr, 0) == 0) {
    fail_link("sending query");
  }
  ++sent_;
  wait_for_result(deadline, "query");
  return collect("query");
}

Result Connection::exec_prepared(const char* name, std::string_view sql, const Params& params,
                                 Deadline deadline) {
  if (!named_statements_) return exec(sql, params, deadline);
  if (!ok()) throw Error(ErrorCode::kUnavailable, "database connection is closed");
  if (!prepared_.contains(name)) {
    std::string query(sql);
    if (PQsendPrepare(conn_, name, query.c_str(), static_cast<int>(params.size()), nullptr) == 0) {
      fail_link("sending query");
    }
    ++sent_;
    wait_for_result(deadline, "preparing a statement");
    collect("preparing a statement");
    prepared_.insert(name);
  }
  CParams c(params);
  if (PQsendQueryPrepared(conn_, name, static_cast<int>(params.size()), c.values.data(),
                          c.lengths.data(), nullptr, 0) == 0) {
    fail_link("sending query");
  }
  ++sent_;
  wait_for_result(deadline, "query");
  return collect("query");
}

bool Connection::detect_pooler(Deadline deadline) {
  // PostgreSQL's BackendKeyData carries the backend's pid; a pooler answers the start-up itself
  // and hands out a key of its own (PgBouncer: random), since cancel requests must reach it.
  behind_pooler_ = exec("SELECT pg_backend_pid()", {}, deadline).int64(0, 0) != backend_pid_;
  return behind_pooler_;
}

void Connection::exec_rows(std::string_view sql, Deadline deadline,
                           const std::function<void(const Result& row)>& on_row) {
  if (!ok()) throw Error(ErrorCode::kUnavailable, "database connection is closed");
  std::string query(sql);
  if (PQsendQuery(conn_, query.c_str()) == 0) fail_link("sending query");
  ++sent_;
  if (PQsetSingleRowMode(conn_) == 0) fail_link("entering single-row mode");
  for (;;) {
    wait_for_result(deadline, "query");
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;  // Not reached for a single query: its final result comes first.
    if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
      // The end (zero-row PGRES_TUPLES_OK) or an error: collect reports either, and drains.
      Result end(r);
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        collect("query");
        return;
      }
      Error failure = result_error(r, "query");
      collect("query");  // Drains; throws itself if the link is gone.
      throw failure;
    }
    on_row(Result(r));
  }
}

void Connection::exec_script(std::string_view sql, Deadline deadline) {
  if (!ok()) throw Error(ErrorCode::kUnavailable, "database connection is closed");
  std::string query(sql);
  if (PQsendQuery(conn_, query.c_str()) == 0) {
    fail_link("sending query");
  }
  ++sent_;
  wait_for_result(deadline, "query");
  collect("query");
}

std::string redact_dsn(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &err);
  if (options == nullptr) {
    PQfreemem(err);
    return "<unparsable connection string>";
  }
  std::string out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    if (std::strcmp(o->keyword, "password") == 0) continue;
    if (!out.empty()) out += ' ';
    out += fmt::format("{}={}", o->keyword, o->val);
  }
  PQconninfoFree(options);
  return out.empty() ? std::string("<default connection>") : out;
}

std::string quote_ident(std::string_view name) {
  // Names are validated before they get here; doubling quotes keeps this safe regardless.
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace syncconfig::internal
