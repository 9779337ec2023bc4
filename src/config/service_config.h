// Service definitions: the YAML file of the reference service (lokstra's `service-definitions`)
// describing database pools (`dbpool_pg`) and synchronized config stores (`sync_config_pg`).
//
//   service-definitions:
//     my-db-pool:
//       type: dbpool_pg
//       params: { dsn: "postgres://app:${DB_PASSWORD}@db/app", schema: public }
//     config-service:
//       type: sync_config_pg
//       depends-on: [dbpool-manager]
//       params: { dbpool_name: my-db-pool, table_name: app_config, heartbeat_interval: 5 }
//
// Every mistake (unknown type or parameter, wrong value type, missing pool, dependency cycle,
// unset environment variable, invalid name) is a ConfigError naming the entry and the field.
// Messages never contain a DSN's password.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "syncconfig/options.h"

namespace syncconfig::service {

struct PoolEntry {
  std::string name;
  std::string dsn;
  std::string schema = "public";
};

struct StoreEntry {
  std::string name;
  std::string pool;             // Name of a PoolEntry.
  syncconfig::Options options;  // schema is the pool's.
};

struct ServiceConfig {
  std::vector<PoolEntry> pools;    // In dependency order.
  std::vector<StoreEntry> stores;  // In dependency order (never empty).
  // `serve: {auth: true}` beside service-definitions: `serve --auth` (named tokens, in the
  // first store's schema). Default false.
  bool auth = false;
  // `serve: {rate_limit: N, rate_limit_burst: M}`: `serve --rate-limit N --rate-limit-burst M`
  // (requests per second per token or address, HttpOptions::rate_limit). Default 0: none.
  int64_t rate_limit = 0;
  int64_t rate_limit_burst = 0;
  // `serve: {tls_cert: PATH, tls_key: PATH}`: `serve --tls-cert PATH --tls-key PATH` (both or
  // neither; paths as written, like snapshot_file). Default empty: plain HTTP.
  std::string tls_cert;
  std::string tls_key;
};

// A mistake in a service-definitions file.
// what(): "<source>: service 'NAME': field 'FIELD': message"; the service and field parts are
// left out when empty (e.g. a YAML syntax error).
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string entry, std::string field, const std::string& message,
              std::string source = "<config>");

  const std::string& entry() const noexcept { return entry_; }
  const std::string& field() const noexcept { return field_; }
  const std::string& source() const noexcept { return source_; }
  // The message without the source/service/field prefix.
  const std::string& message() const noexcept { return message_; }

 private:
  std::string entry_;
  std::string field_;
  std::string source_;
  std::string message_;
};

// Looks up an environment variable; std::nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// Parses a service-definitions document. `${VAR}` and `${VAR:default}` in any scalar value are
// replaced through `getenv` before the value is converted ("$${" stands for a literal "${").
// `source_name` prefixes every error message. Throws ConfigError.
ServiceConfig parse_service_config(std::string_view yaml_text, const EnvLookup& getenv,
                                   std::string_view source_name = "<config>");

// Reads and parses `file`, substituting from the process environment. Throws ConfigError (also
// when the file cannot be read).
ServiceConfig load_service_config(const std::filesystem::path& file);

}  // namespace syncconfig::service
