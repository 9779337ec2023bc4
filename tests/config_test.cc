// The service-definitions loader: the reference's YAML format, and a ConfigError naming the entry
// and the field for every mistake. No database needed.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>

#include "config/service_config.h"

namespace syncconfig::service {
namespace {

using namespace std::chrono_literals;
using Env = std::map<std::string, std::string>;

EnvLookup lookup(Env env) {
  return [env = std::move(env)](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

ServiceConfig parse(const std::string& yaml, Env env = {}) {
  return parse_service_config(yaml, lookup(std::move(env)), "test.yaml");
}

// The ConfigError that parsing `yaml` throws (a failed test if it does not throw one).
ConfigError error_of(const std::string& yaml, Env env = {}) {
  try {
    parse(yaml, std::move(env));
  } catch (const ConfigError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ConfigError: " << e.what();
    return ConfigError("", "", "");
  }
  ADD_FAILURE() << "no error for:\n" << yaml;
  return ConfigError("", "", "");
}

// A pool "db" plus one sync_config_pg "cfg" whose params are `store_params` (YAML lines, indented
// by 6 spaces).
std::string with_store_params(const std::string& store_params) {
  return "service-definitions:\n"
         "  db:\n"
         "    type: dbpool_pg\n"
         "    params:\n"
         "      dsn: postgresql://app@localhost/app\n"
         "  cfg:\n"
         "    type: sync_config_pg\n"
         "    params:\n"
         "      dbpool_name: db\n" +
         store_params;
}

TEST(ServiceConfig, a_serve_section_turns_on_named_tokens) {
  EXPECT_FALSE(parse(with_store_params("")).auth);
  EXPECT_TRUE(parse("serve:\n  auth: true\n" + with_store_params("")).auth);
  EXPECT_FALSE(parse("serve:\n  auth: ${AUTH:false}\n" + with_store_params("")).auth);
  ConfigError unknown = error_of("serve:\n  tls: true\n" + with_store_params(""));
  EXPECT_EQ(unknown.entry(), "serve");
  EXPECT_EQ(unknown.field(), "tls");
  ConfigError not_bool = error_of("serve:\n  auth: maybe\n" + with_store_params(""));
  EXPECT_EQ(not_bool.field(), "auth");
}

TEST(ServiceConfig, a_serve_section_sets_the_rate_limit) {
  EXPECT_EQ(parse(with_store_params("")).rate_limit, 0);
  ServiceConfig c =
      parse("serve:\n  rate_limit: 200\n  rate_limit_burst: 50\n" + with_store_params(""));
  EXPECT_EQ(c.rate_limit, 200);
  EXPECT_EQ(c.rate_limit_burst, 50);
  ConfigError negative = error_of("serve:\n  rate_limit: -1\n" + with_store_params(""));
  EXPECT_EQ(negative.field(), "rate_limit");
  ConfigError too_big = error_of("serve:\n  rate_limit_burst: 2000000\n" + with_store_params(""));
  EXPECT_EQ(too_big.field(), "rate_limit_burst");
  EXPECT_NE(std::string(too_big.what()).find("out of range"), std::string::npos) << too_big.what();
}

TEST(ServiceConfig, a_serve_section_names_the_tls_certificate_and_key_together) {
  EXPECT_EQ(parse(with_store_params("")).tls_cert, "");
  ServiceConfig c = parse(
      "serve:\n  tls_cert: /etc/syncconfig/cert.pem\n"
      "  tls_key: /etc/syncconfig/key.pem\n" +
      with_store_params(""));
  EXPECT_EQ(c.tls_cert, "/etc/syncconfig/cert.pem");
  EXPECT_EQ(c.tls_key, "/etc/syncconfig/key.pem");
  ConfigError alone = error_of("serve:\n  tls_cert: /c.pem\n" + with_store_params(""));
  EXPECT_EQ(alone.field(), "tls_cert");
  EXPECT_NE(std::string(alone.what()).find("needs tls_key"), std::string::npos) << alone.what();
  ConfigError empty = error_of("serve:\n  tls_key: ''\n" + with_store_params(""));
  EXPECT_EQ(empty.field(), "tls_key");
  ConfigError unknown = error_of("serve:\n  tls_ca: /x\n" + with_store_params(""));
  EXPECT_NE(std::string(unknown.what()).find("tls_cert, tls_key"), std::string::npos)
      << unknown.what();
}

TEST(ServiceConfig, the_reference_readme_example_parses) {
  ServiceConfig c = load_service_config(SYNCCONFIG_CONFIG_TEST_DATA "/reference.yaml");
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].name, "my-db-pool");
  EXPECT_EQ(c.pools[0].dsn, "postgres://user:pass@localhost:5432/mydb?sslmode=disable");
  EXPECT_EQ(c.pools[0].schema, "public");
  ASSERT_EQ(c.stores.size(), 1u);
  const StoreEntry& s = c.stores[0];
  EXPECT_EQ(s.name, "config-service");
  EXPECT_EQ(s.pool, "my-db-pool");
  EXPECT_EQ(s.options.table_name, "app_config");
  EXPECT_EQ(s.options.channel, "config_updates");
  EXPECT_EQ(s.options.schema, "public");
  EXPECT_EQ(s.options.heartbeat_interval, 5min);
  EXPECT_TRUE(s.options.sync_on_mismatch);
  EXPECT_TRUE(s.options.enable_notification);
  // Not given: the library's defaults.
  Options defaults;
  EXPECT_EQ(s.options.reconnect_interval, defaults.reconnect_interval);
  EXPECT_EQ(s.options.db_timeout, defaults.db_timeout);
  EXPECT_EQ(s.options.pool_size, defaults.pool_size);
  EXPECT_EQ(s.options.prepared_statements, PreparedStatements::kAuto);
  EXPECT_EQ(s.options.listen_dsn, "");
}

TEST(ServiceConfig, prepared_statements_and_listen_dsn_are_read_from_the_store_params) {
  ServiceConfig c = parse(with_store_params(
      "      prepared_statements: off\n"
      "      listen_dsn: host=db.internal port=5432 dbname=app user=app password=pw\n"));
  ASSERT_EQ(c.stores.size(), 1u);
  EXPECT_EQ(c.stores[0].options.prepared_statements, PreparedStatements::kOff);
  EXPECT_EQ(c.stores[0].options.listen_dsn,
            "host=db.internal port=5432 dbname=app user=app password=pw");
  EXPECT_EQ(parse(with_store_params("      prepared_statements: on\n"))
                .stores[0]
                .options.prepared_statements,
            PreparedStatements::kOn);
  EXPECT_EQ(parse(with_store_params("      prepared_statements: auto\n"))
                .stores[0]
                .options.prepared_statements,
            PreparedStatements::kAuto);
}

TEST(ServiceConfig, tenants_share_a_pool_in_dependency_order_with_config_and_env) {
  std::string yaml;
  {
    FILE* f = std::fopen(SYNCCONFIG_CONFIG_TEST_DATA "/tenants.yaml", "rb");
    ASSERT_NE(f, nullptr);
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) yaml.append(buffer, n);
    std::fclose(f);
  }
  ServiceConfig c = parse(yaml, {{"DB_PASSWORD", "s3cret"}, {"PGPORT", "6543"}});
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].name, "main-pool");
  // ${PGHOST:127.0.0.1}: unset, default; ${PGPORT:5432}: set, value; ${DB_PASSWORD}: value.
  EXPECT_EQ(c.pools[0].dsn, "host=127.0.0.1 port=6543 dbname=app user=app password=s3cret");
  EXPECT_EQ(c.pools[0].schema, "tenants");
  ASSERT_EQ(c.stores.size(), 2u);
  // The pool is defined after tenant-b-config but comes first; stores keep file order.
  EXPECT_EQ(c.stores[0].name, "tenant-b-config");
  EXPECT_EQ(c.stores[1].name, "tenant-a-config");
  for (const StoreEntry& s : c.stores) {
    EXPECT_EQ(s.pool, "main-pool");
    EXPECT_EQ(s.options.schema, "tenants");
    EXPECT_EQ(s.options.channel, "tenant_changes");
  }
  const Options& b = c.stores[0].options;
  EXPECT_EQ(b.table_name, "tenant_b_config");
  EXPECT_EQ(b.heartbeat_interval, 30s);
  EXPECT_EQ(b.reconnect_interval, 2s);
  EXPECT_EQ(b.db_timeout, 1500ms);
  EXPECT_EQ(b.pool_size, 2u);
  EXPECT_FALSE(b.sync_on_mismatch);
  EXPECT_FALSE(b.enable_notification);
  EXPECT_EQ(c.stores[1].options.table_name, "tenant_a_config");
  EXPECT_EQ(c.stores[1].options.heartbeat_interval, Options().heartbeat_interval);
}

TEST(ServiceConfig, durations_booleans_and_substitution_forms) {
  ServiceConfig c = parse(with_store_params("      heartbeat_interval: 500ms\n"
                                            "      reconnect_interval: 1m30s\n"
                                            "      db_timeout: 1.5s\n"
                                            "      sync_on_mismatch: ${SYNC:off}\n"
                                            "      enable_notification: \"Yes\"\n"
                                            "      table_name: t_${TENANT}\n"
                                            "      channel: ${CHANNEL:ch}_x\n"),
                          {{"TENANT", "acme"}, {"CHANNEL", ""}});
  const Options& o = c.stores.at(0).options;
  EXPECT_EQ(o.heartbeat_interval, 500ms);
  EXPECT_EQ(o.reconnect_interval, 90s);
  EXPECT_EQ(o.db_timeout, 1500ms);
  EXPECT_FALSE(o.sync_on_mismatch);
  EXPECT_TRUE(o.enable_notification);
  EXPECT_EQ(o.table_name, "t_acme");
  EXPECT_EQ(o.channel, "_x");  // CHANNEL is set to "": its default is not used.
  // A variable set to "" gives ""; "$${" is a literal "${", which is then not a valid channel.
  ConfigError e =
      error_of(with_store_params("      channel: ${CHANNEL:ch}$${x}\n"), {{"CHANNEL", ""}});
  EXPECT_EQ(e.field(), "channel");
  EXPECT_NE(e.message().find("\"${x}\""), std::string::npos) << e.what();
  ServiceConfig h =
      parse(with_store_params("      heartbeat_interval: \"5m\"\n"
                              "      reconnect_interval: 250ms\n"));
  EXPECT_EQ(h.stores[0].options.heartbeat_interval, 5min);
  EXPECT_EQ(h.stores[0].options.reconnect_interval, 250ms);
}

TEST(ServiceConfig, what_names_the_file_the_service_and_the_field) {
  ConfigError e = error_of(
      "service-definitions:\n"
      "  cfg:\n"
      "    type: sync_config_pgx\n");
  EXPECT_EQ(e.entry(), "cfg");
  EXPECT_EQ(e.field(), "type");
  EXPECT_EQ(e.source(), "test.yaml");
  EXPECT_EQ(std::string(e.what()).rfind("test.yaml: service 'cfg': field 'type': ", 0), 0u)
      << e.what();
  EXPECT_NE(std::string(e.what()).find("sync_config_pgx"), std::string::npos);
}

struct ErrorCase {
  const char* name;
  std::string yaml;
  std::string entry;
  std::string field;
  std::string in_message;  // A substring of the message.
};

class ServiceConfigErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ServiceConfigErrors, name_the_entry_and_the_field) {
  const ErrorCase& c = GetParam();
  ConfigError e = error_of(c.yaml, {{"SET", "1"}});
  EXPECT_EQ(e.entry(), c.entry) << e.what();
  EXPECT_EQ(e.field(), c.field) << e.what();
  EXPECT_NE(e.message().find(c.in_message), std::string::npos) << e.what();
}

const std::string kPool =
    "service-definitions:\n"
    "  db:\n"
    "    type: dbpool_pg\n"
    "    params:\n"
    "      dsn: postgresql://app@localhost/app\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, ServiceConfigErrors,
    ::testing::Values(
        ErrorCase{"unknown_type", kPool + "  x:\n    type: redis\n", "x", "type", "redis"},
        ErrorCase{"missing_type", kPool + "  x:\n    params: {}\n", "x", "type", "missing"},
        ErrorCase{"unknown_entry_field",
                  kPool + "  x:\n    type: sync_config_pg\n    dependson: []\n", "x", "dependson",
                  "unknown field"},
        ErrorCase{"missing_dbpool_name",
                  kPool + "  x:\n    type: sync_config_pg\n    params:\n"
                          "      table_name: t\n",
                  "x", "dbpool_name", "missing"},
        ErrorCase{"unknown_pool",
                  kPool + "  cfg:\n    type: sync_config_pg\n    params: {dbpool_name: nope}\n",
                  "cfg", "dbpool_name", "\"nope\""},
        ErrorCase{"pool_is_not_a_pool",
                  kPool + "  a:\n    type: sync_config_pg\n    params: {dbpool_name: db}\n"
                          "  b:\n    type: sync_config_pg\n    params: {db_pool_name: a}\n",
                  "b", "db_pool_name", "not a dbpool_pg"},
        ErrorCase{"both_pool_names", with_store_params("      db_pool_name: db\n"), "cfg",
                  "db_pool_name", "both"},
        ErrorCase{"unknown_parameter_typo", with_store_params("      tabel_name: t\n"), "cfg",
                  "tabel_name",
                  "unknown parameter for type sync_config_pg (did you mean "
                  "'table_name'?)"},
        ErrorCase{"unknown_pool_parameter", kPool + "      max_conns: 5\n", "db", "max_conns",
                  "unknown parameter"},
        ErrorCase{"heartbeat_not_a_number", with_store_params("      heartbeat_interval: abc\n"),
                  "cfg", "heartbeat_interval", "\"abc\""},
        ErrorCase{"heartbeat_zero", with_store_params("      heartbeat_interval: 0\n"), "cfg",
                  "heartbeat_interval", "positive"},
        ErrorCase{"reconnect_negative", with_store_params("      reconnect_interval: -1\n"), "cfg",
                  "reconnect_interval", "\"-1\""},
        ErrorCase{"db_timeout_bad_unit", with_store_params("      db_timeout: 5x\n"), "cfg",
                  "db_timeout", "\"5x\""},
        ErrorCase{"bool_maybe", with_store_params("      sync_on_mismatch: maybe\n"), "cfg",
                  "sync_on_mismatch", "\"maybe\""},
        ErrorCase{"bool_number", with_store_params("      enable_notification: 2\n"), "cfg",
                  "enable_notification", "boolean"},
        ErrorCase{"pool_size_text", with_store_params("      pool_size: many\n"), "cfg",
                  "pool_size", "integer"},
        ErrorCase{"prepared_statements_maybe",
                  with_store_params("      prepared_statements: maybe\n"), "cfg",
                  "prepared_statements", "expected auto, on or off"},
        ErrorCase{"listen_dsn_empty", with_store_params("      listen_dsn: \"\"\n"), "cfg",
                  "listen_dsn", "is empty"},
        ErrorCase{"pool_size_zero", with_store_params("      pool_size: 0\n"), "cfg", "pool_size",
                  "out of range"},
        ErrorCase{"list_instead_of_value", with_store_params("      table_name: [a, b]\n"), "cfg",
                  "table_name", "single value"},
        ErrorCase{"empty_value", with_store_params("      channel:\n"), "cfg", "channel",
                  "no value"},
        ErrorCase{"params_and_config", with_store_params("    config:\n      table_name: t\n"),
                  "cfg", "config", "both"},
        ErrorCase{"invalid_table_name", with_store_params("      table_name: App-Config\n"), "cfg",
                  "table_name", "lowercase"},
        ErrorCase{"table_name_too_long",
                  with_store_params("      table_name: " + std::string(41, 't') + "\n"), "cfg",
                  "table_name", "40 bytes"},
        ErrorCase{"invalid_channel", with_store_params("      channel: 9lives\n"), "cfg", "channel",
                  "lowercase"},
        ErrorCase{"invalid_schema", kPool + "      schema: \"public; drop\"\n", "db", "schema",
                  "lowercase"},
        ErrorCase{"missing_dsn",
                  "service-definitions:\n  db:\n    type: dbpool_pg\n"
                  "  x:\n    type: sync_config_pg\n    params: {dbpool_name: db}\n",
                  "db", "dsn", "missing"},
        ErrorCase{"unset_variable", with_store_params("      table_name: ${TABLE}\n"), "cfg",
                  "table_name", "'TABLE' is not set"},
        ErrorCase{"unset_variable_in_type", kPool + "  x:\n    type: ${KIND}\n", "x", "type",
                  "'KIND'"},
        ErrorCase{"unterminated_variable", with_store_params("      table_name: ${TABLE\n"), "cfg",
                  "table_name", "unterminated"},
        ErrorCase{"invalid_variable_name", with_store_params("      table_name: ${1X}\n"), "cfg",
                  "table_name", "invalid environment variable"},
        ErrorCase{"unknown_dependency", with_store_params("    depends-on: [cache]\n"), "cfg",
                  "depends-on", "\"cache\""},
        ErrorCase{"self_dependency", with_store_params("    depends-on: [cfg]\n"), "cfg",
                  "depends-on", "cfg -> cfg"},
        ErrorCase{"dependency_cycle",
                  kPool + "  a:\n    type: sync_config_pg\n    depends-on: [b]\n"
                          "    params: {dbpool_name: db}\n"
                          "  b:\n    type: sync_config_pg\n    depends-on: [a]\n"
                          "    params: {dbpool_name: db}\n",
                  "a", "depends-on", "a -> b -> a"},
        ErrorCase{"cycle_through_the_implicit_pool_dependency",
                  kPool + "    depends-on: [cfg]\n"
                          "  cfg:\n    type: sync_config_pg\n    params: {dbpool_name: db}\n",
                  "db", "depends-on", "db -> cfg -> db"},
        ErrorCase{"one_table_two_channels",
                  kPool + "  a:\n    type: sync_config_pg\n    params: {dbpool_name: db}\n"
                          "  b:\n    type: sync_config_pg\n"
                          "    params: {dbpool_name: db, channel: other}\n",
                  "b", "channel", "same channel"},
        ErrorCase{"no_store", kPool, "", "service-definitions", "no sync_config_pg"},
        ErrorCase{"no_service_definitions", "services: {}\n", "", "service-definitions", "missing"},
        ErrorCase{"defined_twice", with_store_params("") + "  cfg:\n    type: sync_config_pg\n",
                  "cfg", "", "more than once"},
        ErrorCase{"invalid_service_name", kPool + "  \"my store\":\n    type: sync_config_pg\n",
                  "my store", "", "invalid service name"},
        ErrorCase{"yaml_syntax", "service-definitions:\n  a: [\n", "", "", "invalid YAML"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(ServiceConfig, a_dsn_password_never_appears_in_an_error) {
  // libpq cannot parse this URI; its own message would quote the URI.
  ConfigError e = error_of(
      "service-definitions:\n"
      "  db:\n"
      "    type: dbpool_pg\n"
      "    params:\n"
      "      dsn: postgresql://app:s3cret@localhost/app?pool_max_conns=4\n"
      "  cfg:\n"
      "    type: sync_config_pg\n"
      "    params: {dbpool_name: db}\n");
  EXPECT_EQ(e.entry(), "db");
  EXPECT_EQ(e.field(), "dsn");
  EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
  // Nor in an error about another field of the pool.
  ConfigError s = error_of(
      "service-definitions:\n"
      "  db:\n"
      "    type: dbpool_pg\n"
      "    params:\n"
      "      dsn: postgresql://app:s3cret@localhost/app\n"
      "      schema: Bad\n");
  EXPECT_EQ(s.field(), "schema");
  EXPECT_EQ(std::string(s.what()).find("s3cret"), std::string::npos) << s.what();
}

TEST(ServiceConfig, a_bad_variable_reference_quotes_no_dsn_text_and_no_default) {
  // Found by service_config_fuzzer: the message quoted the reference, and with it the DSN's
  // password text around a "${" (fuzz/regressions/service_config_fuzzer/).
  ConfigError d = error_of(
      "service-definitions:\n"
      "  db:\n"
      "    type: dbpool_pg\n"
      "    params:\n"
      "      dsn: \"postgres://app:${pw-s3cret}@localhost/app\"\n");
  EXPECT_EQ(d.field(), "dsn");
  EXPECT_NE(d.message().find("invalid environment variable reference"), std::string::npos);
  EXPECT_EQ(std::string(d.what()).find("s3cret"), std::string::npos) << d.what();
  // Elsewhere the name is quoted, to find it, but never the default after ':'.
  ConfigError t = error_of(with_store_params("      table_name: \"${BAD-NAME:s3cret}\"\n"));
  EXPECT_EQ(t.field(), "table_name");
  EXPECT_NE(t.message().find("${BAD-NAME}"), std::string::npos) << t.what();
  EXPECT_EQ(std::string(t.what()).find("s3cret"), std::string::npos) << t.what();
}

TEST(ServiceConfig, the_builtin_pool_manager_may_be_named_in_depends_on) {
  ServiceConfig c = parse(with_store_params("    depends-on: [dbpool-manager, db]\n"));
  EXPECT_EQ(c.stores.at(0).name, "cfg");
}

TEST(ServiceConfig, an_unreadable_file_is_a_config_error) {
  try {
    load_service_config("/nonexistent/syncconfig.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.source(), "/nonexistent/syncconfig.yaml");
    EXPECT_NE(std::string(e.what()).find("cannot read"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace syncconfig::service
