// Bad input, row by row (the table is docs/bad-input.md): keys, values, names and DSNs that must
// be refused with a clear error. For every row: the error code, a message that names what was
// wrong, nothing stored changed (the key's previous value, the table's rows, another instance),
// and no password in the message or in the store's log. Real PostgreSQL, real second instance.
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spawn.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "http/http_server.h"
#include "test_support.h"

extern char** environ;

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A role that needs a password (see role_requiring_password), its password, and a wrong one.
constexpr char kRole[] = "bad_input_user";
constexpr char kPassword[] = "Pw-of-bad-input-7c3e";
constexpr char kWrongPassword[] = "Wr0ng-pw-bad-input-41aa";

// Keeps every line a logger writes.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    text_.append(line.data(), line.size());
  }
  void flush_() override {}

 private:
  std::string text_;
};

struct Log {
  std::shared_ptr<CaptureSink> sink = std::make_shared<CaptureSink>();
  std::shared_ptr<spdlog::logger> logger = [this] {
    auto l = std::make_shared<spdlog::logger>("bad_input", sink);
    l->set_level(spdlog::level::trace);
    return l;
  }();
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs `f` and checks that it throws syncconfig::Error with `code`, a message naming each of
// `mentions`, the retryability that goes with the code, and no password.
::testing::AssertionResult Refused(const std::function<void()>& f, ErrorCode code,
                                   const std::vector<std::string>& mentions) {
  try {
    f();
  } catch (const Error& e) {
    std::string what = e.what();
    if (e.code() != code) {
      return ::testing::AssertionFailure()
             << "code " << to_string(e.code()) << ", expected " << to_string(code) << ": " << what;
    }
    if (e.retryable() != is_retryable(code)) {
      return ::testing::AssertionFailure() << "wrong retryable(): " << what;
    }
    for (const auto& m : mentions) {
      if (!contains(what, m)) {
        return ::testing::AssertionFailure() << "message lacks \"" << m << "\": " << what;
      }
    }
    if (contains(what, kPassword) || contains(what, kWrongPassword)) {
      return ::testing::AssertionFailure() << "message shows a password: " << what;
    }
    return ::testing::AssertionSuccess() << what;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw something else: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Two instances A and B of one fresh table, with "existing" = {"v": 1} written and seen by both,
// and a raw SQL session.
class Pair {
 public:
  Pair() : table_(unique_name("t_bad")), sql_(dsn()) {
    Options o = test_options(table_);
    o.logger = log_.logger;
    a_ = Store::open(dsn(), o);
    b_ = Store::open(dsn(), o);
    a_->set("existing", previous());
    EXPECT_TRUE(wait_until([&] { return b_->get("existing") == previous(); }));
    rows_before_ = rows();
    b_before_ = b_->get_all();
  }

  static json previous() { return json{{"v", 1}}; }
  Store& a() { return *a_; }
  Store& b() { return *b_; }
  Sql& sql() { return sql_; }
  const std::string& table() const { return table_; }
  Log& log() { return log_; }

  // Every row of the table as text: key, value, revision.
  std::string rows() {
    return sql_.scalar(
        "SELECT coalesce(string_agg(encode(convert_to(key, 'UTF8'), 'hex') || '=' || "
        "value::text || '@' || revision, ',' ORDER BY key), '') FROM " +
        table_);
  }
  // The value column of `key` as jsonb text, or "<none>".
  std::string row_value(const std::string& key) {
    return sql_.scalar("SELECT value::text FROM " + table_ + " WHERE key = convert_from(decode('" +
                       hex(key) + "', 'hex'), 'UTF8')");
  }

  // Nothing changed since construction: the table's rows, A's and B's "existing", and B as a
  // whole. A marker written after the bad input reaches B after anything committed before it
  // (notifications arrive in commit order), so B is compared once the marker has arrived.
  void expect_nothing_changed() {
    EXPECT_EQ(rows(), rows_before_);
    EXPECT_EQ(a_->get("existing"), previous());
    ++markers_;
    a_->set("marker", markers_);
    ASSERT_TRUE(wait_until([&] { return b_->get("marker") == json(markers_); }));
    auto b_now = b_->get_all();
    b_now.erase("marker");
    EXPECT_EQ(b_now, b_before_);
    a_->remove("marker");
    ASSERT_TRUE(wait_until([&] { return !b_->contains("marker"); }));
    EXPECT_EQ(rows(), rows_before_);
    EXPECT_FALSE(contains(log_.sink->text(), kPassword));
  }

 private:
  std::string table_;
  Log log_;
  Sql sql_;
  std::unique_ptr<Store> a_;
  std::unique_ptr<Store> b_;
  std::string rows_before_;
  std::map<std::string, json> b_before_;
  int markers_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

struct KeyRow {
  const char* what;
  std::string key;
  const char* mention;
};

TEST(BadInput, invalid_keys_are_refused_by_set_and_remove_and_change_nothing) {
  std::string e_acute = "\xc3\xa9";
  std::string two_byte_256;
  for (int i = 0; i < 128; ++i) two_byte_256 += e_acute;
  const std::vector<KeyRow> rows = {
      {"empty", "", "empty"},
      {"256 bytes", std::string(256, 'k'), "256 bytes"},
      {"256 bytes of 2-byte characters", two_byte_256, "256 bytes"},
      {"invalid UTF-8 byte", "bad\xff", "UTF-8"},
      {"truncated UTF-8 sequence", "caf\xc3", "UTF-8"},
      {"overlong '/'", "\xc0\xaf", "UTF-8"},
      {"UTF-16 surrogate", "\xed\xa0\x80", "UTF-8"},
      {"NUL byte", std::string("a\0b", 3), "NUL"},
  };
  Pair p;
  for (const KeyRow& row : rows) {
    SCOPED_TRACE(row.what);
    EXPECT_TRUE(Refused([&] { p.a().set(row.key, 1); }, ErrorCode::kInvalidArgument,
                        {"invalid key", row.mention}));
    EXPECT_TRUE(Refused([&] { p.a().remove(row.key); }, ErrorCode::kInvalidArgument,
                        {"invalid key", row.mention}));
    // Reads of such a key are not errors: it cannot exist.
    EXPECT_EQ(p.a().get(row.key), std::nullopt);
    EXPECT_EQ(p.a().get_int(row.key, 7), 7);
  }
  p.expect_nothing_changed();
}

TEST(BadInput, keys_at_the_length_limit_round_trip_to_another_instance) {
  std::string euro = "\xe2\x82\xac";
  std::string three_byte_255;
  for (int i = 0; i < 85; ++i) three_byte_255 += euro;
  Pair p;
  for (const std::string& key : {std::string(255, 'k'), three_byte_255}) {
    ASSERT_EQ(key.size(), 255u);
    p.a().set(key, "at the limit");
    EXPECT_TRUE(wait_until([&] { return p.b().get(key) == json("at the limit"); }));
    EXPECT_EQ(p.row_value(key), "\"at the limit\"");
  }
}

// Quotes and comment markers are ordinary characters in a key: they must reach the database and
// the other instance exactly, as data, never as SQL.
TEST(BadInput, keys_with_sql_quotes_round_trip_exactly_through_the_database) {
  Pair p;
  const std::vector<std::string> keys = {
      "it's",
      "say \"hi\"",
      "x';--",
      "'; DROP TABLE " + p.table() + ";--",
      "\"; DROP TABLE " + p.table() + "; --",
      "a\\b",
      "$$; SELECT 1; $$",
      "100% _wild_",
      "tab\tand\nnewline",
  };
  int n = 0;
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    p.a().set(key, n);
    EXPECT_TRUE(wait_until([&] { return p.b().get(key) == json(n); }));
    EXPECT_EQ(p.row_value(key), std::to_string(n));
    ++n;
  }
  EXPECT_EQ(p.sql().scalar("SELECT count(*) FROM " + p.table()), std::to_string(keys.size() + 1));
  EXPECT_EQ(p.a().get_crc(), p.b().get_crc());
  // And back: a removal on B reaches A, key for key.
  for (const std::string& key : keys) {
    EXPECT_TRUE(p.b().remove(key));
    EXPECT_TRUE(wait_until([&] { return !p.a().contains(key); }));
  }
  EXPECT_EQ(p.sql().scalar("SELECT count(*) FROM " + p.table()), "1");
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

// [[[...[1]...]]] nested `levels` deep, built without recursion or copies.
json nested(int levels) {
  json root = json::array();
  json* current = &root;
  for (int i = 1; i < levels; ++i) {
    current->push_back(json::array());
    current = &current->back();
  }
  current->push_back(1);
  return root;
}

std::string nested_text(int levels) {
  return std::string(levels, '[') + "1" + std::string(levels, ']');
}

TEST(BadInput, invalid_values_are_refused_and_the_previous_value_stays) {
  struct Row {
    const char* what;
    json value;
    std::vector<std::string> mentions;
  };
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<Row> rows;
  rows.push_back({"NaN", json(std::nan("")), {"\"existing\"", "NaN and Infinity"}});
  rows.push_back({"Infinity", json(inf), {"\"existing\"", "NaN and Infinity"}});
  rows.push_back(
      {"-Infinity inside an object", json{{"a", {1, -inf}}}, {"\"existing\"", "NaN and Infinity"}});
  rows.push_back({"10000 levels deep", nested(10000), {"\"existing\"", "nested deeper than 1000"}});
  rows.push_back({"50 MB",
                  json(std::string(50u << 20, 'x')),
                  {"\"existing\"", "52428802 bytes", "max_value_bytes", "16777216"}});
  rows.push_back({"invalid UTF-8 in a string", json("bad\xff"), {"\"existing\"", "UTF-8"}});
  Pair p;
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    EXPECT_TRUE(Refused([&] { p.a().set("existing", row.value); }, ErrorCode::kInvalidArgument,
                        row.mentions));
    EXPECT_EQ(p.a().get("existing"), Pair::previous());
  }
  // 1000 levels (999 arrays around a number) is the deepest accepted.
  p.a().set("deep_ok", nested(999));
  EXPECT_TRUE(wait_until([&] { return p.b().get("deep_ok") == nested(999); }));
  EXPECT_TRUE(p.a().remove("deep_ok"));
  EXPECT_TRUE(wait_until([&] { return !p.b().contains("deep_ok"); }));
  p.expect_nothing_changed();
}

// The HTTP service over a pair's first store, logging to the pair's log, and a client that sends
// paths exactly as written.
struct Served {
  explicit Served(Pair& p)
      : server({{"main", &p.a()}}, options_for(p)), http("127.0.0.1", start()) {
    http.set_url_encode(false);
    http.set_read_timeout(30, 0);
  }
  static service::HttpOptions options_for(Pair& p) {
    service::HttpOptions options;
    options.port = 0;
    options.logger = p.log().logger;
    return options;
  }
  int start() {
    server.start();
    return server.port();
  }
  service::HttpServer server;
  httplib::Client http;
};

// The same values as text, through the HTTP service.
TEST(BadInput, invalid_values_through_http_are_400_and_the_previous_value_stays) {
  Pair p;
  Served served(p);
  httplib::Client& http = served.http;
  struct Row {
    const char* what;
    std::string path;
    std::string body;
    int status;
    const char* mention;
  };
  const std::vector<Row> rows = {
      {"10000 levels deep", "/settings/existing", nested_text(10000), 400, "512 levels"},
      {"Infinity (1e999)", "/settings/existing", "1e999", 400, "number overflow"},
      {"NaN", "/settings/existing", "NaN", 400, "not valid JSON"},
      {"not JSON", "/settings/existing", "{\"v\": 1", 400, "not valid JSON"},
      {"empty body", "/settings/existing", "", 400, "not valid JSON"},
      {"invalid UTF-8 in the body", "/settings/existing", "\"bad\xff\"", 400, "not valid JSON"},
      {"invalid UTF-8 key", "/settings/bad%FF", "1", 400, "UTF-8"},
      {"NUL in the key", "/settings/a%00b", "1", 400, "NUL"},
      {"256-byte key", "/settings/" + std::string(256, 'k'), "1", 400, "256 bytes"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    auto r = http.Put(row.path, row.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, row.status) << r->body;
    std::string error = json::parse(r->body).at("error").get<std::string>();
    EXPECT_TRUE(contains(error, row.mention)) << error;
    EXPECT_EQ(p.a().get("existing"), Pair::previous());
  }
  served.server.stop();
  p.expect_nothing_changed();
}

// Queries and headers the HTTP service refuses before it touches a store (routing in
// src/http/target.cc, Last-Event-ID and header limits in http_server.cc): the status, a message
// naming what was wrong, a plain JSON answer (never an event stream), and nothing changed.
TEST(BadInput,
     bad_watch_and_settings_queries_and_oversized_headers_are_refused_and_change_nothing) {
  Pair p;
  Served served(p);
  httplib::Client& http = served.http;
  struct Row {
    const char* what;
    std::string path;
    const char* last_event_id;  // nullptr: none.
    int status;
    std::string message;  // The whole message, or a part of it when `exact` is false.
    bool exact;
  };
  const std::string id_forms =
      " must be an event id of this service: R, R.hhhhhhhh or R.A.hhhhhhhh (revisions A <= R, "
      "non-negative integers; hhhhhhhh 8 hex digits)";
  const std::string not_a_revision = "since" + id_forms;
  const std::string not_an_id = "Last-Event-ID" + id_forms;
  const std::string not_utf8 = "cannot start any key: invalid key: it is not valid UTF-8";
  const std::string with_nul =
      "prefix \"a\\u0000b\" cannot start any key: invalid key: it contains a NUL byte";
  const std::string too_long =
      "cannot start any key: invalid key: 256 bytes long, the limit is 255";
  const std::vector<Row> rows = {
      {"since not a number", "/watch?since=abc", nullptr, 400, not_a_revision, true},
      {"since negative", "/watch?since=-1", nullptr, 400, not_a_revision, true},
      {"since with trailing text", "/watch?since=1x", nullptr, 400, not_a_revision, true},
      {"since past int64", "/watch?since=9223372036854775808", nullptr, 400, not_a_revision, true},
      {"since empty", "/watch?since=", nullptr, 400, not_a_revision, true},
      {"Last-Event-ID not a number", "/watch", "garbage", 400, not_an_id, true},
      {"Last-Event-ID negative", "/watch", "-5", 400, not_an_id, true},
      {"Last-Event-ID past int64", "/watch", "9223372036854775808", 400, not_an_id, true},
      {"Last-Event-ID with a short fingerprint", "/watch", "12.abc", 400, not_an_id, true},
      {"Last-Event-ID anchored above its revision", "/watch", "12.13.0123abcd", 400, not_an_id,
       true},
      {"since with a fingerprint that is not hex", "/watch?since=12.0123abcg", nullptr, 400,
       not_a_revision, true},
      {"prefix with invalid UTF-8 on /watch", "/watch?prefix=%FF", nullptr, 400, not_utf8, false},
      {"prefix with invalid UTF-8 on /settings", "/settings?prefix=bad%FF", nullptr, 400, not_utf8,
       false},
      {"prefix with a NUL byte", "/watch?prefix=a%00b", nullptr, 400, with_nul, false},
      {"prefix longer than any key", "/watch?prefix=" + std::string(256, 'p'), nullptr, 400,
       too_long, false},
      {"prefix twice on /settings", "/settings?prefix=a&prefix=b", nullptr, 400,
       "prefix may be given once on /settings", true},
  };
  auto expect_refused = [&](const httplib::Result& r, int status, const std::string& message,
                            bool exact) {
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    const std::string error = json::parse(r->body).at("error").get<std::string>();
    if (exact) {
      EXPECT_EQ(error, message);
    } else {
      EXPECT_TRUE(contains(error, message)) << error;
    }
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    httplib::Headers headers;
    if (row.last_event_id) headers.emplace("Last-Event-ID", row.last_event_id);
    expect_refused(http.Get(row.path, headers), row.status, row.message, row.exact);
  }
  {
    SCOPED_TRACE("headers over max_header_bytes (16 KiB)");
    expect_refused(http.Get("/settings", {{"X-Big", std::string(20000, 'h')}}), 431,
                   "request line and headers larger than 16384 bytes (max_header_bytes)", true);
  }
  // Still serving, the same values.
  auto listing = http.Get("/settings");
  ASSERT_TRUE(listing);
  EXPECT_EQ(listing->status, 200);
  EXPECT_EQ(json::parse(listing->body), (json{{"existing", Pair::previous()}}));
  served.server.stop();
  p.expect_nothing_changed();
}

// What the `syncconfig` program prints and exits with for the same mistakes.
struct RunResult {
  int exit_code = -1;
  std::string err;
};

RunResult run_cli(const std::vector<std::string>& args) {
  char path[] = "/tmp/bad_input_stderr_XXXXXX";
  int fd = mkstemp(path);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> storage = {SYNCCONFIG_BIN};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  RunResult out;
  if (posix_spawn(&pid, SYNCCONFIG_BIN, &actions, nullptr, argv.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  close(fd);
  std::ifstream in(path);
  out.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);
  return out;
}

TEST(BadInput, invalid_values_through_the_cli_exit_2_and_the_previous_value_stays) {
  Pair p;
  const Options o = test_options(p.table());
  const std::vector<std::string> connection = {"--dsn",      dsn(),       "--table",
                                               o.table_name, "--channel", o.channel};
  struct Row {
    const char* what;
    std::string key;
    std::string value;
    const char* mention;
  };
  const std::vector<Row> rows = {
      {"10000 levels deep", "existing", nested_text(10000), "nested deeper than 1000"},
      {"Infinity (1e999)", "existing", "1e999", "not valid JSON (number overflow"},
      {"NaN", "existing", "NaN", "not valid JSON"},
      {"256-byte key", std::string(256, 'k'), "1", "256 bytes"},
      {"invalid UTF-8 key", "bad\xff", "1", "UTF-8"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    std::vector<std::string> args = {"set", row.key, row.value};
    args.insert(args.end(), connection.begin(), connection.end());
    RunResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(contains(r.err, row.mention)) << r.err;
  }
  p.expect_nothing_changed();
}

// ---------------------------------------------------------------------------------------------
// Names: table, schema, channel
// ---------------------------------------------------------------------------------------------

TEST(BadInput, injection_attempts_in_names_are_refused_naming_the_option_and_create_nothing) {
  Sql sql(dsn());
  sql.exec("CREATE TABLE IF NOT EXISTS x (id int)");
  auto objects = [&] {
    return sql.scalar(
        "SELECT (SELECT count(*) FROM pg_class) || '/' || "
        "(SELECT count(*) FROM pg_namespace) || '/' || "
        "(SELECT count(*) FROM pg_trigger) || '/' || (SELECT count(*) FROM pg_proc)");
  };
  const std::string before = objects();
  const std::vector<std::pair<const char*, std::string>> names = {
      {"statement separator", "t; DROP TABLE x"},
      {"double quote", "t\"; DROP TABLE x; --"},
      {"single quote", "t'; DROP TABLE x; --"},
      {"comment", "t--"},
      {"uppercase", "Config"},
      {"leading digit", "1t"},
      {"dot", "public.t"},
      {"empty", ""},
      {"over-long", std::string(64, 'a')},
      {"non-ASCII", "t\xc3\xa9"},
      {"NUL", std::string("t\0x", 3)},
  };
  Log log;
  for (const char* field : {"table_name", "schema", "channel"}) {
    for (const auto& [what, name] : names) {
      SCOPED_TRACE(std::string(field) + ": " + what);
      Options o = test_options(unique_name("t_bad_name"));
      o.logger = log.logger;
      if (std::string(field) == "table_name") o.table_name = name;
      if (std::string(field) == "schema") o.schema = name;
      if (std::string(field) == "channel") o.channel = name;
      EXPECT_TRUE(Refused([&] { Store::open(dsn(), o); }, ErrorCode::kInvalidArgument,
                          {std::string("invalid ") + field}));
    }
  }
  // A table name over 40 bytes (the protocol derives longer names from it) is refused too.
  Options o = test_options("t_bad_name");
  o.table_name = std::string(41, 't');
  EXPECT_TRUE(Refused([&] { Store::open(dsn(), o); }, ErrorCode::kInvalidArgument,
                      {"invalid table_name", "at most 40 bytes"}));
  // The schema of a named pool.
  PoolManager pools;
  EXPECT_TRUE(Refused([&] { pools.register_named("p", dsn(), "s; DROP TABLE x"); },
                      ErrorCode::kInvalidArgument, {"schema of pool 'p'"}));
  EXPECT_FALSE(pools.contains("p"));

  EXPECT_EQ(objects(), before);
  EXPECT_EQ(sql.scalar("SELECT to_regclass('public.x') IS NOT NULL"), "t");
  EXPECT_EQ(log.sink->text(), "");  // Refused before anything ran.

  // The longest names accepted work.
  Options longest = test_options("t_bad_name");
  longest.table_name = std::string(40, 't');
  longest.schema = std::string(63, 's');
  longest.channel = std::string(63, 'c');
  auto store = Store::open(dsn(), longest);
  store->set("k", 1);
  EXPECT_EQ(sql.scalar("SELECT value::text FROM " + longest.schema + "." + longest.table_name),
            "1");
}

// ---------------------------------------------------------------------------------------------
// DSNs
// ---------------------------------------------------------------------------------------------

std::string with_password(const std::string& uri, const std::string& password) {
  // "postgresql://role@host..." -> "postgresql://role:password@host..."
  std::string out = uri;
  out.insert(out.find('@'), ":" + password);
  return out;
}

TEST(BadInput, a_wrong_password_is_refused_without_showing_either_password) {
  const std::string uri = role_requiring_password(kRole, kPassword);
  const std::string port = std::to_string(cluster().port());
  const std::vector<std::string> dsns = {
      with_password(uri, kWrongPassword),
      "host=127.0.0.1 port=" + port + " user=" + kRole + " password=" + kWrongPassword +
          " dbname=postgres",
      "host=127.0.0.1 port=" + port + " user=" + kRole + " dbname=postgres",  // none at all
  };
  Log log;
  for (const std::string& d : dsns) {
    Options o = test_options(unique_name("t_bad_dsn"));
    o.logger = log.logger;
    try {
      Store::open(d, o);
      ADD_FAILURE() << "opened with a wrong password";
    } catch (const Error& e) {
      std::string what = e.what();
      EXPECT_FALSE(e.retryable()) << what;                   // The same DSN will fail again.
      EXPECT_TRUE(contains(what, "password")) << what;       // Says what was wrong...
      EXPECT_TRUE(contains(what, kRole)) << what;            // ...and for whom,
      EXPECT_FALSE(contains(what, kWrongPassword)) << what;  // but never the password.
      EXPECT_FALSE(contains(what, kPassword)) << what;
    }
  }
  EXPECT_FALSE(contains(log.sink->text(), kWrongPassword));

  // The right password opens the store (so the refusals above were about the password), and
  // neither its messages nor its log show it.
  Options o = test_options(unique_name("t_bad_dsn"));
  o.logger = log.logger;
  auto store = Store::open(with_password(uri, kPassword), o);
  store->set("k", 1);
  EXPECT_EQ(store->get("k"), json(1));
  store->shutdown();
  EXPECT_TRUE(contains(log.sink->text(), kRole)) << log.sink->text();
  EXPECT_FALSE(contains(log.sink->text(), kPassword)) << log.sink->text();
}

// A free local port nobody listens on.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(BadInput, a_closed_port_is_unavailable_at_once_and_retryable) {
  Log log;
  Options o = test_options(unique_name("t_bad_dsn"));
  o.logger = log.logger;
  o.db_timeout = 5s;
  const std::string d = std::string("postgresql://") + kRole + ":" + kPassword +
                        "@127.0.0.1:" + std::to_string(closed_port()) + "/postgres";
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Refused([&] { Store::open(d, o); }, ErrorCode::kUnavailable,
                      {"connecting to", "127.0.0.1", "refused"}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);  // Not a wait for db_timeout.
  EXPECT_FALSE(contains(log.sink->text(), kPassword));
}

TEST(BadInput, a_non_routable_host_fails_within_db_timeout_and_is_retryable) {
  Log log;
  Options o = test_options(unique_name("t_bad_dsn"));
  o.logger = log.logger;
  o.db_timeout = 500ms;
  const std::string d =
      std::string("postgresql://") + kRole + ":" + kPassword + "@10.255.255.1:5432/postgres";
  auto start = std::chrono::steady_clock::now();
  try {
    Store::open(d, o);
    ADD_FAILURE() << "connected to 10.255.255.1";
  } catch (const Error& e) {
    // kTimeout where packets to it vanish; kUnavailable where the machine has no route at all.
    EXPECT_TRUE(e.code() == ErrorCode::kTimeout || e.code() == ErrorCode::kUnavailable) << e.what();
    EXPECT_TRUE(e.retryable()) << e.what();
    EXPECT_TRUE(contains(e.what(), "10.255.255.1")) << e.what();
    EXPECT_FALSE(contains(e.what(), kPassword)) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms + 2s);
  EXPECT_FALSE(contains(log.sink->text(), kPassword));
}

// libpq quotes a malformed URI whole in its parse error, password included. The program checks
// a DSN before handing it to the library and never shows libpq's message.
TEST(BadInput, a_malformed_dsn_given_to_the_cli_exits_2_without_showing_the_password) {
  for (const std::string& d : {std::string("postgresql://u:") + kPassword + "@[::1/db",
                               std::string("postgresql://u:") + kPassword + "@[]/db",
                               std::string("host=db password='") + kPassword}) {
    SCOPED_TRACE(d);
    RunResult r = run_cli({"get", "k", "--dsn", d});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(contains(r.err, "not a valid libpq connection string")) << r.err;
    EXPECT_FALSE(contains(r.err, kPassword)) << r.err;
  }
}

// The library itself still passes libpq's message on: Connection::Connection (src/db/connection.cc)
// must not quote libpq's parse error for a DSN that PQconninfoParse refuses. Enable once fixed.
TEST(BadInput, a_malformed_dsn_never_shows_its_password) {
  Log log;
  Options o = test_options(unique_name("t_bad_dsn"));
  o.logger = log.logger;
  const std::string d = std::string("postgresql://u:") + kPassword + "@[::1/db";
  EXPECT_TRUE(Refused([&] { Store::open(d, o); }, ErrorCode::kInvalidArgument, {"DSN"}));
  EXPECT_FALSE(contains(log.sink->text(), kPassword));
}

}  // namespace
}  // namespace syncconfig::testing
