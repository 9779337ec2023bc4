#include "syncconfig/pool_manager.h"

#include <fmt/format.h>

#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig {

void PoolManager::register_named(const std::string& name, const std::string& dsn,
                                 const std::string& schema) {
  if (name.empty()) throw Error(ErrorCode::kInvalidArgument, "pool name is empty");
  if (dsn.empty()) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("pool '{}': dsn is empty", name));
  }
  internal::validate_identifier(fmt::format("schema of pool '{}'", name), schema,
                                internal::kMaxIdentifierBytes);
  std::lock_guard lock(mu_);
  pools_[name] = PoolDefinition{dsn, schema};
}

PoolDefinition PoolManager::get(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("no pool named '{}' is registered", name));
  }
  return it->second;
}

bool PoolManager::contains(const std::string& name) const {
  std::lock_guard lock(mu_);
  return pools_.contains(name);
}

}  // namespace syncconfig
