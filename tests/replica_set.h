// ReplicaSet: a throwaway primary + streaming hot standby, for failover tests.
//
// Two nodes, each with a loopback port reserved for the whole life of the set (a node rebuilt
// as a standby gets its port back) and data directories below one temporary directory, removed
// with everything in it on destruction (also when a test fails half-way). Built with
// `pg_basebackup -R -X stream` from the primary (as the postgres user when the tests run as
// root), promoted with `pg_ctl promote -w`.
//
// Synchronous sets name every standby synchronous (synchronous_standby_names = '*' by ALTER
// SYSTEM on the primary, with synchronous_commit = on): a commit is acknowledged once the standby
// has flushed it. A standby is built without that setting, so once promoted (with no standby of
// its own) it replicates asynchronously, as Patroni does outside its strict mode (otherwise every
// commit would wait forever); rebuild_standby() turns it back on and waits until the new standby
// is the synchronous one.
//
// Not thread-safe: one test thread drives it.
#pragma once

#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "syncconfig/embedded_postgres.h"

namespace syncconfig::testing {

enum class Shutdown { kFast, kImmediate };

class ReplicaSet {
 public:
  // Starts the primary (node 0) and a standby of it (node 1), and waits until the standby
  // streams (and, for a synchronous set, is the synchronous standby).
  explicit ReplicaSet(bool synchronous);
  ~ReplicaSet();
  ReplicaSet(const ReplicaSet&) = delete;
  ReplicaSet& operator=(const ReplicaSet&) = delete;

  EmbeddedPostgres& primary() { return *nodes_[primary_].server; }
  EmbeddedPostgres& standby() { return *nodes_[1 - primary_].server; }
  // URI for the primary alone.
  std::string primary_dsn() const;
  // Both nodes, for stores that must follow the primary: libpq tries the hosts in order and keeps
  // the first that accepts writes.
  std::string dsn() const;

  // Stops the primary (fast: a clean shutdown that first sends all WAL to the standby;
  // immediate: a crash) and promotes the standby; returns how long `pg_ctl promote -w` took.
  // Afterwards primary() is the promoted node and standby() the stopped old primary.
  std::chrono::milliseconds fail_over(Shutdown how);
  // Promotes the standby without touching the primary (which must already be down).
  std::chrono::milliseconds promote_standby();
  // Rebuilds the stopped standby() node from a fresh base backup of primary() (into a new data
  // directory, on its own port), starts it and waits until it streams (and is synchronous, for a
  // synchronous set).
  void rebuild_standby();
  // Waits until primary() reports standby() streaming (and synchronous for a synchronous set).
  void wait_streaming();
  // Waits until the standby has replayed everything the primary has written so far.
  void wait_replayed();
  // From now on, each data directory's server.log is copied into `dir` (as
  // node<i>-<generation>.server.log) before the directory is removed, so that a failed test
  // can be read against both servers' logs. A standby's log starts with a copy of its primary's
  // (pg_basebackup copies the file).
  void keep_server_logs_in(const std::filesystem::path& dir) { log_dir_ = dir; }

 private:
  struct Node {
    int port = 0;
    int reservation = -1;  // A socket holding the port (see reserve_port in the .cc).
    int generation = 0;    // Data directory generation: node<i>-<generation>.
    std::unique_ptr<EmbeddedPostgres> server;
  };
  std::filesystem::path next_data_dir(int node);
  void make_standby_of_primary(int node);
  void set_synchronous(bool on);
  void save_server_log(const std::filesystem::path& data_dir);
  // Stops both servers and removes every data directory (destructor, failed constructor).
  void tear_down();

  bool synchronous_;
  std::filesystem::path root_;
  std::array<Node, 2> nodes_;
  int primary_ = 0;
  std::filesystem::path log_dir_;
};

}  // namespace syncconfig::testing
