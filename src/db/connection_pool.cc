#include "db/connection_pool.h"

#include <fmt/format.h>

namespace syncconfig::internal {

ConnectionPool::ConnectionPool(std::string dsn, std::size_t max_size, const char* application_name,
                               PreparedStatements prepared)
    : dsn_(std::move(dsn)),
      max_size_(max_size),
      application_name_(application_name),
      prepared_(prepared) {}

ConnectionPool::Lease ConnectionPool::acquire(Deadline deadline) {
  MutexLock lock(mu_);
  for (;;) {
    bool woken = true;
    while (woken && !can_lease()) woken = cv_.wait_until(lock, deadline);
    if (!can_lease()) {
      throw Error(
          ErrorCode::kTimeout,
          fmt::format("no database connection became free in time (pool_size {})", max_size_));
    }
    if (closed_) throw Error(ErrorCode::kShutdown, "the store is shut down");
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      lock.unlock();
      if (conn->probe()) return Lease(this, std::move(conn));
      lock.lock();
      backend_pids_.erase(conn->backend_pid());
      --open_;
      conn.reset();  // The server closed it while idle (restart, terminated backend).
      continue;
    }
    ++open_;
    lock.unlock();
    try {
      auto conn = std::make_unique<Connection>(dsn_, deadline, application_name_);
      // Asked whatever the setting: pooled reads take their writer lock per transaction behind a
      // pooler (table_reader.cc).
      const bool pooled = conn->detect_pooler(deadline);
      conn->set_per_transaction(pooled);
      conn->set_named_statements(prepared_ == PreparedStatements::kOn ||
                                 (prepared_ == PreparedStatements::kAuto && !pooled));
      lock.lock();
      backend_pids_.insert(conn->backend_pid());
      lock.unlock();
      return Lease(this, std::move(conn));
    } catch (...) {
      lock.lock();
      --open_;
      cv_.notify_one();
      throw;
    }
  }
}

void ConnectionPool::release(std::unique_ptr<Connection> conn) {
  {
    MutexLock lock(mu_);
    if (!closed_ && conn->ok()) {
      idle_.push_back(std::move(conn));
    } else {
      backend_pids_.erase(conn->backend_pid());
      --open_;
    }
  }
  cv_.notify_one();
  // A connection not kept is closed here, outside the lock.
}

void ConnectionPool::close() {
  std::vector<std::unique_ptr<Connection>> doomed;
  {
    MutexLock lock(mu_);
    closed_ = true;
    open_ -= idle_.size();
    for (const auto& c : idle_) backend_pids_.erase(c->backend_pid());
    doomed.swap(idle_);
  }
  cv_.notify_all();
}

bool ConnectionPool::owns_backend(int pid) const {
  MutexLock lock(mu_);
  return backend_pids_.contains(pid);
}

}  // namespace syncconfig::internal
