// A bounded pool of connections for writes. Connections are opened on demand, checked for a
// link the server closed while they sat idle, and dropped after any failure. Each new connection
// is asked whether a pooler (PgBouncer) is in between (Connection::detect_pooler); the
// PreparedStatements setting and that answer decide whether it uses named prepared statements.
//
// ConnectionPool is safe for concurrent access from multiple threads without external
// synchronization; a leased Connection belongs to the leasing thread until the lease ends.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "db/connection.h"
#include "syncconfig/options.h"
#include "util/mutex.h"

namespace syncconfig::internal {

class ConnectionPool {
 public:
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    ~Lease() {
      if (conn_) pool_->release(std::move(conn_));
    }
    Lease(Lease&&) = default;
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  ConnectionPool(std::string dsn, std::size_t max_size, const char* application_name,
                 PreparedStatements prepared = PreparedStatements::kAuto);
  // Throws Error: kShutdown after close(), kTimeout when no connection frees up before the
  // deadline, kUnavailable/kTimeout when a new connection cannot be opened.
  Lease acquire(Deadline deadline) SC_EXCLUDES(mu_);
  // Closes idle connections; leased ones are closed when returned. Idempotent.
  void close() SC_EXCLUDES(mu_);
  // Whether `pid` is the server process of one of this pool's open connections.
  bool owns_backend(int pid) const SC_EXCLUDES(mu_);

 private:
  void release(std::unique_ptr<Connection> conn) SC_EXCLUDES(mu_);
  // A lease can be handed out (or refused: closed) without waiting.
  bool can_lease() const SC_REQUIRES(mu_) { return closed_ || !idle_.empty() || open_ < max_size_; }

  const std::string dsn_;
  const std::size_t max_size_;
  const char* application_name_;
  const PreparedStatements prepared_;
  mutable Mutex mu_;
  CondVar cv_;  // A connection came back or closed, or the pool closed.
  std::unordered_set<int> backend_pids_ SC_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Connection>> idle_ SC_GUARDED_BY(mu_);
  std::size_t open_ SC_GUARDED_BY(mu_) = 0;  // Idle + leased.
  bool closed_ SC_GUARDED_BY(mu_) = false;
};

}  // namespace syncconfig::internal
