// RAII over one libpq connection. Every call that waits on the server is bounded by a deadline
// (the connection runs in non-blocking mode and waits with poll), so a hung or vanished server
// turns into an Error instead of a stuck thread. One Connection belongs to one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "syncconfig/error.h"

namespace syncconfig::internal {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_after(std::chrono::milliseconds timeout) { return Clock::now() + timeout; }

// A query result. Owns the PGresult.
class Result {
 public:
  Result() = default;
  explicit Result(PGresult* result) : result_(result) {}
  ~Result() { PQclear(result_); }
  Result(Result&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  Result& operator=(Result&& other) noexcept;

  int rows() const { return result_ ? PQntuples(result_) : 0; }
  bool is_null(int row, int col) const { return PQgetisnull(result_, row, col) != 0; }
  std::string_view text(int row, int col) const {
    return {PQgetvalue(result_, row, col), static_cast<size_t>(PQgetlength(result_, row, col))};
  }
  int64_t int64(int row, int col) const;

 private:
  PGresult* result_ = nullptr;
};

struct Notification {
  std::string channel;
  std::string payload;
  int backend_pid = 0;
};

// Text-format query parameters; std::nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string_view>>;

class Connection {
 public:
  // Connects to `dsn` (URI or key=value) within `deadline`, with client_encoding UTF8. Throws
  // Error(kUnavailable or kTimeout) with the DSN's password removed from the message.
  // `interrupt_fd`, if not -1, is polled alongside the socket by every wait of this connection:
  // once it is readable, waits end with Error(kShutdown) and the connection is closed. It lets
  // an owner stop a thread blocked on the server without waiting for the deadline.
  Connection(const std::string& dsn, Deadline deadline, const char* application_name,
             int interrupt_fd = -1);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement with parameters and returns its result. Throws Error: kTimeout (the
  // statement is cancelled and the connection closed), kUnavailable (connection lost), kDatabase
  // (the server reported an error; the SQLSTATE decides whether it is retryable).
  Result exec(std::string_view sql, const Params& params, Deadline deadline);
  // Like exec, but prepares `sql` under `name` on first use on this connection. With named
  // statements off (set_named_statements), the same as exec: an unnamed statement, which a
  // transaction pooler does not need to keep across transactions.
  Result exec_prepared(const char* name, std::string_view sql, const Params& params,
                       Deadline deadline);
  // Runs one or more statements without parameters (simple query protocol).
  void exec_script(std::string_view sql, Deadline deadline);
  // Runs one query and hands each row to `on_row` as it arrives (libpq's single-row mode: a
  // one-row Result), so that the caller works while the server is still sending. Errors as for
  // exec; after an error mid-stream some rows have been handed over already.
  void exec_rows(std::string_view sql, Deadline deadline,
                 const std::function<void(const Result& row)>& on_row);

  // Whether the connection is usable. A connection is closed after any timeout or lost link.
  bool ok() const;
  // Checks without blocking whether the server ended the session while the connection sat idle
  // (e.g. the server restarted); closes it if so. Only for connections that do not LISTEN.
  bool probe();
  // Statements handed to the server so far (counted once libpq accepted them for sending). A
  // call that failed with this unchanged never reached the server; otherwise the server may have
  // run it, and committed, before the link broke.
  uint64_t statements_sent() const { return sent_; }
  int socket() const;
  void set_interrupt_fd(int fd) { interrupt_fd_ = fd; }
  // The server process serving this connection as the connection reported it at start-up (kept
  // after the connection closes). Behind a pooler (PgBouncer) it is the pooler's own number.
  int backend_pid() const { return backend_pid_; }
  // Asks the server for its process id and compares it with backend_pid(): a pooler between
  // client and server (PgBouncer, in any pool mode) reports a process id of its own. Returns
  // whether one is in between, and remembers it (behind_pooler()). Errors as for exec.
  bool detect_pooler(Deadline deadline);
  bool behind_pooler() const { return behind_pooler_; }
  // Whether each transaction of this connection may be served by another server session (a pool
  // connection behind a pooler): then nothing may rely on session state between transactions,
  // session advisory locks included.
  void set_per_transaction(bool on) { per_transaction_ = on; }
  bool per_transaction() const { return per_transaction_; }
  // Whether exec_prepared uses named prepared statements (the default) or unnamed ones.
  void set_named_statements(bool on) { named_statements_ = on; }
  bool named_statements() const { return named_statements_; }
  // Reads whatever the server sent. Returns false if the connection broke.
  bool consume_input();
  std::optional<Notification> next_notification();
  // Waits until a notification arrives (returned) or the deadline passes (nullopt). Throws
  // kUnavailable if the link breaks, kShutdown when interrupted.
  std::optional<Notification> wait_notification(Deadline deadline);
  // Human-readable last error of the connection.
  std::string error_message() const;

 private:
  // The link broke while doing `what`: closes and throws Error(kUnavailable).
  [[noreturn]] void fail_link(std::string_view what);
  // Waits for the socket; false on timeout. Throws kShutdown when interrupted.
  bool wait_socket(short events, Deadline deadline);
  void wait_for_result(Deadline deadline, std::string_view what);
  Result collect(std::string_view what);
  void close();

  PGconn* conn_ = nullptr;
  int backend_pid_ = 0;
  int interrupt_fd_ = -1;
  bool behind_pooler_ = false;
  bool named_statements_ = true;
  bool per_transaction_ = false;
  std::unordered_set<std::string> prepared_;
  uint64_t sent_ = 0;
};

// The DSN with any password removed, for logs and error messages.
std::string redact_dsn(const std::string& dsn);
// Quotes a validated identifier for SQL ("name").
std::string quote_ident(std::string_view name);

}  // namespace syncconfig::internal
