// EmbeddedPostgres: a PostgreSQL server owned by this process, for tests, demos and the
// service's default when no DSN is given.
//
// start() runs `initdb` when the data directory holds no cluster yet, then `pg_ctl start` on a
// free loopback port with a Unix socket in the data directory. When the process runs as root the
// server runs as the `postgres` user (PostgreSQL refuses to run as root). The destructor stops
// the server; a temporary data directory (the default) is also removed.
//
// Not thread-safe: one thread owns an EmbeddedPostgres.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace syncconfig {

struct EmbeddedPostgresOptions {
  // Data directory. Empty (default): a new temporary directory, removed on destruction.
  // Non-empty: created and initialised on first use, kept and reused afterwards.
  std::filesystem::path data_dir;
  // TCP port on 127.0.0.1. 0 (default): a free port is picked, and kept reserved until
  // destruction so that restart() gets it back even while other clusters start.
  int port = 0;
  // Directory holding initdb/pg_ctl/postgres. Empty (default): the newest
  // /usr/lib/postgresql/<version>/bin (Debian layout), else `pg_config --bindir`.
  std::filesystem::path bin_dir;
  // Extra server settings passed as `-c name=value`. Default: max_connections=300 (tests run
  // many instances, each holding a listening connection plus a pool).
  std::map<std::string, std::string> settings = {{"max_connections", "300"}};
  // Seconds to wait for the server to start or stop. Default 60.
  int timeout_seconds = 60;
};

class EmbeddedPostgres {
 public:
  explicit EmbeddedPostgres(EmbeddedPostgresOptions options = {});
  ~EmbeddedPostgres();  // stop(), then remove a temporary data directory.

  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  // Initialises the cluster if needed and starts the server; waits until it accepts connections.
  // No-op if already running. Throws syncconfig::Error: kInvalidArgument for a setting or data
  // directory that cannot be passed to pg_ctl, else kInternal naming the failed step and
  // quoting the server log's tail.
  void start();
  // Stops the server (fast shutdown); waits until it is gone. Idempotent.
  void stop();
  // Immediate shutdown (like a crash: `pg_ctl stop -m immediate`). For failure tests.
  void kill();
  // stop() then start() on the same port and data directory.
  void restart();
  // Promotes a running standby (a data directory holding standby.signal, e.g. made with
  // `pg_basebackup -R`) to a primary: `pg_ctl promote -w`, which returns once the server accepts
  // writes. For failover tests. Throws Error(kInternal) quoting pg_ctl when the server is not
  // running or is not a standby.
  void promote();

  bool running() const { return running_; }
  int port() const { return port_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  // libpq URI for the `postgres` database as the `postgres` superuser, e.g.
  // "postgresql://postgres@127.0.0.1:54321/postgres".
  std::string dsn() const;

 private:
  // argv running bin_dir_/program, as the postgres user when this process is root.
  std::vector<std::string> server_command(const char* program, std::vector<std::string> args) const;
  // One `pg_ctl start` attempt; the failure description (pg_ctl output, log tail) or nullopt.
  std::optional<std::string> start_server(int port);
  void shutdown(const char* mode);  // pg_ctl stop -m <mode>.

  EmbeddedPostgresOptions options_;
  std::filesystem::path data_dir_;
  std::filesystem::path bin_dir_;
  bool temporary_ = false;
  bool running_ = false;
  bool as_root_ = false;
  int port_ = 0;
  // A socket bound to a picked port_ (SO_REUSEADDR, never listening), held until destruction:
  // the server can still bind the port, but no other picker on the machine is handed it while
  // the server is down for a restart. -1 when the port was given.
  int port_reservation_ = -1;
};

}  // namespace syncconfig
