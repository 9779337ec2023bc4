#include "replica_set.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "test_support.h"
#include "util/process.h"

namespace syncconfig::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kReplicationTimeout = 30s;

[[noreturn]] void fail(const std::string& message) {
  throw std::runtime_error("ReplicaSet: " + message);
}

// A free loopback port held by a bound, never listening socket with SO_REUSEADDR (as
// EmbeddedPostgres does for the ports it picks): the server can bind it too, but nothing else
// on the machine is handed it while the node is down. Returns {fd, port}.
std::pair<int, int> reserve_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
  const int on = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int error = errno;
    close(fd);
    fail(std::string("reserving a port: ") + std::strerror(error));
  }
  return {fd, ntohs(addr.sin_port)};
}

// pg_basebackup of the newest /usr/lib/postgresql/<major>/bin (where EmbeddedPostgres finds the
// server), else the one in PATH.
std::string pg_basebackup_program() {
  std::error_code ec;
  int best = -1;
  std::string found = "pg_basebackup";
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    long major = std::strtol(name.c_str(), &end, 10);
    fs::path program = entry.path() / "bin" / "pg_basebackup";
    if (end != name.c_str() && *end == '\0' && major > best && fs::exists(program, ec)) {
      best = static_cast<int>(major);
      found = program.string();
    }
  }
  return found;
}

// The servers run as postgres when the tests run as root (PostgreSQL refuses root); so must
// pg_basebackup, whose files the standby then owns.
std::vector<std::string> as_server_user(std::vector<std::string> argv) {
  if (!internal::running_as_root()) return argv;
  std::error_code ec;
  std::vector<std::string> out = {
      fs::exists("/usr/sbin/runuser", ec) ? "/usr/sbin/runuser" : "runuser", "-u", "postgres",
      "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::map<std::string, std::string> server_settings() {
  return {
      {"max_connections", "300"},
      {"wal_level", "replica"},
      {"max_wal_senders", "10"},
      {"hot_standby", "on"},
      {"wal_keep_size", "256"},  // MB: a standby never falls behind the WAL kept for it here.
      {"synchronous_commit", "on"},
      // A standby whose primary went away (restart, failover) retries streaming after this long;
      // the default 5 s would stall every synchronous commit that long after each restart.
      {"wal_retrieve_retry_interval", "100ms"},
      // The data directories are thrown away: durability across an OS crash only costs time. A
      // server crash (immediate shutdown) still recovers from the WAL in the page cache.
      {"fsync", "off"},
      // For whoever reads a kept server log after a failed failover run (docs/reliability.md,
      // finding 5): when each standby connected and from where it streamed.
      {"log_replication_commands", "on"},
  };
}

}  // namespace

ReplicaSet::ReplicaSet(bool synchronous) : synchronous_(synchronous) {
  std::string pattern = (fs::temp_directory_path() / "syncconfig-replicas-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) fail(std::string("mkdtemp: ") + std::strerror(errno));
  root_ = pattern;
  try {
    if (internal::running_as_root()) {
      // pg_basebackup (as postgres) creates the standbys' directories in here.
      passwd* pw = getpwnam("postgres");
      if (pw == nullptr || chown(root_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        fail("cannot give " + root_.string() + " to the postgres user");
      }
    }
    for (Node& node : nodes_) std::tie(node.reservation, node.port) = reserve_port();
    nodes_[0].server = std::make_unique<EmbeddedPostgres>(EmbeddedPostgresOptions{
        .data_dir = next_data_dir(0), .port = nodes_[0].port, .settings = server_settings()});
    nodes_[0].server->start();
    make_standby_of_primary(1);
    if (synchronous_) set_synchronous(true);
    wait_streaming();
  } catch (...) {
    tear_down();
    throw;
  }
}

ReplicaSet::~ReplicaSet() { tear_down(); }

void ReplicaSet::save_server_log(const fs::path& data_dir) {
  if (log_dir_.empty() || data_dir.empty()) return;
  std::error_code ec;
  fs::copy_file(data_dir / "server.log", log_dir_ / (data_dir.filename().string() + ".server.log"),
                fs::copy_options::overwrite_existing, ec);
}

void ReplicaSet::tear_down() {
  for (Node& node : nodes_) {
    const fs::path dir = node.server ? node.server->data_dir() : fs::path();
    node.server.reset();  // Stops the server (immediate if fast fails); keeps its data directory.
    save_server_log(dir);
    if (node.reservation >= 0) close(node.reservation);
    node.reservation = -1;
  }
  if (!root_.empty()) {
    std::error_code ec;
    fs::remove_all(root_, ec);
    root_.clear();
  }
}

std::string ReplicaSet::primary_dsn() const { return nodes_[primary_].server->dsn(); }

std::string ReplicaSet::dsn() const {
  return "host=127.0.0.1,127.0.0.1 port=" + std::to_string(nodes_[0].port) + "," +
         std::to_string(nodes_[1].port) +
         " dbname=postgres user=postgres target_session_attrs=read-write";
}

fs::path ReplicaSet::next_data_dir(int node) {
  return root_ / ("node" + std::to_string(node) + "-" + std::to_string(++nodes_[node].generation));
}

void ReplicaSet::make_standby_of_primary(int node) {
  const fs::path dir = next_data_dir(node);
  // -c fast: checkpoint at once instead of spreading it over minutes. -R writes standby.signal
  // and primary_conninfo (host=127.0.0.1 port=<primary's port>) into postgresql.auto.conf.
  internal::ProcessResult r = internal::run_process(
      as_server_user({pg_basebackup_program(), "-D", dir.string(), "-R", "-X", "stream", "-c",
                      "fast", "--no-sync", "-h", "127.0.0.1", "-p",
                      std::to_string(nodes_[primary_].port), "-U", "postgres"}),
      std::chrono::seconds(120), "/");
  if (r.exit_code != 0) {
    fail("pg_basebackup into " + dir.string() + " failed (exit code " +
         std::to_string(r.exit_code) + "): " + r.output);
  }
  // The servers' Unix sockets live in their data directories, and the copy carries the socket
  // lock files (a stale one of this node's port, when the primary was itself copied from it).
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(".s.PGSQL.", 0) == 0) fs::remove(entry.path());
  }
  // The copy carries the primary's ALTER SYSTEM settings: drop synchronous_standby_names, so that
  // this node, once promoted with no standby of its own, does not wait forever on every commit.
  const fs::path auto_conf = dir / "postgresql.auto.conf";
  std::stringstream in;
  in << std::ifstream(auto_conf).rdbuf();
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.rfind("synchronous_standby_names", 0) != 0) kept += line + "\n";
  }
  std::ofstream(auto_conf, std::ios::trunc) << kept;

  nodes_[node].server = std::make_unique<EmbeddedPostgres>(EmbeddedPostgresOptions{
      .data_dir = dir, .port = nodes_[node].port, .settings = server_settings()});
  nodes_[node].server->start();
}

void ReplicaSet::set_synchronous(bool on) {
  Sql sql(primary_dsn());
  sql.exec(on ? "ALTER SYSTEM SET synchronous_standby_names = '*'"
              : "ALTER SYSTEM RESET synchronous_standby_names");
  sql.exec("SELECT pg_reload_conf()");
}

void ReplicaSet::wait_streaming() {
  Sql sql(primary_dsn());
  const std::string query =
      std::string("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") +
      (synchronous_ ? " AND sync_state = 'sync'" : "");
  if (!wait_until([&] { return sql.scalar(query) == "1"; }, kReplicationTimeout)) {
    fail("the standby on port " + std::to_string(standby().port()) + " never streamed" +
         (synchronous_ ? " as the synchronous standby" : "") + " from the primary on port " +
         std::to_string(primary().port()));
  }
}

void ReplicaSet::wait_replayed() {
  const std::string lsn = Sql(primary_dsn()).scalar("SELECT pg_current_wal_lsn()");
  Sql sql(standby().dsn());
  if (!wait_until(
          [&] { return sql.scalar("SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'") == "t"; },
          kReplicationTimeout)) {
    fail("the standby never replayed the primary's WAL up to " + lsn);
  }
}

std::chrono::milliseconds ReplicaSet::fail_over(Shutdown how) {
  if (how == Shutdown::kFast) {
    primary().stop();
  } else {
    primary().kill();
  }
  return promote_standby();
}

std::chrono::milliseconds ReplicaSet::promote_standby() {
  const auto start = std::chrono::steady_clock::now();
  standby().promote();
  const auto took = std::chrono::steady_clock::now() - start;
  primary_ = 1 - primary_;
  return std::chrono::duration_cast<std::chrono::milliseconds>(took);
}

void ReplicaSet::rebuild_standby() {
  const int node = 1 - primary_;
  const fs::path old_dir = nodes_[node].server ? nodes_[node].server->data_dir() : fs::path();
  nodes_[node].server.reset();  // Stops it if it still runs.
  save_server_log(old_dir);
  if (!old_dir.empty()) {
    std::error_code ec;
    fs::remove_all(old_dir, ec);
  }
  make_standby_of_primary(node);
  if (synchronous_) set_synchronous(true);
  wait_streaming();
}

}  // namespace syncconfig::testing
