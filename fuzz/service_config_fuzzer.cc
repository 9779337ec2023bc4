// libFuzzer target: the YAML service-definitions loader (src/config/service_config.h). Any
// mistake must come out as a ConfigError (never another exception, a crash or a hang), and a
// configuration it accepts must satisfy what the program relies on.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "config/service_config.h"
#include "syncconfig/error.h"
#include "util/validation.h"

namespace {

constexpr std::string_view kPassword = "fuzz-secret-pw";

std::optional<std::string> fake_env(const std::string& name) {
  static const std::map<std::string, std::string> env = {
      {"DATABASE_URL", "postgres://app:fuzz-secret-pw@db:5432/app?sslmode=disable"},
      {"DB_PASSWORD", std::string(kPassword)},
      {"TABLE", "app_config"},
      {"EMPTY", ""}};
  auto it = env.find(name);
  if (it == env.end()) return std::nullopt;
  return it->second;
}

bool valid_identifier(const std::string& s, std::size_t max) {
  try {
    syncconfig::internal::validate_identifier("x", s, max);
    return true;
  } catch (const syncconfig::Error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  syncconfig::service::ServiceConfig config;
  try {
    config = syncconfig::service::parse_service_config(text, fake_env, "fuzz.yaml");
  } catch (const syncconfig::service::ConfigError& e) {
    // A DSN that failed to parse is never quoted (it may hold a password).
    if (e.field() == "dsn" && e.message().find(kPassword) != std::string::npos) std::abort();
    return 0;
  }
  // Accepted: at least one store, each on a defined pool, with names safe for SQL.
  if (config.stores.empty()) std::abort();
  for (const auto& s : config.stores) {
    bool pool_found = false;
    for (const auto& p : config.pools) pool_found = pool_found || p.name == s.pool;
    if (!pool_found) std::abort();
    if (!valid_identifier(s.options.table_name, 40) || !valid_identifier(s.options.channel, 63) ||
        !valid_identifier(s.options.schema, 63)) {
      std::abort();
    }
    if (s.options.heartbeat_interval.count() <= 0 || s.options.reconnect_interval.count() <= 0 ||
        s.options.db_timeout.count() <= 0 || s.options.pool_size < 1) {
      std::abort();
    }
  }
  return 0;
}
