// PoolManager: named database pools, as in the reference service's DbPoolManager. A store can be
// opened from a pool's name instead of a DSN, so that several stores (e.g. one per tenant
// table) share a pool's connection settings.
//
// PoolManager is safe for concurrent access from multiple threads without external
// synchronization.
#pragma once

#include <map>
#include <mutex>
#include <string>

namespace syncconfig {

struct PoolDefinition {
  std::string dsn;     // libpq connection string or URI.
  std::string schema;  // Schema for the stores opened from this pool.
};

class PoolManager {
 public:
  // Registers (or replaces) a pool. Throws Error(kInvalidArgument) for an empty name or DSN or
  // an invalid schema name.
  void register_named(const std::string& name, const std::string& dsn,
                      const std::string& schema = "public");
  // Throws Error(kInvalidArgument) naming the pool when it is not registered.
  PoolDefinition get(const std::string& name) const;
  bool contains(const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, PoolDefinition> pools_;
};

}  // namespace syncconfig
