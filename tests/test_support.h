// Shared test fixtures: one throwaway PostgreSQL per test binary, unique table names per test,
// a raw libpq session for "plain SQL" from outside the library, and wait-for-condition helpers.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

namespace syncconfig::testing {

// The cluster shared by every test of this binary (started on first use, stopped at exit).
EmbeddedPostgres& cluster();
inline std::string dsn() { return cluster().dsn(); }

// A table/channel name unique within this process, e.g. "t_store_basic_3".
std::string unique_name(const std::string& stem);

// Options for a test store on a fresh table: short intervals so that failure paths run fast.
Options test_options(const std::string& table);

// Polls `condition` until it holds or `timeout` passes. Returns whether it held.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Creates (once per process) a superuser `role` whose host connections to the cluster need
// `password` (scram-sha-256): prepends a pg_hba.conf line (the cluster otherwise trusts
// everyone), reloads, and waits until the server enforces it. Returns a URI for the role without
// its password, e.g. "postgresql://role@127.0.0.1:54321/postgres".
std::string role_requiring_password(const std::string& role, const std::string& password);

// A raw libpq session: what psql would do, bypassing the library.
class Sql {
 public:
  explicit Sql(const std::string& dsn);
  ~Sql();
  // Runs `sql` (one or more statements). Fails the test on error.
  void exec(const std::string& sql);
  // Runs `sql`; returns the error message, or "" if it succeeded.
  std::string try_exec(const std::string& sql);
  // First column of the first row, or "<null>" / "<none>".
  std::string scalar(const std::string& sql);
  int backend_pid();
  // Payloads that arrived for a LISTEN this connection ran, in order; waits up to `timeout` for
  // the first one, then takes whatever else has arrived.
  std::vector<std::string> notifications(std::chrono::milliseconds timeout);

 private:
  PGconn* conn_;
};

// Every key and value in `table` (a plain or schema-qualified name the test made), read through
// a raw connection to `dsn`: what a store's cache must converge to.
std::map<std::string, nlohmann::json> table_content(const std::string& dsn,
                                                    const std::string& table);

// Collects the changes a store reports, thread-safely.
class Recorder {
 public:
  Callback callback() {
    return [this](const Change& c) {
      std::lock_guard lock(mu_);
      changes_.push_back(c);
    };
  }
  std::vector<Change> changes() const {
    std::lock_guard lock(mu_);
    return changes_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return changes_.size();
  }
  bool has(const std::string& key, const std::optional<nlohmann::json>& value) const {
    std::lock_guard lock(mu_);
    for (const auto& c : changes_) {
      if (c.key == key && c.value == value) return true;
    }
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Change> changes_;
};

}  // namespace syncconfig::testing
