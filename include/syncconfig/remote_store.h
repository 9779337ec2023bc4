// RemoteStore: the Config API (config.h) over one or more syncconfig servers, with no database
// connection. It keeps a complete local cache of a store (or of the keys under a prefix): a
// snapshot (GET /settings), then the server's event stream (GET /watch), resumed by revision.
// When the server fails it moves to the next URL and resumes from the last revision it holds,
// so no change is missed and no key goes back (per-key revisions only rise, as in Store).
//
// Reads never leave the process. Writes go to the server (PUT/DELETE), return once the server's
// commit is done, and are applied to the local cache at once (read-your-writes, as in Store);
// subscribers see them as ChangeOrigin::kLocal (the follower holds the write's own event until
// the answer is applied, at most 1 s), everything from the stream as kRemote or kResync.
//
// A RemoteStore is safe for concurrent access from multiple threads without external
// synchronization. Threads: one follower thread (snapshot, stream, failover), one dispatcher
// thread that runs every callback, and, with RemoteOptions::snapshot_file, one writer thread; all
// are owned and joined by shutdown().
//
// Errors: syncconfig::Error with the codes of Store: kUnavailable when no server answers,
// kTimeout when one does not answer in time (for a write: the outcome is unknown),
// kInvalidArgument for a bad key or value (the server's 400), kDatabase when the server reports a
// database error, kShutdown after shutdown().
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "syncconfig/config.h"

namespace spdlog {
class logger;
}

namespace syncconfig {

struct RemoteOptions {
  // Keep (and watch) only the keys starting with this. Default "": every key.
  std::string prefix;
  // The server's store to follow, by the name it serves it under (/stores/{name}/...).
  // Default "": the server's default store.
  std::string store;
  // Sent as "Authorization: Bearer <token>" when non-empty; never logged. Default "".
  std::string token;
  // https:// servers: PEM file of the CA certificate(s) their certificates must lead to.
  // Default "": the system trust store. The chain and the URL's host are always verified; a
  // server that fails verification counts as unavailable (the store moves on to the next URL).
  // A file that cannot be loaded: the constructor throws kInvalidArgument naming it.
  std::string ca_file;
  // Bound on connecting to one server. Default 2 seconds.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(2);
  // Bound on one write (PUT/DELETE). Default 10 seconds.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(10);
  // Bound on reading a whole snapshot (open, sync(), a stale store's catch-up) or
  // changes_since, which take longer than a write on a large store (1M keys: about 5 s here,
  // BENCHMARKS.md figure 10). Default 60 seconds.
  std::chrono::milliseconds load_timeout = std::chrono::seconds(60);
  // How long open() tries the servers (every URL in turn, again and again) before it gives up:
  // then it opens from snapshot_file if that is set and valid, else throws kUnavailable. A
  // server must begin its answer within it (connection, status line and header); the snapshot's
  // body, once begun, is bounded by load_timeout instead. Default 10 seconds.
  std::chrono::milliseconds open_timeout = std::chrono::seconds(10);
  // After every URL failed in a row, wait before the next round: 50 ms, doubling up to this,
  // each pause jittered (drawn from its upper half) so that many clients spread out. Default
  // 500 ms.
  std::chrono::milliseconds retry_interval = std::chrono::milliseconds(500);
  // A stream silent for this long counts as broken (servers send a keepalive every 15 s), and the
  // store moves on. Default 45 seconds.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(45);
  // Like Options::snapshot_file: a copy of the cache to open from when no server answers at
  // start-up. Default "" (no file).
  std::string snapshot_file;
  // Least time between two writes of snapshot_file. Default 1 second.
  std::chrono::milliseconds snapshot_interval = std::chrono::seconds(1);
  // Largest value accepted by set(), in bytes of its JSON text (the server has its own limit).
  // Default 16 MiB.
  std::size_t max_value_bytes = 16u << 20;
  // Logger. Default (nullptr): spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

class RemoteStore final : public Config {
 public:
  // Takes a snapshot from the first server of `urls` (http://host:port[/base]) that answers, and
  // starts following it. Throws kInvalidArgument for bad options or URLs, kUnavailable when no
  // server answered within open_timeout and there is no usable snapshot file.
  static std::unique_ptr<RemoteStore> open(std::vector<std::string> urls,
                                           RemoteOptions options = {});

  ~RemoteStore() override;  // Calls shutdown().
  RemoteStore(const RemoteStore&) = delete;
  RemoteStore& operator=(const RemoteStore&) = delete;

  // Sent to the current server (the next one if it cannot be reached before the request is
  // sent); the result is applied to the cache before returning. A key outside `prefix` is
  // refused with kInvalidArgument (this store would never see it). While stale: kUnavailable.
  WriteResult put(std::string_view key, const nlohmann::json& value,
                  const WriteOptions& options = {}) override;
  WriteResult erase(std::string_view key, const WriteOptions& options = {}) override;
  std::optional<KeyEntry> get_entry(std::string_view key) const override;
  std::optional<Versioned> get_versioned(std::string_view key) const override;
  CasResult set_if(std::string_view key, const nlohmann::json& value, int64_t expected_revision,
                   const WriteOptions& options = {}) override;
  CasResult remove_if(std::string_view key, int64_t expected_revision,
                      const WriteOptions& options = {}) override;
  // A committed transaction (or rollback) returns once this store's stream has applied it (at
  // most request_timeout later): the answer carries only its revision.
  TxnResult commit(const Transaction& txn) override;
  using Config::history;
  std::vector<HistoryRecord> history(const HistoryQuery& query) const override;
  Snapshot snapshot_at(int64_t revision, std::string_view prefix = {}) const override;
  using Config::rollback;
  TxnResult rollback(std::string_view target, bool prefix, int64_t revision,
                     const WriteOptions& options) override;
  Lease grant_lease(std::chrono::seconds ttl) override;
  std::optional<Lease> keep_alive(int64_t lease) override;
  bool revoke_lease(int64_t lease) override;

  std::optional<nlohmann::json> get(std::string_view key) const override;
  bool contains(std::string_view key) const override;
  std::size_t size() const override;
  std::map<std::string, nlohmann::json> get_all(std::string_view prefix = {}) const override;
  Snapshot snapshot(std::string_view prefix = {}) const override;
  std::string get_string(std::string_view key, std::string default_value = {}) const override;
  int64_t get_int(std::string_view key, int64_t default_value = 0) const override;
  double get_double(std::string_view key, double default_value = 0.0) const override;
  bool get_bool(std::string_view key, bool default_value = false) const override;

  SubscriptionId subscribe(Callback callback) override;
  SubscriptionId subscribe(Callback callback, ProgressCallback on_progress) override;
  void unsubscribe(SubscriptionId id) override;

  // Computed like Store's, from the values as the server sends them. Equal to a Store's holding
  // the same data, except for a number whose jsonb text is not the shortest text of its double
  // (2.50, or more than 17 significant digits): the JSON on the wire carries the double.
  uint32_t get_crc() const override;
  // Takes a new snapshot from the current server and applies the differences.
  void sync() override;
  Stats stats() const override;
  // Asks the current server (GET /changes), which asks its table, or its own upstream.
  ChangesSince changes_since(int64_t revision, std::string_view prefix = {}) const override;
  bool is_stale() const override;
  void shutdown() override;

  // The URL of the server being followed now (empty while none is).
  std::string current_server() const;

  class Impl;

 private:
  explicit RemoteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace syncconfig
