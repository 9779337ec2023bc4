#include "config/service_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig::service {
namespace {

using std::chrono::milliseconds;

constexpr const char* kPoolType = "dbpool_pg";
constexpr const char* kStoreType = "sync_config_pg";
// The reference's built-in pool manager service, which `depends-on` may name.
constexpr const char* kBuiltinPoolManager = "dbpool-manager";

const std::vector<std::string> kPoolParams = {"dsn", "schema"};
const std::vector<std::string> kStoreParams = {
    "dbpool_name",        "db_pool_name",       "table_name",       "channel",
    "heartbeat_interval", "reconnect_interval", "sync_on_mismatch", "enable_notification",
    "db_timeout",         "pool_size",          "snapshot_file",    "prepared_statements",
    "listen_dsn"};

// A value quoted for a message, escaped so that control characters cannot garble it.
std::string shown(std::string_view s) {
  constexpr std::size_t kMax = 80;
  std::string text(s.substr(0, kMax));
  if (s.size() > kMax) text += "...";
  return internal::quote_for_message(text);
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" for the closest known name within two edits, else "".
std::string suggestion(std::string_view name, const std::vector<std::string>& known) {
  const std::string* best = nullptr;
  std::size_t best_distance = 3;
  for (const std::string& k : known) {
    std::size_t d = edit_distance(name, k);
    if (d < best_distance) {
      best = &k;
      best_distance = d;
    }
  }
  return best == nullptr ? std::string() : " (did you mean '" + *best + "'?)";
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool valid_entry_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// One service entry as written, before its parameters are interpreted.
struct RawEntry {
  std::string name;
  std::string type;
  std::vector<std::string> depends_on;
  std::map<std::string, std::string> params;  // Substituted scalar values.
};

class Parser {
 public:
  Parser(const EnvLookup& getenv, std::string source)
      : getenv_(getenv), source_(std::move(source)) {}

  ServiceConfig parse(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      fail("", "",
           fmt::format("invalid YAML at line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1,
                       e.msg));
    }
    if (!root.IsMap()) fail("", "", "expected a mapping with a 'service-definitions' section");
    YAML::Node defs = root["service-definitions"];
    if (!defs || defs.IsNull()) fail("", "service-definitions", "missing");
    if (!defs.IsMap()) fail("", "service-definitions", "expected a mapping of name to service");

    std::vector<RawEntry> raw;
    std::set<std::string> names;
    for (auto it = defs.begin(); it != defs.end(); ++it) {
      std::string name = it->first.IsScalar() ? it->first.Scalar() : std::string();
      if (!valid_entry_name(name)) {
        fail(name, "", "invalid service name: use letters, digits, '_', '-' and '.'");
      }
      if (!names.insert(name).second) fail(name, "", "defined more than once");
      raw.push_back(read_entry(name, it->second));
    }

    ServiceConfig config;
    // serve: {auth: true}, the file's equivalent of `serve --auth`.
    if (YAML::Node serve = root["serve"]; serve && !serve.IsNull()) {
      if (!serve.IsMap()) fail("", "serve", "expected a mapping (e.g. {auth: true})");
      for (auto it = serve.begin(); it != serve.end(); ++it) {
        std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
        RawEntry serve_entry;
        serve_entry.name = "serve";
        if (key == "auth") {
          config.auth = to_bool(serve_entry, "auth", scalar("serve", "auth", it->second));
        } else if (key == "rate_limit" || key == "rate_limit_burst") {
          const int64_t n = to_int(serve_entry, key, scalar("serve", key, it->second), 0, 1000000);
          (key == "rate_limit" ? config.rate_limit : config.rate_limit_burst) = n;
        } else if (key == "tls_cert" || key == "tls_key") {
          std::string path = scalar("serve", key, it->second);
          if (path.empty()) fail("serve", key, "is empty (leave it out for plain HTTP)");
          (key == "tls_cert" ? config.tls_cert : config.tls_key) = std::move(path);
        } else {
          fail("serve", key,
               "unknown setting (known: auth, rate_limit, rate_limit_burst, tls_cert, tls_key)");
        }
      }
      if (config.tls_cert.empty() != config.tls_key.empty()) {
        fail("serve", config.tls_cert.empty() ? "tls_key" : "tls_cert",
             config.tls_cert.empty() ? "needs tls_cert beside it" : "needs tls_key beside it");
      }
    }
    std::map<std::string, const RawEntry*> by_name;
    for (const RawEntry& e : raw) by_name[e.name] = &e;
    std::map<std::string, PoolEntry> pools;
    std::map<std::string, StoreEntry> stores;
    for (const RawEntry& e : raw) {
      if (e.type == kPoolType) pools[e.name] = make_pool(e);
    }
    for (const RawEntry& e : raw) {
      if (e.type == kStoreType) stores[e.name] = make_store(e, by_name, pools);
    }
    if (stores.empty()) fail("", "service-definitions", "no sync_config_pg service is defined");
    check_channels(raw, stores);

    for (const std::string& name : dependency_order(raw, by_name)) {
      if (auto p = pools.find(name); p != pools.end()) config.pools.push_back(p->second);
      if (auto s = stores.find(name); s != stores.end()) config.stores.push_back(s->second);
    }
    return config;
  }

 private:
  [[noreturn]] void fail(const std::string& entry, const std::string& field,
                         const std::string& message) const {
    throw ConfigError(entry, field, message, source_);
  }

  // Replaces ${VAR} and ${VAR:default}; "$${" is a literal "${". The result is not rescanned.
  std::string substitute(const std::string& entry, const std::string& field,
                         std::string_view text) const {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
      if (text.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 3;
        continue;
      }
      if (text.compare(i, 2, "${") != 0) {
        out += text[i++];
        continue;
      }
      std::size_t close = text.find('}', i + 2);
      if (close == std::string_view::npos) fail(entry, field, "unterminated '${' (missing '}')");
      std::string_view ref = text.substr(i + 2, close - i - 2);
      std::size_t colon = ref.find(':');
      std::string name(ref.substr(0, colon));
      if (!valid_env_name(name)) {
        // A DSN's text may be a password, and so may any default: quote neither.
        std::string quoted =
            field == "dsn" ? std::string() : " " + shown("${" + name.substr(0, 64) + "}");
        fail(entry, field,
             fmt::format("invalid environment variable reference{}: a name is letters, digits "
                         "and '_', not starting with a digit",
                         quoted));
      }
      std::optional<std::string> value = getenv_(name);
      if (!value) {
        if (colon == std::string_view::npos) {
          fail(entry, field,
               fmt::format("environment variable '{}' is not set and has no default "
                           "(write ${{{}:default}} to give one)",
                           name, name));
        }
        value = std::string(ref.substr(colon + 1));
      }
      out += *value;
      i = close + 1;
    }
    return out;
  }

  std::string scalar(const std::string& entry, const std::string& field,
                     const YAML::Node& node) const {
    if (node.IsNull()) fail(entry, field, "has no value");
    if (!node.IsScalar()) fail(entry, field, "expected a single value, not a list or mapping");
    return substitute(entry, field, node.Scalar());
  }

  RawEntry read_entry(const std::string& name, const YAML::Node& body) {
    if (!body.IsMap()) fail(name, "", "expected a mapping with 'type' and 'params'");
    RawEntry e;
    e.name = name;
    std::set<std::string> seen;
    const YAML::Node* params = nullptr;
    YAML::Node params_node;
    std::string params_key;
    for (auto it = body.begin(); it != body.end(); ++it) {
      std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
      if (!seen.insert(key).second) fail(name, key, "given more than once");
      if (key == "type") {
        e.type = scalar(name, key, it->second);
      } else if (key == "depends-on") {
        e.depends_on = read_depends_on(name, it->second);
      } else if (key == "params" || key == "config") {
        if (params != nullptr) {
          fail(name, key,
               fmt::format("both '{}' and '{}' are given; use one of them", params_key, key));
        }
        params_node = it->second;
        params = &params_node;
        params_key = key;
      } else {
        fail(name, key,
             fmt::format("unknown field{}; expected type, depends-on, params or config",
                         suggestion(key, {"type", "depends-on", "params", "config"})));
      }
    }
    if (e.type.empty()) fail(name, "type", "missing (dbpool_pg or sync_config_pg)");
    if (e.type != kPoolType && e.type != kStoreType) {
      fail(name, "type",
           fmt::format("unknown service type {} (expected dbpool_pg or sync_config_pg)",
                       shown(e.type)));
    }
    if (params != nullptr && !params->IsNull()) {
      if (!params->IsMap()) fail(name, params_key, "expected a mapping of parameters");
      const auto& known = e.type == kPoolType ? kPoolParams : kStoreParams;
      for (auto it = params->begin(); it != params->end(); ++it) {
        std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
        if (std::find(known.begin(), known.end(), key) == known.end()) {
          fail(name, key,
               fmt::format("unknown parameter for type {}{}; known: {}", e.type,
                           suggestion(key, known), join(known, ", ")));
        }
        if (e.params.count(key) != 0) fail(name, key, "given more than once");
        e.params[key] = scalar(name, key, it->second);
      }
    }
    return e;
  }

  std::vector<std::string> read_depends_on(const std::string& name, const YAML::Node& node) {
    std::vector<std::string> out;
    if (node.IsNull()) return out;
    if (node.IsScalar()) {
      out.push_back(scalar(name, "depends-on", node));
      return out;
    }
    if (!node.IsSequence()) fail(name, "depends-on", "expected a list of service names");
    for (const YAML::Node& item : node) out.push_back(scalar(name, "depends-on", item));
    return out;
  }

  // ---- value conversions ----

  const std::string* param(const RawEntry& e, const std::string& key) const {
    auto it = e.params.find(key);
    return it == e.params.end() ? nullptr : &it->second;
  }

  bool to_bool(const RawEntry& e, const std::string& field, const std::string& v) const {
    std::string lower(v);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "true" || lower == "yes" || lower == "on") return true;
    if (lower == "false" || lower == "no" || lower == "off") return false;
    fail(e.name, field, fmt::format("expected a boolean (true or false), got {}", shown(v)));
  }

  // A non-negative decimal integer, or nullopt when `v` is not one.
  static std::optional<int64_t> parse_count(const std::string& v) {
    if (v.empty() || v.size() > 18) return std::nullopt;
    if (!std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoll(v);
  }

  int64_t to_int(const RawEntry& e, const std::string& field, const std::string& v, int64_t min,
                 int64_t max) const {
    std::optional<int64_t> n = parse_count(v);
    if (!n) fail(e.name, field, fmt::format("expected an integer, got {}", shown(v)));
    if (*n < min || *n > max) {
      fail(e.name, field, fmt::format("{} is out of range {}..{}", *n, min, max));
    }
    return *n;
  }

  // A plain integer counts `unit`s; else a duration such as "500ms", "30s", "5m", "1h30m",
  // "1.5s". Must be positive and at most a year.
  milliseconds to_duration(const RawEntry& e, const std::string& field, const std::string& v,
                           milliseconds unit, const char* unit_name) const {
    constexpr double kMaxMs = 366.0 * 24 * 3600 * 1000;
    auto bad = [&] {
      fail(e.name, field,
           fmt::format("expected a positive integer ({}) or a duration such as \"500ms\", "
                       "\"30s\", \"5m\", \"1h\", got {}",
                       unit_name, shown(v)));
    };
    double total_ms = 0;
    if (std::optional<int64_t> n = parse_count(v)) {
      total_ms = static_cast<double>(*n) * static_cast<double>(unit.count());
    } else {
      std::size_t i = 0;
      if (v.empty()) bad();
      while (i < v.size()) {
        std::size_t start = i;
        while (i < v.size() && (std::isdigit(static_cast<unsigned char>(v[i])) || v[i] == '.')) {
          ++i;
        }
        std::string number = v.substr(start, i - start);
        if (number.empty() || number.front() == '.' || number.back() == '.' ||
            std::count(number.begin(), number.end(), '.') > 1 || number.size() > 18) {
          bad();
        }
        std::size_t unit_start = i;
        while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
        std::string u = v.substr(unit_start, i - unit_start);
        double factor = 0;
        if (u == "ms") {
          factor = 1;
        } else if (u == "s") {
          factor = 1000;
        } else if (u == "m") {
          factor = 60'000;
        } else if (u == "h") {
          factor = 3'600'000;
        } else {
          bad();
        }
        total_ms += std::strtod(number.c_str(), nullptr) * factor;
      }
    }
    if (total_ms > kMaxMs) fail(e.name, field, fmt::format("{} is too long (at most a year)", v));
    auto ms = milliseconds(static_cast<int64_t>(total_ms));
    if (ms.count() <= 0) fail(e.name, field, fmt::format("must be positive, got {}", shown(v)));
    return ms;
  }

  void check_identifier(const RawEntry& e, const std::string& field, const std::string& value,
                        std::size_t max_bytes) const {
    try {
      internal::validate_identifier(field, value, max_bytes);
    } catch (const Error& error) {
      fail(e.name, field, error.message());
    }
  }

  // ---- entries ----

  PoolEntry make_pool(const RawEntry& e) const {
    PoolEntry pool;
    pool.name = e.name;
    const std::string* dsn = param(e, "dsn");
    if (dsn == nullptr || dsn->empty())
      fail(e.name, "dsn", "missing (a PostgreSQL DSN is required)");
    // libpq's parse errors may quote the whole string, password included: not shown.
    if (!internal::is_parsable_dsn(*dsn)) {
      fail(e.name, "dsn",
           "not a valid libpq connection string or URI (details are not shown because they may "
           "contain a password)");
    }
    pool.dsn = *dsn;
    if (const std::string* schema = param(e, "schema")) pool.schema = *schema;
    check_identifier(e, "schema", pool.schema, internal::kMaxIdentifierBytes);
    return pool;
  }

  StoreEntry make_store(const RawEntry& e, const std::map<std::string, const RawEntry*>& by_name,
                        const std::map<std::string, PoolEntry>& pools) const {
    StoreEntry store;
    store.name = e.name;
    const std::string* pool = param(e, "dbpool_name");
    const std::string* alias = param(e, "db_pool_name");
    if (pool != nullptr && alias != nullptr) {
      fail(e.name, "db_pool_name", "both dbpool_name and db_pool_name are given; use one");
    }
    if (pool == nullptr) pool = alias;
    const std::string pool_field = alias != nullptr ? "db_pool_name" : "dbpool_name";
    if (pool == nullptr || pool->empty()) {
      fail(e.name, "dbpool_name", "missing (the name of a dbpool_pg service is required)");
    }
    auto found = pools.find(*pool);
    if (found == pools.end()) {
      auto other = by_name.find(*pool);
      if (other != by_name.end()) {
        fail(e.name, pool_field,
             fmt::format("service '{}' is a {}, not a dbpool_pg", *pool, other->second->type));
      }
      fail(e.name, pool_field,
           fmt::format("no dbpool_pg service named {} is defined", shown(*pool)));
    }
    store.pool = *pool;

    Options& o = store.options;
    o.schema = found->second.schema;
    if (const std::string* v = param(e, "table_name")) o.table_name = *v;
    check_identifier(e, "table_name", o.table_name, internal::kMaxTableNameBytes);
    if (const std::string* v = param(e, "channel")) o.channel = *v;
    check_identifier(e, "channel", o.channel, internal::kMaxIdentifierBytes);
    if (const std::string* v = param(e, "heartbeat_interval")) {
      o.heartbeat_interval =
          to_duration(e, "heartbeat_interval", *v, std::chrono::minutes(1), "minutes");
    }
    if (const std::string* v = param(e, "reconnect_interval")) {
      o.reconnect_interval =
          to_duration(e, "reconnect_interval", *v, std::chrono::seconds(1), "seconds");
    }
    if (const std::string* v = param(e, "db_timeout")) {
      o.db_timeout = to_duration(e, "db_timeout", *v, std::chrono::seconds(1), "seconds");
    }
    if (const std::string* v = param(e, "sync_on_mismatch")) {
      o.sync_on_mismatch = to_bool(e, "sync_on_mismatch", *v);
    }
    if (const std::string* v = param(e, "enable_notification")) {
      o.enable_notification = to_bool(e, "enable_notification", *v);
    }
    if (const std::string* v = param(e, "pool_size")) {
      o.pool_size = static_cast<std::size_t>(to_int(e, "pool_size", *v, 1, 1000));
    }
    if (const std::string* v = param(e, "prepared_statements")) {
      if (*v == "auto") {
        o.prepared_statements = PreparedStatements::kAuto;
      } else if (*v == "on") {
        o.prepared_statements = PreparedStatements::kOn;
      } else if (*v == "off") {
        o.prepared_statements = PreparedStatements::kOff;
      } else {
        fail(e.name, "prepared_statements",
             fmt::format("expected auto, on or off, got {}", shown(*v)));
      }
    }
    if (const std::string* v = param(e, "listen_dsn")) {
      // Never quoted back: it may hold a password.
      if (v->empty()) fail(e.name, "listen_dsn", "is empty (leave it out to use the pool's dsn)");
      o.listen_dsn = *v;
    }
    if (const std::string* v = param(e, "snapshot_file")) {
      if (v->empty()) fail(e.name, "snapshot_file", "is empty (leave it out for no file)");
      o.snapshot_file = *v;
    }
    return store;
  }

  // All instances of a table notify one channel (the table's trigger names it).
  void check_channels(const std::vector<RawEntry>& raw,
                      const std::map<std::string, StoreEntry>& stores) const {
    std::map<std::pair<std::string, std::string>, const StoreEntry*> tables;
    for (const RawEntry& e : raw) {
      auto s = stores.find(e.name);
      if (s == stores.end()) continue;
      const StoreEntry& store = s->second;
      auto [it, inserted] =
          tables.emplace(std::make_pair(store.pool, store.options.table_name), &store);
      if (!inserted && it->second->options.channel != store.options.channel) {
        fail(store.name, "channel",
             fmt::format("table '{}' of pool '{}' already uses channel '{}' (service '{}'); all "
                         "services of one table must use the same channel",
                         store.options.table_name, store.pool, it->second->options.channel,
                         it->second->name));
      }
    }
  }

  // Entry names so that every entry comes after what it depends on (file order otherwise).
  std::vector<std::string> dependency_order(
      const std::vector<RawEntry>& raw,
      const std::map<std::string, const RawEntry*>& by_name) const {
    std::map<std::string, std::vector<std::string>> deps;
    for (const RawEntry& e : raw) {
      std::vector<std::string>& d = deps[e.name];
      for (const std::string& dep : e.depends_on) {
        if (by_name.count(dep) == 0) {
          if (dep == kBuiltinPoolManager) continue;
          fail(e.name, "depends-on", fmt::format("no service named {} is defined", shown(dep)));
        }
        d.push_back(dep);
      }
      if (e.type == kStoreType) {
        const std::string* pool = param(e, "dbpool_name");
        if (pool == nullptr) pool = param(e, "db_pool_name");
        d.push_back(*pool);
      }
    }
    std::vector<std::string> order;
    std::set<std::string> done;
    while (order.size() < raw.size()) {
      bool progressed = false;
      for (const RawEntry& e : raw) {
        if (done.count(e.name) != 0) continue;
        const auto& d = deps[e.name];
        if (std::all_of(d.begin(), d.end(), [&](const std::string& x) { return done.count(x); })) {
          order.push_back(e.name);
          done.insert(e.name);
          progressed = true;
          break;  // Rescan: the earliest ready entry in file order goes next.
        }
      }
      if (!progressed) report_cycle(raw, deps, done);
    }
    return order;
  }

  [[noreturn]] void report_cycle(const std::vector<RawEntry>& raw,
                                 std::map<std::string, std::vector<std::string>>& deps,
                                 const std::set<std::string>& done) const {
    // Walk unfinished dependencies from an unfinished entry until one repeats.
    std::string current;
    for (const RawEntry& e : raw) {
      if (done.count(e.name) == 0) {
        current = e.name;
        break;
      }
    }
    std::vector<std::string> path;
    while (std::find(path.begin(), path.end(), current) == path.end()) {
      path.push_back(current);
      for (const std::string& d : deps[current]) {
        if (done.count(d) == 0) {
          current = d;
          break;
        }
      }
    }
    std::vector<std::string> cycle(std::find(path.begin(), path.end(), current), path.end());
    cycle.push_back(current);
    fail(cycle.front(), "depends-on", fmt::format("dependency cycle: {}", join(cycle, " -> ")));
  }

  const EnvLookup& getenv_;
  std::string source_;
};

std::string describe(const std::string& source, const std::string& entry, const std::string& field,
                     const std::string& message) {
  std::string out = source.empty() ? std::string() : source + ": ";
  if (!entry.empty()) out += "service '" + entry + "': ";
  if (!field.empty()) out += "field '" + field + "': ";
  return out + message;
}

}  // namespace

ConfigError::ConfigError(std::string entry, std::string field, const std::string& message,
                         std::string source)
    : std::runtime_error(describe(source, entry, field, message)),
      entry_(std::move(entry)),
      field_(std::move(field)),
      source_(std::move(source)),
      message_(message) {}

ServiceConfig parse_service_config(std::string_view yaml_text, const EnvLookup& getenv,
                                   std::string_view source_name) {
  return Parser(getenv, std::string(source_name)).parse(yaml_text);
}

ServiceConfig load_service_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw ConfigError("", "", fmt::format("cannot read the file: {}", std::strerror(errno)),
                      file.string());
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("", "", "reading the file failed", file.string());
  return parse_service_config(
      text.str(),
      [](const std::string& name) -> std::optional<std::string> {
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      },
      file.string());
}

}  // namespace syncconfig::service
