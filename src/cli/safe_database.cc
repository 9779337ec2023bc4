// The commands of safe changes on the database (--dsn, --config): the library's Store.
#include "cli/safe_target.h"
#include "cli/target.h"
#include "syncconfig/syncconfig.h"

namespace syncconfig::cli {
namespace {

class DatabaseTarget final : public SafeTarget {
 public:
  explicit DatabaseTarget(std::unique_ptr<Store> store) : store_(std::move(store)) {}

  // The store holds no LISTEN connection: its cache is the table as read when it opened.
  Snapshot read(const std::string& prefix) override { return store_->snapshot(prefix); }
  std::optional<Config::Versioned> versioned(const std::string& key) override {
    return store_->get_versioned(key);
  }
  TxnResult commit(const Transaction& txn) override { return store_->commit(txn); }
  std::vector<HistoryRecord> history(const Config::HistoryQuery& query) override {
    return store_->history(query);
  }
  Snapshot snapshot_at(int64_t revision, const std::string& prefix) override {
    return store_->snapshot_at(revision, prefix);
  }
  TxnResult rollback(const std::string& target, bool prefix, int64_t revision,
                     const std::string& comment) override {
    return store_->rollback(target, prefix, revision, comment);
  }
  Lease grant_lease(std::chrono::seconds ttl) override { return store_->grant_lease(ttl); }
  std::optional<Lease> keep_alive(int64_t lease) override { return store_->keep_alive(lease); }
  bool revoke_lease(int64_t lease) override { return store_->revoke_lease(lease); }

 private:
  std::unique_ptr<Store> store_;
};

}  // namespace

std::unique_ptr<SafeTarget> database_target(const ConnectionArgs& args) {
  return std::make_unique<DatabaseTarget>(open_store(args, /*notifications=*/false));
}

std::unique_ptr<SafeTarget> open_safe_target(const ConnectionArgs& args) {
  if (std::optional<ServerTarget> server = choose_server(args)) return server_target(*server);
  return database_target(args);
}

}  // namespace syncconfig::cli
