// One instance: the table, local reads and writes, typed getters, bad input, lifecycle.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST(StoreBasic, creates_the_table_with_the_reference_schema) {
  std::string table = unique_name("t_schema");
  auto store = Store::open(dsn(), test_options(table));
  Sql sql(dsn());
  EXPECT_EQ(sql.scalar("SELECT string_agg(column_name || ':' || data_type || ':' || is_nullable, "
                       "',' ORDER BY ordinal_position) FROM information_schema.columns "
                       "WHERE table_name = '" +
                       table + "'"),
            "key:character varying:NO,value:jsonb:NO,updated_at:timestamp without time "
            "zone:NO,revision:bigint:NO");
  EXPECT_EQ(sql.scalar("SELECT character_maximum_length FROM information_schema.columns "
                       "WHERE table_name = '" +
                       table + "' AND column_name = 'key'"),
            "255");
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_" + table +
                       "_updated_at'"),
            "1");
  EXPECT_EQ(sql.scalar("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                       "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '" +
                       table + "'::regclass AND i.indisprimary"),
            "key");
}

TEST(StoreBasic, set_then_get_returns_the_value_on_the_same_instance) {
  auto store = Store::open(dsn(), test_options(unique_name("t_local")));
  store->set("app_name", "MyApp");
  store->set("max_users", 500);
  store->set("nested", json{{"a", {1, 2, 3}}, {"b", nullptr}});
  EXPECT_EQ(store->get("app_name"), json("MyApp"));
  EXPECT_EQ(store->get("max_users"), json(500));
  EXPECT_EQ(store->get("nested"), (json{{"a", {1, 2, 3}}, {"b", nullptr}}));
  EXPECT_EQ(store->size(), 3u);
  store->set("max_users", 600);
  EXPECT_EQ(store->get_int("max_users", 0), 600);
}

TEST(StoreBasic, get_of_an_absent_key_is_nullopt_and_getters_give_the_default) {
  auto store = Store::open(dsn(), test_options(unique_name("t_absent")));
  EXPECT_EQ(store->get("nope"), std::nullopt);
  EXPECT_FALSE(store->contains("nope"));
  EXPECT_EQ(store->get_string("nope", "dflt"), "dflt");
  EXPECT_EQ(store->get_int("nope", 7), 7);
  EXPECT_EQ(store->get_bool("nope", true), true);
  EXPECT_EQ(store->get_double("nope", 1.5), 1.5);
  EXPECT_EQ(store->get_as<std::vector<int>>("nope", {1}), std::vector<int>{1});
}

TEST(StoreBasic, remove_deletes_the_key_and_reports_whether_it_existed) {
  std::string table = unique_name("t_remove");
  auto store = Store::open(dsn(), test_options(table));
  store->set("k", 1);
  EXPECT_TRUE(store->remove("k"));
  EXPECT_EQ(store->get("k"), std::nullopt);
  EXPECT_FALSE(store->remove("k"));
  Sql sql(dsn());
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM " + table), "0");
}

TEST(StoreBasic, values_read_back_as_postgres_normalized_them) {
  auto store = Store::open(dsn(), test_options(unique_name("t_norm")));
  store->set("n", json::parse("1e3"));
  // jsonb turns 1e3 into 1000; every instance reads PostgreSQL's text, so all agree.
  EXPECT_EQ(store->get("n")->dump(), "1000.0");
  store->set("f", 2.5);
  EXPECT_EQ(store->get_double("f"), 2.5);
}

TEST(StoreBasic, get_all_returns_everything_or_a_prefix) {
  auto store = Store::open(dsn(), test_options(unique_name("t_all")));
  store->set("feature:a", true);
  store->set("feature:b", false);
  store->set("limit:x", 10);
  auto all = store->get_all();
  EXPECT_EQ(all.size(), 3u);
  auto features = store->get_all("feature:");
  ASSERT_EQ(features.size(), 2u);
  EXPECT_EQ(features.at("feature:a"), json(true));
}

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
};
void to_json(json& j, const Point& p) { j = json{{"x", p.x}, {"y", p.y}}; }
void from_json(const json& j, Point& p) {
  j.at("x").get_to(p.x);
  j.at("y").get_to(p.y);
}

TEST(StoreBasic, typed_getters_follow_the_documented_conversions) {
  auto store = Store::open(dsn(), test_options(unique_name("t_typed")));
  store->set("int", 42);
  store->set("int_float", 42.0);
  store->set("frac", 42.5);
  store->set("int_string", "123");
  store->set("bad_string", "12abc");
  store->set("bool_string", "true");
  store->set("yes", "YES");
  store->set("one", 1);
  store->set("bool", false);
  store->set("str", "hello");
  store->set("obj", json{{"x", 1}, {"y", 2}});
  store->set("huge", json::parse("123456789012345678901234567890"));

  EXPECT_EQ(store->get_int("int", -1), 42);
  EXPECT_EQ(store->get_int("int_float", -1), 42);
  EXPECT_EQ(store->get_int("frac", -1), -1);
  EXPECT_EQ(store->get_int("int_string", -1), 123);
  EXPECT_EQ(store->get_int("bad_string", -1), -1);
  EXPECT_EQ(store->get_int("bool", -1), -1);
  EXPECT_EQ(store->get_int("obj", -1), -1);
  EXPECT_EQ(store->get_int("huge", -1), -1);
  EXPECT_EQ(store->get_double("frac", 0), 42.5);
  EXPECT_EQ(store->get_double("int_string", 0), 123.0);
  EXPECT_EQ(store->get_double("str", 9.0), 9.0);
  EXPECT_TRUE(store->get_bool("bool_string", false));
  EXPECT_TRUE(store->get_bool("yes", false));
  EXPECT_TRUE(store->get_bool("one", false));
  EXPECT_FALSE(store->get_bool("bool", true));
  EXPECT_TRUE(store->get_bool("int", true));  // 42 is neither 0 nor 1: the default.
  EXPECT_EQ(store->get_string("str", ""), "hello");
  EXPECT_EQ(store->get_string("int", "dflt"), "dflt");
  EXPECT_EQ(store->get_as<Point>("obj", Point{}), (Point{1, 2}));
  EXPECT_EQ(store->get_as<Point>("str", Point{9, 9}), (Point{9, 9}));
  EXPECT_EQ(store->get_as<std::string>("int", "d"), "d");
}

TEST(StoreBasic, bad_keys_and_values_are_refused_and_write_nothing) {
  std::string table = unique_name("t_bad");
  auto store = Store::open(dsn(), test_options(table));
  store->set("keep", "me");
  auto expect_invalid = [&](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_FALSE(e.retryable());
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_invalid([&] { store->set("", 1); }, "empty");
  expect_invalid([&] { store->set(std::string(256, 'k'), 1); }, "256 bytes");
  expect_invalid([&] { store->set("bad\xff\xfe", 1); }, "UTF-8");
  expect_invalid([&] { store->set(std::string("nul\0byte", 8), 1); }, "NUL");
  expect_invalid([&] { store->set("nan", std::nan("")); }, "NaN");
  expect_invalid([&] { store->set("inf", json{{"deep", {1.0, INFINITY}}}); }, "Infinity");
  expect_invalid([&] { store->set("bad_string", std::string("\xc3\x28")); }, "UTF-8");
  expect_invalid([&] { store->remove(""); }, "empty");
  // A 255-byte key is fine.
  store->set(std::string(255, 'k'), 1);
  Sql sql(dsn());
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM " + table), "2");
  EXPECT_EQ(store->get("keep"), json("me"));
}

TEST(StoreBasic, values_over_max_value_bytes_are_refused) {
  Options o = test_options(unique_name("t_maxval"));
  o.max_value_bytes = 1000;
  auto store = Store::open(dsn(), o);
  try {
    store->set("big", std::string(2000, 'x'));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("max_value_bytes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store->get("big"), std::nullopt);
}

TEST(StoreBasic, invalid_options_are_refused_naming_the_field) {
  auto expect_field = [](Options o, const std::string& field) {
    try {
      Store::open(dsn(), o);
      ADD_FAILURE() << "opened with a bad " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  Options o;
  o.table_name = "x\"; DROP TABLE y; --";
  expect_field(o, "table_name");
  o = Options{};
  o.schema = "public; DROP SCHEMA public";
  expect_field(o, "schema");
  o = Options{};
  o.channel = "a'b";
  expect_field(o, "channel");
  o = Options{};
  o.table_name = "Upper";
  expect_field(o, "table_name");
  o = Options{};
  o.heartbeat_interval = 0ms;
  expect_field(o, "heartbeat_interval");
  o = Options{};
  o.reconnect_interval = -1ms;
  expect_field(o, "reconnect_interval");
  o = Options{};
  o.db_timeout = 0ms;
  expect_field(o, "db_timeout");
  o = Options{};
  o.pool_size = 0;
  expect_field(o, "pool_size");
  o = Options{};
  o.prepared_statements = static_cast<PreparedStatements>(7);
  expect_field(o, "prepared_statements");
  o = Options{};
  o.listen_dsn = std::string("host=a\0b", 8);
  expect_field(o, "listen_dsn");
  o = Options{};
  o.listen_dsn = "postgresql://[::1";
  expect_field(o, "listen_dsn");
  Sql sql(dsn());
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'y'"), "0");
}

TEST(StoreBasic, an_existing_reference_table_with_rows_is_adopted_without_loss) {
  std::string table = unique_name("t_legacy");
  Sql sql(dsn());
  sql.exec("CREATE TABLE " + table +
           " (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL, updated_at TIMESTAMP NOT NULL "
           "DEFAULT NOW()); CREATE INDEX idx_" +
           table + "_updated_at ON " + table + " (updated_at);");
  sql.exec("INSERT INTO " + table +
           " (key, value) SELECT 'k' || i, to_jsonb(i) FROM generate_series(1, 500) i");
  sql.exec("INSERT INTO " + table + " (key, value) VALUES ('obj', '{\"a\": [1, 2]}')");
  auto store = Store::open(dsn(), test_options(table));
  EXPECT_EQ(store->size(), 501u);
  EXPECT_EQ(store->get_int("k250", 0), 250);
  EXPECT_EQ(store->get("obj"), (json{{"a", {1, 2}}}));
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM " + table), "501");
  store->set("k1", 1000);
  EXPECT_EQ(sql.scalar("SELECT value::text FROM " + table + " WHERE key = 'k1'"), "1000");
}

TEST(StoreBasic, a_table_of_several_load_batches_loads_every_row_exactly) {
  // A start-up streams the rows and makes them into entries in batches of 16384 on other
  // threads: rows on both sides of every batch boundary, and the partial last batch, all arrive.
  std::string table = unique_name("t_batches");
  auto first = Store::open(dsn(), test_options(table));  // Creates the table.
  first->shutdown();
  Sql sql(dsn());
  constexpr int kRows = 2 * 16384 + 1;
  sql.exec("INSERT INTO " + table +
           " (key, value) SELECT 'k' || i, CASE WHEN i % 1000 = 0 THEN jsonb_build_object('i', "
           "i) WHEN i % 7 = 0 THEN to_jsonb('s' || i) ELSE to_jsonb(i) END "
           "FROM generate_series(1, " +
           std::to_string(kRows) + ") i");
  auto store = Store::open(dsn(), test_options(table));
  auto expected = [](int i) {
    return i % 1000 == 0 ? json{{"i", i}} : i % 7 == 0 ? json("s" + std::to_string(i)) : json(i);
  };
  // Every key once, each with its own value: nothing lost, doubled or altered on the way.
  std::vector<bool> seen(kRows + 1, false);
  std::size_t wrong = 0;
  for (const auto& [key, value] : store->get_all()) {
    const int i = std::stoi(key.substr(1));
    ASSERT_TRUE(i >= 1 && i <= kRows && !seen[i]) << key;
    seen[i] = true;
    if (value != expected(i)) ++wrong;
  }
  EXPECT_EQ(std::count(seen.begin() + 1, seen.end(), true), kRows);
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(store->size(), static_cast<std::size_t>(kRows));
  EXPECT_EQ(store->get("k16385"), expected(16385));
}

TEST(StoreBasic, two_instances_starting_at_once_on_an_empty_database_both_succeed) {
  for (int round = 0; round < 3; ++round) {
    std::string table = unique_name("t_race");
    std::unique_ptr<Store> a, b;
    std::string error_a, error_b;
    std::thread ta([&] {
      try {
        a = Store::open(dsn(), test_options(table));
      } catch (const std::exception& e) {
        error_a = e.what();
      }
    });
    std::thread tb([&] {
      try {
        b = Store::open(dsn(), test_options(table));
      } catch (const std::exception& e) {
        error_b = e.what();
      }
    });
    ta.join();
    tb.join();
    ASSERT_EQ(error_a, "");
    ASSERT_EQ(error_b, "");
    a->set("x", round);
    EXPECT_TRUE(wait_until([&] { return b->get_int("x", -1) == round; }));
  }
}

TEST(StoreBasic, once_set_up_a_role_with_only_read_write_grants_can_run_an_instance) {
  std::string table = unique_name("t_grants");
  auto owner = Store::open(dsn(), test_options(table));  // Creates everything.
  std::string role = unique_name("rw_role");
  Sql sql(dsn());
  sql.exec("CREATE ROLE " + role + " LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON " + table +
           ", " + table + "_changes, " + table + "_leases, " + table + "_lease_keys, " + table +
           "_lease_sweeps TO " + role + "; GRANT USAGE, SELECT ON SEQUENCE " + table +
           "_revision_seq, " + table + "_leases_id_seq TO " + role);
  std::string role_dsn =
      "postgresql://" + role + "@127.0.0.1:" + std::to_string(cluster().port()) + "/postgres";
  auto store = Store::open(role_dsn, test_options(table));
  store->set("k", "from the rw role");
  EXPECT_TRUE(wait_until([&] { return owner->get_string("k") == "from the rw role"; }));
  owner->set("k2", 2);
  EXPECT_TRUE(wait_until([&] { return store->get_int("k2") == 2; }));
  EXPECT_TRUE(store->remove("k"));
  EXPECT_TRUE(wait_until([&] { return !owner->contains("k"); }));
  store->sync();
  EXPECT_EQ(store->get_all(), owner->get_all());
  // Without SELECT on the payload key its writes go out unsigned and it verifies every payload
  // by a read; granted it, both sign and check signatures (docs/protocol.md, "Signed payloads").
  EXPECT_EQ(store->stats().notifications_signed, 0u);
  sql.exec("GRANT SELECT ON " + table + "_sc_key TO " + role);
  const uint64_t owner_signed = owner->stats().notifications_signed;
  int i = 0;
  EXPECT_TRUE(wait_until([&] {
    store->set("n", ++i);  // The owner writes nothing meanwhile: what it counts is these.
    return owner->stats().notifications_signed > owner_signed &&
           store->stats().notifications_signed > 0;
  }));
}

TEST(StoreBasic, a_second_channel_for_the_same_table_is_refused) {
  std::string table = unique_name("t_chan");
  auto a = Store::open(dsn(), test_options(table));
  Options o = test_options(table);
  o.channel = "other_channel";
  try {
    Store::open(dsn(), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("channel"), std::string::npos) << e.what();
  }
}

TEST(StoreBasic, opens_from_a_named_pool_with_its_schema) {
  PoolManager pools;
  pools.register_named("my-db-pool", dsn(), "tenant_a");
  std::string table = unique_name("t_pool");
  auto store = Store::open(pools, "my-db-pool", test_options(table));
  store->set("k", "v");
  Sql sql(dsn());
  EXPECT_EQ(sql.scalar("SELECT value::text FROM tenant_a." + table), "\"v\"");
  try {
    Store::open(pools, "missing-pool", test_options(table));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing-pool"), std::string::npos);
  }
}

TEST(StoreBasic, without_notifications_the_store_does_not_listen) {
  std::string table = unique_name("t_nolisten");
  Options quiet = test_options(table);
  quiet.enable_notification = false;
  auto store = Store::open(dsn(), quiet);
  auto control = Store::open(dsn(), test_options(table));  // Listens on the same channel.
  store->set("k", 1);
  EXPECT_EQ(store->get_int("k"), 1);
  ASSERT_TRUE(wait_until([&] { return control->get_int("k") == 1; }));

  Sql sql(dsn());
  sql.exec("UPDATE " + table + " SET value = '2' WHERE key = 'k'");
  ASSERT_TRUE(wait_until([&] { return control->get_int("k") == 2; }));
  // The listening instance has it; the quiet one does not listen, so it has not...
  EXPECT_EQ(store->get_int("k"), 1);
  EXPECT_EQ(store->stats().notifications_applied, 0u);
  // ...until it reads the table (sync() here; the heartbeat does the same on its own).
  store->sync();
  EXPECT_EQ(store->get_int("k"), 2);
}

TEST(StoreBasic, shutdown_is_idempotent_prompt_and_keeps_reads) {
  auto store = Store::open(dsn(), test_options(unique_name("t_shutdown")));
  store->set("k", "v");
  auto start = std::chrono::steady_clock::now();
  store->shutdown();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 1s);
  store->shutdown();
  EXPECT_EQ(store->get_string("k"), "v");
  try {
    store->set("k", "w");
    FAIL() << "expected kShutdown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShutdown);
  }
}

}  // namespace
}  // namespace syncconfig::testing
