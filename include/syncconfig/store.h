// Store: a key/value configuration store kept synchronized across application instances, with a
// PostgreSQL table as the single source of truth.
//
// Reads are served from an in-memory cache (no database round trip). A write goes to the
// database; its commit reaches every other instance through LISTEN/NOTIFY. A heartbeat compares
// the cache with the table and repairs any difference. See docs/protocol.md.
//
// A Store is safe for concurrent access from multiple threads without external synchronization.
// Callbacks run on the store's own dispatcher thread, one at a time, never under an internal
// lock: a callback may call any method of the store except destroying it.
//
// Errors: every failure is reported by throwing syncconfig::Error (see error.h), whose code says
// whether retrying can help. An absent key is not an error: get() returns std::nullopt and the
// typed getters return their default.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "syncconfig/config.h"
#include "syncconfig/error.h"
#include "syncconfig/options.h"
#include "syncconfig/pool_manager.h"

namespace syncconfig {

class Store final : public Config {
 public:
  // Connects, creates the table (and the protocol's objects) if missing, loads every row and
  // starts listening. Throws Error: kInvalidArgument for bad options (naming the field),
  // kUnavailable/kTimeout when the database cannot be reached, kDatabase for SQL errors.
  // With Options::snapshot_file set, a database that cannot be reached (kUnavailable/kTimeout)
  // opens the store from that file instead, stale (see Config::is_stale), unless the file is
  // missing or refused (then the original error is thrown).
  static std::unique_ptr<Store> open(const std::string& dsn, Options options = {});
  // Same, with the DSN and schema of a pool registered in `pools`.
  static std::unique_ptr<Store> open(const PoolManager& pools, const std::string& pool_name,
                                     Options options = {});

  ~Store() override;  // Calls shutdown().
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // See Config. Writes wait for the commit; values are at most Options::max_value_bytes of JSON
  // text. While stale, writes throw kUnavailable.
  WriteResult put(std::string_view key, const nlohmann::json& value,
                  const WriteOptions& options = {}) override;
  WriteResult erase(std::string_view key, const WriteOptions& options = {}) override;
  std::optional<KeyEntry> get_entry(std::string_view key) const override;
  std::optional<Versioned> get_versioned(std::string_view key) const override;
  CasResult set_if(std::string_view key, const nlohmann::json& value, int64_t expected_revision,
                   const WriteOptions& options = {}) override;
  CasResult remove_if(std::string_view key, int64_t expected_revision,
                      const WriteOptions& options = {}) override;
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

  // Reads: from the cache, never the database (see Config).
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

  uint32_t get_crc() const override;
  // Reloads everything from the table (see Config).
  void sync() override;
  Stats stats() const override;
  // Reads from the table (not the cache) what changed after `revision` (see Config).
  ChangesSince changes_since(int64_t revision, std::string_view prefix = {}) const override;
  bool is_stale() const override;
  void shutdown() override;

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace syncconfig
