// The `syncconfig` program, run as a child process against the test cluster: operator commands
// and their exit codes, configuration errors, watch, serve (two instances syncing over HTTP,
// signals, the embedded default surviving a restart), demo, the operator commands through a
// running `serve` (--server, SYNCCONFIG_SERVER, server.json discovery, watch resuming), and the
// commands of safe changes on both paths (--if-revision, apply, history, diff, rollback, lease;
// exit 4 on a conflict).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_support.h"
#include "test_support.h"
#include "tls_support.h"

namespace syncconfig::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A /watch stream read on its own thread; `headers` go with the request (e.g. Last-Event-ID).
class EventStream {
 public:
  EventStream(int port, const std::string& path, httplib::Headers headers = {})
      : client_("127.0.0.1", port) {
    client_.set_read_timeout(120, 0);
    thread_ = std::thread([this, path, headers = std::move(headers)] {
      client_.Get(path, headers, [this](const char* data, std::size_t n) {
        std::lock_guard lock(mu_);
        text_.append(data, n);
        return !stopping_.load();
      });
      ended_ = true;
    });
  }
  ~EventStream() {
    stopping_ = true;
    if (!ended_) client_.stop();
    thread_.join();
  }
  std::string text() const {
    std::lock_guard lock(mu_);
    return text_;
  }
  bool ended() const { return ended_; }

 private:
  httplib::Client client_;
  mutable std::mutex mu_;
  std::string text_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ended_{false};
  std::thread thread_;
};

// One Server-Sent Event of a /watch stream.
struct SseEvent {
  int64_t id = -1;
  std::string event;
  json data;
};

std::ostream& operator<<(std::ostream& os, const SseEvent& e) {
  return os << "id " << e.id << " " << e.event << " " << e.data.dump();
}

// The complete events in a stream's text so far (comments, e.g. keepalives, skipped).
std::vector<SseEvent> events_of(const std::string& text) {
  std::vector<SseEvent> out;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find("\n\n", start)) != std::string::npos; start = end + 2) {
    SseEvent e;
    std::istringstream block(text.substr(start, end - start));
    for (std::string line; std::getline(block, line);) {
      if (line.starts_with("id: ")) e.id = std::stoll(line.substr(4));
      if (line.starts_with("event: ")) e.event = line.substr(7);
      if (line.starts_with("data: ")) e.data = json::parse(line.substr(6));
    }
    if (!e.event.empty()) out.push_back(std::move(e));
  }
  return out;
}

// Only the `event: change` ones.
std::vector<SseEvent> changes_of(const std::vector<SseEvent>& events) {
  std::vector<SseEvent> out;
  for (const SseEvent& e : events) {
    if (e.event == "change") out.push_back(e);
  }
  return out;
}

std::string describe(const std::vector<SseEvent>& events) {
  std::ostringstream s;
  for (const SseEvent& e : events) s << "\n  " << e;
  return s.str();
}

// ---------------------------------------------------------------------------------------------

TEST(Cli, set_get_list_delete_crc_round_trip) {
  std::string table = unique_name("t_cli_ops");
  auto on = on_table(table);

  RunResult r = run(concat({"set", "alpha", R"({"a":1})"}, on));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "");
  r = run(concat({"get", "alpha"}, on));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"a":1})"));
  ASSERT_EQ(run(concat({"set", "beta", R"("text")"}, on)).exit_code, 0);
  ASSERT_EQ(run(concat({"set", "gamma", "-5"}, on)).exit_code, 0);

  r = run(concat({"list"}, on));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"alpha":{"a":1},"beta":"text","gamma":-5})"));
  r = run(concat({"list", "--prefix", "be"}, on));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"beta":"text"})"));

  // The CRC is the library's, over the same table.
  r = run(concat({"crc"}, on));
  ASSERT_EQ(r.exit_code, 0) << r;
  auto store = Store::open(dsn(), test_options(table));
  EXPECT_EQ(std::stoull(r.out), store->get_crc());

  // SYNCCONFIG_DSN stands in for --dsn.
  r = run({"get", "beta", "--table", table, "--channel", table + "_ch"},
          {{"SYNCCONFIG_DSN", dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "\"text\"\n");

  r = run(concat({"delete", "alpha"}, on));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "");
  r = run(concat({"delete", "alpha"}, on));
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_NE(r.err.find("syncconfig: key \"alpha\" not found"), std::string::npos) << r;
  r = run(concat({"get", "alpha"}, on));
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r;
  EXPECT_TRUE(wait_until([&] { return !store->contains("alpha"); }, 15s));
}

TEST(Cli, usage_errors_exit_2) {
  std::string table = unique_name("t_cli_usage");
  auto on = on_table(table);
  RunResult r = run(concat({"set", "k", "not json"}, on));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("syncconfig: the value is not valid JSON"), std::string::npos) << r;
  r = run(concat({"set", "", "1"}, on));  // Invalid key: kInvalidArgument.
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("invalid key"), std::string::npos) << r;
  r = run({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("syncconfig: unknown command 'frobnicate'"), std::string::npos) << r;
  EXPECT_EQ(run({}).exit_code, 2);
  EXPECT_EQ(run(concat({"get"}, on)).exit_code, 2);                  // Missing KEY.
  EXPECT_EQ(run(concat({"get", "k", "--bogus"}, on)).exit_code, 2);  // Unknown option.
  r = run({"get", "k"}, {{"SYNCCONFIG_DSN", dsn()}, {"SYNCCONFIG_SERVER", "http://127.0.0.1:1"}});
  EXPECT_EQ(r.exit_code, 2) << r;  // Which one? The flags choose.
  EXPECT_NE(r.err.find("SYNCCONFIG_DSN and SYNCCONFIG_SERVER are both set"), std::string::npos)
      << r;
  EXPECT_EQ(run(concat({"get", "k", "--table", "Bad-Name"}, {"--dsn", dsn()})).exit_code, 2);
  EXPECT_EQ(run({"get", "k", "--dsn", dsn(), "--config", "/dev/null"}).exit_code, 2);
  r = run({"get", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.out.find("KEY"), std::string::npos) << r;
}

TEST(Cli, an_unreachable_database_exits_3_without_showing_the_password) {
  RunResult r = run({"get", "k", "--dsn", "postgresql://x@127.0.0.1:1/x"});
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_EQ(r.err.rfind("syncconfig: ", 0), 0u) << r;
  r = run({"set", "k", "1"}, {{"SYNCCONFIG_DSN", "postgresql://x:hunter2pw@127.0.0.1:1/x"}});
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_EQ(r.err.find("hunter2pw"), std::string::npos) << r;
  EXPECT_NE(r.err.find("127.0.0.1"), std::string::npos) << r;
}

TEST(Cli, configuration_errors_exit_2_naming_the_entry_and_the_field) {
  TempDir dir;
  const std::string pool =
      "service-definitions:\n"
      "  db:\n"
      "    type: dbpool_pg\n"
      "    params: {dsn: \"postgresql://app:hunter2pw@127.0.0.1:1/app\"}\n";
  struct Case {
    std::string yaml, entry, field;
  };
  const Case cases[] = {
      {pool + "  cfg:\n    type: sync_config\n", "cfg", "type"},
      {pool + "  cfg:\n    type: sync_config_pg\n    params: {table_name: t}\n", "cfg",
       "dbpool_name"},
      {pool + "  cfg:\n    type: sync_config_pg\n    params: {dbpool_name: nope}\n", "cfg",
       "dbpool_name"},
      {pool + "  cfg:\n    type: sync_config_pg\n"
              "    params: {dbpool_name: db, heartbeat_interval: abc}\n",
       "cfg", "heartbeat_interval"},
      {pool +
           "  a:\n    type: sync_config_pg\n    depends-on: [b]\n    params: {dbpool_name: db}\n"
           "  b:\n    type: sync_config_pg\n    depends-on: [a]\n    params: {dbpool_name: db}\n",
       "a", "depends-on"},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::string file = dir.write("bad" + std::to_string(i++) + ".yaml", c.yaml);
    for (const char* command : {"get", "serve"}) {
      std::vector<std::string> args = {command, "--config", file};
      if (std::string(command) == "get") args.insert(args.begin() + 1, "k");
      RunResult r = run(args);
      EXPECT_EQ(r.exit_code, 2) << c.yaml << r;
      EXPECT_NE(r.err.find("syncconfig: " + file + ": service '" + c.entry + "': field '" +
                           c.field + "': "),
                std::string::npos)
          << r;
      EXPECT_EQ(r.err.find("hunter2pw"), std::string::npos) << r;
    }
  }
  RunResult r = run({"list", "--config", (dir.path() / "missing.yaml").string()});
  EXPECT_EQ(r.exit_code, 2) << r;
}

TEST(Cli, a_config_file_selects_the_store_by_name) {
  TempDir dir;
  std::string a = unique_name("t_cli_tenant_a");
  std::string b = unique_name("t_cli_tenant_b");
  std::string file = dir.write("tenants.yaml",
                               "service-definitions:\n"
                               "  db:\n"
                               "    type: dbpool_pg\n"
                               "    params: {dsn: \"${TEST_DSN}\"}\n"
                               "  tenant-a:\n"
                               "    type: sync_config_pg\n"
                               "    params: {dbpool_name: db, table_name: " +
                                   a + ", channel: " + a +
                                   "_ch}\n"
                                   "  tenant-b:\n"
                                   "    type: sync_config_pg\n"
                                   "    config: {db_pool_name: db, table_name: " +
                                   b + ", channel: " + b + "_ch}\n");
  EnvChanges env = {{"TEST_DSN", dsn()}};
  RunResult r = run({"set", "who", "\"b\"", "--config", file, "--store", "tenant-b"}, env);
  ASSERT_EQ(r.exit_code, 0) << r;
  ASSERT_EQ(run({"set", "who", "\"a\"", "--config", file}, env).exit_code, 0);  // First store.
  r = run(concat({"get", "who"}, on_table(b)));
  EXPECT_EQ(r.out, "\"b\"\n") << r;
  r = run(concat({"get", "who"}, on_table(a)));
  EXPECT_EQ(r.out, "\"a\"\n") << r;
  r = run({"get", "who", "--config", file, "--store", "tenant-c"}, env);
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("tenant-a, tenant-b"), std::string::npos) << r;
}

TEST(Cli, watch_prints_a_json_line_per_change_made_by_another_process) {
  std::string table = unique_name("t_cli_watch");
  auto on = on_table(table);
  Child watch(concat({"watch", "--prefix", "app:"}, on));
  ASSERT_TRUE(wait_until([&] { return watch.err().find("watching") != std::string::npos; }, 30s))
      << watch.err();

  ASSERT_EQ(run(concat({"set", "other", "1"}, on)).exit_code, 0);  // Filtered out.
  ASSERT_EQ(run(concat({"set", "app:limit", "42"}, on)).exit_code, 0);
  std::optional<std::string> line = watch.read_line(20s);
  ASSERT_TRUE(line) << watch.err();
  json change = json::parse(*line);
  EXPECT_EQ(change["key"], "app:limit");
  EXPECT_EQ(change["value"], 42);
  EXPECT_GT(change["revision"].get<int64_t>(), 0);
  EXPECT_TRUE(change["origin"] == "remote" || change["origin"] == "resync") << *line;
  // Key order as documented.
  EXPECT_EQ(line->rfind("{\"key\":", 0), 0u) << *line;

  ASSERT_EQ(run(concat({"delete", "app:limit"}, on)).exit_code, 0);
  line = watch.read_line(20s);
  ASSERT_TRUE(line) << watch.err();
  change = json::parse(*line);
  EXPECT_EQ(change["key"], "app:limit");
  EXPECT_TRUE(change["value"].is_null());

  watch.signal(SIGINT);
  EXPECT_EQ(watch.wait(15s), std::optional<int>(0)) << watch.err();
}

TEST(Cli, two_serve_processes_sync_put_get_and_watch) {
  // Both on the default table of the test cluster: only this test uses it.
  std::vector<std::string> args = {"serve", "--dsn", dsn(), "--listen", "127.0.0.1:0"};
  Child a(args);
  Child b(args);
  int port_a = listening_port(a);
  int port_b = listening_port(b);
  ASSERT_GT(port_a, 0);
  ASSERT_GT(port_b, 0);
  ASSERT_NE(port_a, port_b);

  const std::string key = unique_name("cli_two_serve");
  {
    EventStream stream(port_b, "/watch");
    ASSERT_TRUE(
        wait_until([&] { return stream.text().find("event: ready") != std::string::npos; }, 20s))
        << stream.text();

    httplib::Client client_a("127.0.0.1", port_a);
    auto put = client_a.Put("/settings/" + key, R"({"v":1})", "application/json");
    ASSERT_TRUE(put) << httplib::to_string(put.error());
    ASSERT_EQ(put->status, 200) << put->body;

    httplib::Client client_b("127.0.0.1", port_b);
    EXPECT_TRUE(wait_until(
        [&] {
          auto got = client_b.Get("/settings/" + key);
          return got && got->status == 200 && json::parse(got->body) == json{{"v", 1}};
        },
        15s));
    EXPECT_TRUE(wait_until(
        [&] {
          std::string text = stream.text();
          return text.find("event: change") != std::string::npos &&
                 text.find(key) != std::string::npos;
        },
        15s))
        << stream.text();

    // SIGTERM: the open /watch stream is closed and the process exits 0 promptly.
    Clock::time_point start = Clock::now();
    b.signal(SIGTERM);
    EXPECT_EQ(b.wait(15s), std::optional<int>(0)) << b.err();
    EXPECT_LT(Clock::now() - start, 10s);
    EXPECT_TRUE(wait_until([&] { return stream.ended(); }, 10s));
  }
  a.signal(SIGINT);
  EXPECT_EQ(a.wait(15s), std::optional<int>(0)) << a.err();
}

TEST(Cli, serve_requires_the_token_when_given_one) {
  Child serve({"serve", "--dsn", dsn(), "--listen", "127.0.0.1:0"},
              {{"SYNCCONFIG_TOKEN", "s3cret-token"}});
  int port = listening_port(serve);
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto anonymous = client.Get("/settings");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  client.set_bearer_token_auth("s3cret-token");
  auto authorized = client.Get("/settings");
  ASSERT_TRUE(authorized);
  EXPECT_EQ(authorized->status, 200);
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(15s), std::optional<int>(0)) << serve.err();
}

TEST(Cli, serve_with_a_config_file_serves_each_store_under_its_name) {
  TempDir dir;
  std::string a = unique_name("t_cli_serve_a");
  std::string b = unique_name("t_cli_serve_b");
  std::string file = dir.write("services.yaml",
                               "service-definitions:\n"
                               "  db:\n"
                               "    type: dbpool_pg\n"
                               "    params: {dsn: \"${TEST_DSN}\"}\n"
                               "  tenant-a:\n"
                               "    type: sync_config_pg\n"
                               "    depends-on: [dbpool-manager]\n"
                               "    params: {dbpool_name: db, table_name: " +
                                   a + ", channel: " + a +
                                   "_ch, heartbeat_interval: 5}\n"
                                   "  tenant-b:\n"
                                   "    type: sync_config_pg\n"
                                   "    params: {dbpool_name: db, table_name: " +
                                   b + ", channel: " + b + "_ch}\n");
  Child serve({"serve", "--config", file, "--listen", "127.0.0.1:0"}, {{"TEST_DSN", dsn()}});
  int port = listening_port(serve);
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto put = client.Put("/stores/tenant-b/settings/plan", R"("gold")", "application/json");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  put = client.Put("/settings/plan", R"("basic")", "application/json");  // The first store.
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(run(concat({"get", "plan"}, on_table(b))).out, "\"gold\"\n");
  EXPECT_EQ(run(concat({"get", "plan"}, on_table(a))).out, "\"basic\"\n");
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(15s), std::optional<int>(0)) << serve.err();
}

TEST(Cli, serve_exits_3_when_it_cannot_listen_and_2_for_a_bad_address) {
  Child first({"serve", "--dsn", dsn(), "--listen", "127.0.0.1:0"});
  int port = listening_port(first);
  ASSERT_GT(port, 0);
  RunResult r = run({"serve", "--dsn", dsn(), "--listen", "127.0.0.1:" + std::to_string(port)});
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.err.find("syncconfig: "), std::string::npos) << r;
  r = run({"serve", "--dsn", dsn(), "--listen", "localhost"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--listen"), std::string::npos) << r;
}

TEST(Cli, serve_without_a_dsn_keeps_its_embedded_data_across_restarts) {
  TempDir dir;
  const std::string data_dir = (dir.path() / "data").string();
  const std::vector<std::string> args = {"serve", "--data-dir", data_dir, "--listen",
                                         "127.0.0.1:0"};
  {
    Child serve(args);
    int port = listening_port(serve, 120s);
    ASSERT_GT(port, 0);
    EXPECT_TRUE(fs::exists(fs::path(data_dir) / "PG_VERSION"));
    httplib::Client client("127.0.0.1", port);
    auto put = client.Put("/settings/persisted", R"("yes")", "application/json");
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 200) << put->body;
    serve.signal(SIGTERM);
    ASSERT_EQ(serve.wait(60s), std::optional<int>(0)) << serve.err();
  }
  Child again(args);
  int port = listening_port(again, 120s);
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto got = client.Get("/settings/persisted");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(json::parse(got->body), json("yes"));
  again.signal(SIGTERM);
  EXPECT_EQ(again.wait(60s), std::optional<int>(0)) << again.err();
}

TEST(Cli, demo_converges_within_a_minute) {
  Clock::time_point start = Clock::now();
  RunResult r = run({"demo"}, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_LT(Clock::now() - start, 60s);
  EXPECT_NE(r.out.find("callback got it"), std::string::npos) << r;
  EXPECT_NE(r.out.find("repaired by its heartbeat"), std::string::npos) << r;
  EXPECT_NE(r.out.find("All instances converged."), std::string::npos) << r;
}

// ---- The operator commands through a running `serve` ------------------------------------------

// Whether something answers HTTP on the default local server's address (another engineer's
// `scripts/run.sh`, say): the tests that need nothing there skip then.
bool default_server_answers() {
  httplib::Client client("127.0.0.1", 8080);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(2, 0);
  return static_cast<bool>(client.Get("/health"));
}

// Writes <dir>/.syncconfig/server.json as `serve` does.
void write_server_json(const fs::path& dir, const std::string& url, pid_t pid) {
  fs::create_directories(dir / ".syncconfig");
  std::ofstream(dir / ".syncconfig" / "server.json") << json{{"url", url}, {"pid", pid}}.dump();
}

// The pid of a process that has exited (and been reaped).
pid_t a_dead_pid() {
  Child gone({"--help"});
  gone.read_rest(30s);
  gone.wait(30s);
  return gone.pid();
}

TEST(
    Cli,
    get_set_delete_list_and_crc_over_a_server_need_no_database_and_print_what_the_dsn_path_prints) {
  std::string table = unique_name("t_cli_remote");
  TableServer server(table);
  ASSERT_GT(server.port(), 0);
  const std::vector<std::string> at = {"--server", server.url()};

  RunResult r = run(concat({"set", "alpha", R"({"a":1})"}, at));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(run(concat({"set", "rate_limit:/api/search", "100"}, at)).exit_code, 0);
  ASSERT_EQ(run(concat({"set", "beta", R"("text")"}, at)).exit_code, 0);

  // A key with '/' and ':' is one path segment; the value arrives as it was given.
  r = run(concat({"get", "rate_limit:/api/search"}, at));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "100\n");
  // Byte for byte what the database path prints, on the same table.
  for (const std::vector<std::string>& command : std::vector<std::vector<std::string>>{
           {"get", "alpha"}, {"list"}, {"list", "--prefix", "be"}, {"crc"}}) {
    RunResult over_http = run(concat(command, at));
    RunResult over_sql = run(concat(command, on_table(table)));
    ASSERT_EQ(over_http.exit_code, 0) << over_http;
    ASSERT_EQ(over_sql.exit_code, 0) << over_sql;
    EXPECT_EQ(over_http.out, over_sql.out) << command.front();
  }
  r = run(concat({"list"}, at));
  EXPECT_EQ(json::parse(r.out),
            json::parse(R"({"alpha":{"a":1},"beta":"text","rate_limit:/api/search":100})"));

  r = run(concat({"delete", "alpha"}, at));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "");
  r = run(concat({"get", "alpha"}, on_table(table)));
  EXPECT_EQ(r.exit_code, 1) << r;  // Gone from the table itself.
}

TEST(Cli, syncconfig_server_in_the_environment_stands_in_for_the_server_option) {
  TableServer server(unique_name("t_cli_remote_env"));
  ASSERT_GT(server.port(), 0);
  EnvChanges env = {{"SYNCCONFIG_SERVER", server.url()}};
  ASSERT_EQ(run({"set", "k", "[1,2]"}, env).exit_code, 0);
  RunResult r = run({"get", "k"}, env);
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "[1,2]\n");
  // A flag wins over the environment.
  r = run({"get", "k", "--server", "http://127.0.0.1:1"}, env);
  EXPECT_EQ(r.exit_code, 3) << r;
}

TEST(Cli, a_server_url_that_cannot_be_used_is_a_usage_error_naming_it) {
  RunResult r = run({"list", "--server", "ftp://127.0.0.1:8443"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--server: server URL \"ftp://127.0.0.1:8443\": expected http://"),
            std::string::npos)
      << r;
  r = run({"list"}, {{"SYNCCONFIG_SERVER", "127.0.0.1:8080"}});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("SYNCCONFIG_SERVER: server URL \"127.0.0.1:8080\": expected http://"),
            std::string::npos)
      << r;
  r = run({"list", "--server", "http://admin:hunter2pw@127.0.0.1:8080"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_EQ(r.err.find("hunter2pw"), std::string::npos) << r;
  EXPECT_EQ(run({"list", "--server", "http://[::1:80"}).exit_code, 2);
}

TEST(Cli, serve_over_tls_answers_the_cli_with_a_ca_file_and_reloads_its_certificate_on_sighup) {
  testing::Pki pki;
  const std::string ca_a = pki.ca("ca_a"), ca_b = pki.ca("ca_b");
  testing::Leaf a = pki.leaf("ca_a", "a", "DNS:localhost,IP:127.0.0.1", 1);
  testing::Leaf b = pki.leaf("ca_b", "b", "DNS:localhost,IP:127.0.0.1", 2);
  const std::string cert = (pki.dir() / "served.pem").string();
  const std::string key = (pki.dir() / "served.key").string();
  testing::copy_over(a.cert, cert);
  testing::copy_over(a.key, key);
  // The key through the environment (the systemd unit's /etc/default/syncconfig), the
  // certificate as a flag.
  Child serve({"serve", "--dsn", dsn(), "--listen", "127.0.0.1:0", "--tls-cert", cert},
              {{"SYNCCONFIG_TLS_KEY", key}});
  const int port = listening_port(serve);
  ASSERT_GT(port, 0);
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  auto get = [&](const std::string& ca) {
    return run({"get", "tls.cli", "--server", url, "--ca-file", ca});
  };
  ASSERT_EQ(run({"set", "tls.cli", "1", "--server", url, "--ca-file", ca_a}).exit_code, 0);
  RunResult r = get(ca_a);
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "1\n");
  r = get(ca_b);
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.err.find("certificate verify failed"), std::string::npos) << r;
  {
    // A relay follows the https server, verifying it against --upstream-ca-file.
    Child relay(
        {"serve", "--upstream", url, "--upstream-ca-file", ca_a, "--listen", "127.0.0.1:0"});
    const int relay_port = listening_port(relay);
    ASSERT_GT(relay_port, 0);
    r = run({"get", "tls.cli", "--server", "http://127.0.0.1:" + std::to_string(relay_port)});
    EXPECT_EQ(r.exit_code, 0) << r << relay.err();
    EXPECT_EQ(r.out, "1\n");
  }

  // Rotation: new files, SIGHUP; new connections get the new certificate.
  testing::copy_over(b.cert, cert);
  testing::copy_over(b.key, key);
  serve.signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] { return get(ca_b).exit_code == 0; }, 20s)) << serve.err();
  EXPECT_EQ(get(ca_a).exit_code, 3);
  // A bad key on the next SIGHUP: logged, and the server goes on with the certificate it has.
  std::ofstream(key, std::ios::trunc) << "not a key\n";
  serve.signal(SIGHUP);
  EXPECT_TRUE(
      wait_until([&] { return serve.err().find("TLS reload failed") != std::string::npos; }, 20s))
      << serve.err();
  EXPECT_NE(serve.err().find(key), std::string::npos) << serve.err();
  EXPECT_EQ(get(ca_b).exit_code, 0);
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(15s), std::optional<int>(0)) << serve.err();
}

TEST(Cli, serve_takes_its_tls_certificate_and_key_from_the_config_file) {
  testing::Pki pki;
  const std::string ca = pki.ca("ca_file");
  testing::Leaf leaf = pki.leaf("ca_file", "from_file", "DNS:localhost,IP:127.0.0.1", 3);
  TableServer server(unique_name("t_cli_tls_file"), 0, {}, {},
                     "serve:\n  tls_cert: " + leaf.cert + "\n  tls_key: " + leaf.key + "\n");
  Child& serve = server.child();
  const int port = server.port();
  ASSERT_GT(port, 0) << serve.err();
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  ASSERT_EQ(run({"set", "tls.file", "7", "--server", url, "--ca-file", ca}).exit_code, 0);
  RunResult r = run({"get", "tls.file", "--server", url, "--ca-file", ca});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "7\n");
  EXPECT_NE(serve.err().find("TLS certificate " + leaf.cert), std::string::npos) << serve.err();
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(15s), std::optional<int>(0)) << serve.err();
}

TEST(Cli, server_with_dsn_config_or_table_is_a_usage_error) {
  RunResult r = run({"list", "--server", "http://127.0.0.1:1", "--dsn", dsn()});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--server cannot be used with --dsn or --config"), std::string::npos) << r;
  r = run({"list", "--server", "http://127.0.0.1:1", "--config", "/dev/null"});
  EXPECT_EQ(r.exit_code, 2) << r;
  r = run({"list", "--server", "http://127.0.0.1:1", "--table", "t"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--table and --channel apply to a database"), std::string::npos) << r;
  r = run({"list", "--dsn", dsn(), "--token", "t0ken"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--token applies to --server"), std::string::npos) << r;
}

TEST(Cli, a_server_nobody_listens_on_exits_3_naming_its_url) {
  int port = 0;
  {
    TableServer gone(unique_name("t_cli_remote_gone"));  // A port that was just free.
    port = gone.port();
  }
  ASSERT_GT(port, 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  for (const char* command : {"get", "list", "watch"}) {
    std::vector<std::string> args = {command, "--server", url};
    if (std::string(command) == "get") args.insert(args.begin() + 1, "k");
    RunResult r = run(args, {}, 30s);
    EXPECT_EQ(r.exit_code, 3) << command << r;
    EXPECT_NE(r.err.find("syncconfig: cannot connect to " + url), std::string::npos) << r;
  }
}

TEST(Cli, an_absent_key_over_a_server_exits_1_for_get_and_delete) {
  TableServer server(unique_name("t_cli_remote_absent"));
  ASSERT_GT(server.port(), 0);
  RunResult r = run({"get", "missing", "--server", server.url()});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("syncconfig: key \"missing\" not found"), std::string::npos) << r;
  r = run({"delete", "missing", "--server", server.url()});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_NE(r.err.find("syncconfig: key \"missing\" not found"), std::string::npos) << r;
}

TEST(Cli, what_the_server_refuses_exits_2_with_the_servers_message) {
  TableServer server(unique_name("t_cli_remote_refused"));
  ASSERT_GT(server.port(), 0);
  const std::vector<std::string> at = {"--server", server.url()};
  // set and delete leave the key to the server: its 400 names the problem, as the library would.
  const std::string long_key(300, 'k');
  RunResult r = run(concat({"set", long_key, "1"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("syncconfig: invalid key: 300 bytes long, the limit is 255"),
            std::string::npos)
      << r;
  r = run(concat({"delete", long_key}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("invalid key"), std::string::npos) << r;
  // get checks the key itself (GET answers 404 for a key that cannot exist).
  r = run(concat({"get", long_key}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("invalid key"), std::string::npos) << r;
  // Valid JSON the library would take, deeper than the server's body limit of 512 levels.
  r = run(concat({"set", "deep", std::string(600, '[') + std::string(600, ']')}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("nests deeper than 512 levels"), std::string::npos) << r;
  r = run(concat({"list", "--store", "nope"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("unknown store 'nope'"), std::string::npos) << r;
  // Bad JSON never leaves the command, with the same message as on the database.
  r = run(concat({"set", "k", "not json"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("syncconfig: the value is not valid JSON"), std::string::npos) << r;
}

TEST(Cli, a_server_with_a_token_takes_it_from_the_option_or_the_environment_and_refusal_exits_2) {
  const std::string token = "s3cret-t0ken";
  TableServer server(unique_name("t_cli_remote_token"), 0, {{"SYNCCONFIG_TOKEN", token}});
  ASSERT_GT(server.port(), 0);
  const std::vector<std::string> at = {"--server", server.url()};
  RunResult r = run(concat({"set", "k", "1"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("requires a token: pass --token TOKEN or set SYNCCONFIG_TOKEN"),
            std::string::npos)
      << r;
  r = run(concat({"get", "k", "--token", "wrong-t0ken"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("refused the token"), std::string::npos) << r;
  EXPECT_EQ(r.err.find("wrong-t0ken"), std::string::npos) << r;
  r = run(concat({"set", "k", "1", "--token", token}, at));
  EXPECT_EQ(r.exit_code, 0) << r;
  r = run(concat({"get", "k"}, at), {{"SYNCCONFIG_TOKEN", token}});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "1\n");
  EXPECT_EQ(r.err.find(token), std::string::npos) << r;
  r = run(concat({"watch"}, at));
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("requires a token"), std::string::npos) << r;
}

TEST(Cli, serve_on_its_embedded_database_publishes_server_json_and_commands_run_there_find_it) {
  TempDir dir;
  const fs::path file = dir.path() / ".syncconfig" / "server.json";
  Child serve({"serve", "--listen", "127.0.0.1:0"}, {}, dir.path());
  int port = listening_port(serve, 120s);
  ASSERT_GT(port, 0);

  // Written before "listening on", atomically, for the owner only.
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  json published = json::parse(std::ifstream(file));
  EXPECT_EQ(published["url"], "http://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(published["pid"], serve.pid());

  // No --dsn, --server or environment: the commands find it from the same directory.
  RunResult r = run({"set", "feature:new_ui", "true"}, {}, 60s, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  r = run({"get", "feature:new_ui"}, {}, 60s, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "true\n");
  r = run({"list"}, {}, 60s, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"feature:new_ui":true})"));
  httplib::Client client("127.0.0.1", port);
  auto got = client.Get("/settings/feature:new_ui");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, "true");

  serve.signal(SIGTERM);
  ASSERT_EQ(serve.wait(60s), std::optional<int>(0)) << serve.err();
  EXPECT_FALSE(fs::exists(file)) << "a clean exit removes server.json";
}

TEST(Cli, commands_follow_a_server_json_whose_process_is_running) {
  TableServer server(unique_name("t_cli_remote_found"));
  ASSERT_GT(server.port(), 0);
  TempDir dir;
  write_server_json(dir.path(), server.url(), server.child().pid());
  RunResult r = run({"set", "found", "\"yes\""}, {}, 60s, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r;
  r = run({"get", "found", "--server", server.url()});
  EXPECT_EQ(r.out, "\"yes\"\n") << r;
}

TEST(Cli, a_server_json_naming_a_dead_process_sends_the_command_to_the_default_local_server) {
  if (default_server_answers()) {
    GTEST_SKIP() << "something answers on 127.0.0.1:8080, the default local server; this test "
                    "needs nothing there";
  }
  TableServer server(unique_name("t_cli_remote_stale"));
  ASSERT_GT(server.port(), 0);
  TempDir dir;
  const pid_t dead = a_dead_pid();
  write_server_json(dir.path(), server.url(), dead);  // A live URL, but a stale file.
  RunResult r = run({"list"}, {}, 60s, dir.path());
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.err.find("no syncconfig server answered at http://127.0.0.1:8080 (the default "
                       "local server; ./.syncconfig/server.json names pid " +
                       std::to_string(dead) + ", which is not running)"),
            std::string::npos)
      << r;
  EXPECT_NE(r.err.find("--server URL"), std::string::npos) << r;
  EXPECT_NE(r.err.find("--dsn DSN"), std::string::npos) << r;

  // Without the file at all, the message says so.
  TempDir empty;
  r = run({"get", "k"}, {}, 60s, empty.path());
  EXPECT_EQ(r.exit_code, 3) << r;
  EXPECT_NE(r.err.find("./.syncconfig/server.json does not exist"), std::string::npos) << r;
}

TEST(Cli, watch_over_a_server_prints_one_json_line_per_change) {
  TableServer server(unique_name("t_cli_remote_watch"));
  ASSERT_GT(server.port(), 0);
  const std::vector<std::string> at = {"--server", server.url()};
  Child watch(concat({"watch", "--prefix", "app:"}, at));
  ASSERT_TRUE(wait_until([&] { return watch.err().find("watching") != std::string::npos; }, 30s))
      << watch.err();

  ASSERT_EQ(run(concat({"set", "other", "1"}, at)).exit_code, 0);  // Filtered out.
  ASSERT_EQ(run(concat({"set", "app:limit", "42"}, at)).exit_code, 0);
  std::optional<std::string> line = watch.read_line(20s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(line->rfind("{\"key\":\"app:limit\",\"value\":42,\"revision\":", 0), 0u) << *line;
  json change = json::parse(*line);
  EXPECT_FALSE(change.contains("origin")) << *line;  // Not sent over HTTP.
  const int64_t first = change["revision"].get<int64_t>();

  ASSERT_EQ(run(concat({"delete", "app:limit"}, at)).exit_code, 0);
  line = watch.read_line(20s);
  ASSERT_TRUE(line) << watch.err();
  change = json::parse(*line);
  EXPECT_EQ(change["key"], "app:limit");
  EXPECT_TRUE(change["value"].is_null());
  EXPECT_GT(change["revision"].get<int64_t>(), first);

  watch.signal(SIGINT);
  EXPECT_EQ(watch.wait(15s), std::optional<int>(0)) << watch.err();
  EXPECT_EQ(watch.read_rest(1s), "");
}

TEST(Cli, watch_over_a_server_keeps_reconnecting_until_sigterm) {
  auto server = std::make_unique<TableServer>(unique_name("t_cli_remote_retry"));
  ASSERT_GT(server->port(), 0);
  Child watch({"watch", "--server", server->url()});
  ASSERT_TRUE(wait_until([&] { return watch.err().find("watching") != std::string::npos; }, 30s))
      << watch.err();
  server->child().signal(SIGKILL);
  server.reset();
  ASSERT_TRUE(wait_until([&] { return watch.err().find("lost") != std::string::npos; }, 30s))
      << watch.err();
  EXPECT_FALSE(watch.wait(1s)) << "watch gave up: " << watch.err();
  const Clock::time_point asked = Clock::now();
  watch.signal(SIGTERM);
  EXPECT_EQ(watch.wait(15s), std::optional<int>(0)) << watch.err();
  EXPECT_LT(Clock::now() - asked, 2s);
}

// Written against the new HTTP contract (/watch ids are database revisions, the same on every
// server of a table). Today's server numbers /watch events per process, so a restarted server
// answers the old id with a reset: this test fails until the new server lands.
TEST(Cli, watch_over_a_server_resumes_after_a_restart_with_exactly_the_later_changes) {
  const std::string table = unique_name("t_cli_remote_resume");
  auto first = std::make_unique<TableServer>(table);
  const int port = first->port();
  ASSERT_GT(port, 0);
  const std::string url = first->url();
  Child watch({"watch", "--server", url});
  ASSERT_TRUE(wait_until([&] { return watch.err().find("watching") != std::string::npos; }, 30s))
      << watch.err();
  ASSERT_EQ(run({"set", "k1", "1", "--server", url}).exit_code, 0);
  std::optional<std::string> line = watch.read_line(20s);
  ASSERT_TRUE(line) << watch.err();
  json change = json::parse(*line);
  ASSERT_EQ(change["key"], "k1");
  int64_t revision = change["revision"].get<int64_t>();

  // The connection breaks; a change happens while nobody serves the table; a new server of the
  // same table comes up on the same port.
  first->child().signal(SIGKILL);
  ASSERT_TRUE(first->child().wait(15s));
  first.reset();
  ASSERT_EQ(run(concat({"set", "k2", "2"}, on_table(table))).exit_code, 0);
  TableServer second(table, port);
  ASSERT_EQ(second.port(), port);
  ASSERT_EQ(run({"set", "k3", "3", "--server", url}).exit_code, 0);

  for (const char* key : {"k2", "k3"}) {
    line = watch.read_line(30s);
    ASSERT_TRUE(line) << "no line for " << key << "; stderr: " << watch.err();
    change = json::parse(*line);
    ASSERT_FALSE(change.contains("reset"))
        << "the watcher got a reset instead of the changes after revision " << revision
        << " (expected with a server whose /watch ids are per process): " << *line;
    EXPECT_EQ(change["key"], key) << *line;
    EXPECT_GT(change["revision"].get<int64_t>(), revision) << *line;
    revision = change["revision"].get<int64_t>();
  }
  EXPECT_EQ(watch.read_line(1s), std::nullopt) << "nothing else: no repeat of k1";
  watch.signal(SIGTERM);
  EXPECT_EQ(watch.wait(15s), std::optional<int>(0)) << watch.err();
}

// ---- /watch ids across `serve` processes of one table ------------------------------------------

// Keeps a local port taken (a listening socket) while it lives. Made after the port's server
// exited; if something else took the port meanwhile, it is taken all the same.
class PortHold {
 public:
  explicit PortHold(int port) : port_(port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0) {
      EXPECT_EQ(errno, EADDRINUSE) << "holding port " << port << ": " << std::strerror(errno);
    }
  }
  ~PortHold() { ::close(fd_); }
  PortHold(const PortHold&) = delete;
  PortHold& operator=(const PortHold&) = delete;
  int port() const { return port_; }

 private:
  int port_;
  int fd_ = -1;
};

// The ids of `events` never go back, a change's id is above the id before it, and it is the
// change's revision.
void expect_ids_are_increasing_revisions(const std::vector<SseEvent>& events) {
  int64_t last = -1;
  for (const SseEvent& e : events) {
    EXPECT_GE(e.id, last) << e << describe(events);
    if (e.event == "change") {
      EXPECT_GT(e.id, last) << e << describe(events);
      EXPECT_EQ(e.data.at("revision").get<int64_t>(), e.id) << e;
    }
    last = e.id;
  }
}

// Per key, the revisions in `changes` (in the order received) strictly increase.
void expect_per_key_revisions_increase(const std::vector<SseEvent>& changes) {
  std::map<std::string, int64_t> last;
  for (const SseEvent& e : changes) {
    const std::string key = e.data.at("key");
    auto it = last.find(key);
    if (it != last.end()) EXPECT_GT(e.id, it->second) << e << describe(changes);
    last[key] = e.id;
  }
}

// Whether `stream` has a change of `key` (with any value).
bool has_change_of(const EventStream& stream, const std::string& key) {
  for (const SseEvent& e : changes_of(events_of(stream.text()))) {
    if (e.data.at("key") == key) return true;
  }
  return false;
}

// The change `witness` received with the same key and revision as `e` (to compare payloads), or
// a failure.
void expect_the_witness_saw(const std::vector<SseEvent>& witness, const SseEvent& e) {
  for (const SseEvent& w : witness) {
    if (w.event == "change" && w.id == e.id) {
      EXPECT_EQ(w.data, e.data) << "same id, different change";
      return;
    }
  }
  ADD_FAILURE() << "a change the stream on the first server never sent with this id: " << e
                << describe(witness);
}

// The issue's scenario, with real processes and real PostgreSQL: two `serve` processes of one
// table, a client reading /watch from A, writes from a third party (a library Store), the client
// resuming on B with the last id it saw, and on B again after B restarts on another port. At
// each resume: the changes made meanwhile, each exactly once, with the id A gives it, and no
// reset. A marker written after each resume shows that nothing else arrives.
TEST(Cli, a_watch_resumes_by_revision_on_another_serve_process_and_after_it_restarts) {
  const std::string table = unique_name("t_cli_resume_ab");
  TableServer a(table);
  auto b = std::make_unique<TableServer>(table);
  ASSERT_GT(a.port(), 0);
  ASSERT_GT(b->port(), 0);
  auto writer = Store::open(dsn(), test_options(table));
  // A witness on A, connected throughout: the ids A gives every change.
  EventStream witness(a.port(), "/watch");
  ASSERT_TRUE(wait_until([&] { return !events_of(witness.text()).empty(); }, 20s))
      << witness.text();
  std::vector<SseEvent> received;  // Every change the client received, in order, on A, B, B'.

  // 1. The client reads from A.
  int64_t last_id = -1;
  {
    EventStream on_a(a.port(), "/watch");
    ASSERT_TRUE(wait_until([&] { return !events_of(on_a.text()).empty(); }, 20s)) << on_a.text();
    ASSERT_EQ(events_of(on_a.text()).front().event, "ready") << on_a.text();
    writer->set("x", 1);
    writer->set("y", 1);
    ASSERT_TRUE(wait_until([&] { return has_change_of(on_a, "y"); }, 20s))
        << describe(events_of(on_a.text()));
    // It hangs up: what it saw is all it has.
    std::vector<SseEvent> seen = events_of(on_a.text());
    std::vector<SseEvent> changes = changes_of(seen);
    ASSERT_EQ(changes.size(), 2u) << describe(seen);
    EXPECT_EQ(changes[0].data.at("key"), "x");
    EXPECT_EQ(changes[1].data.at("key"), "y");
    expect_ids_are_increasing_revisions(seen);
    received.insert(received.end(), changes.begin(), changes.end());
    last_id = seen.back().id;
  }

  // 2. Changes while disconnected; the client resumes on B.
  writer->set("x", 2);
  writer->remove("y");
  writer->set("z", json{{"n", 3}});
  {
    EventStream on_b(b->port(), "/watch", {{"Last-Event-ID", std::to_string(last_id)}});
    ASSERT_TRUE(wait_until([&] { return has_change_of(on_b, "z"); }, 30s))
        << describe(events_of(on_b.text())) << "\nB's stderr: " << b->child().err();
    writer->set("marker1", true);
    ASSERT_TRUE(wait_until([&] { return has_change_of(on_b, "marker1"); }, 30s))
        << describe(events_of(on_b.text()));
    std::vector<SseEvent> seen = events_of(on_b.text());
    ASSERT_EQ(seen.front().event, "ready") << "no reset: B can say what changed" << describe(seen);
    EXPECT_EQ(seen.front().id, last_id) << describe(seen);
    std::vector<SseEvent> changes = changes_of(seen);
    ASSERT_EQ(changes.size(), 4u) << describe(seen);
    EXPECT_EQ(changes[0].data,
              (json{{"key", "x"}, {"value", 2}, {"deleted", false}, {"revision", changes[0].id}}));
    EXPECT_EQ(
        changes[1].data,
        (json{{"key", "y"}, {"value", nullptr}, {"deleted", true}, {"revision", changes[1].id}}));
    EXPECT_EQ(changes[2].data.at("key"), "z");
    EXPECT_EQ(changes[2].data.at("value"), (json{{"n", 3}}));
    EXPECT_EQ(changes[3].data.at("key"), "marker1");
    EXPECT_GT(changes[0].id, last_id);
    expect_ids_are_increasing_revisions(seen);
    for (const SseEvent& e : seen) EXPECT_NE(e.event, "reset") << e;
    received.insert(received.end(), changes.begin(), changes.end());
    last_id = seen.back().id;

    // 3. B is stopped (SIGTERM) while the client reads from it: the stream ends.
    b->child().signal(SIGTERM);
    EXPECT_EQ(b->child().wait(30s), std::optional<int>(0)) << b->child().err();
    EXPECT_TRUE(wait_until([&] { return on_b.ended(); }, 10s));
    // Whatever B sent before it ended counts (a progress event, say): the client resumes from
    // its last id.
    seen = events_of(on_b.text());
    changes = changes_of(seen);
    ASSERT_EQ(changes.size(), 4u) << describe(seen);
    last_id = seen.back().id;
  }
  // Its port stays taken, so that B comes back elsewhere.
  const PortHold old_port_b(b->port());
  b.reset();

  // 4. Changes while B is down; B comes back on another port; a change before the client is back.
  writer->set("x", 3);
  writer->set("w", "while down");
  b = std::make_unique<TableServer>(table);
  ASSERT_GT(b->port(), 0);
  EXPECT_NE(b->port(), old_port_b.port());
  writer->set("v", json::array({1, 2}));
  {
    EventStream again(b->port(), "/watch", {{"Last-Event-ID", std::to_string(last_id)}});
    ASSERT_TRUE(wait_until([&] { return has_change_of(again, "v"); }, 30s))
        << describe(events_of(again.text())) << "\nB's stderr: " << b->child().err();
    writer->set("marker2", true);
    ASSERT_TRUE(wait_until([&] { return has_change_of(again, "marker2"); }, 30s))
        << describe(events_of(again.text()));
    std::vector<SseEvent> seen = events_of(again.text());
    ASSERT_EQ(seen.front().event, "ready") << "no reset after a restart" << describe(seen);
    EXPECT_EQ(seen.front().id, last_id) << describe(seen);
    std::vector<SseEvent> changes = changes_of(seen);
    std::vector<std::string> keys;
    for (const SseEvent& e : changes) keys.push_back(e.data.at("key"));
    EXPECT_EQ(keys, (std::vector<std::string>{"x", "w", "v", "marker2"})) << describe(seen);
    ASSERT_EQ(changes.size(), 4u);
    EXPECT_EQ(changes[0].data.at("value"), 3);
    EXPECT_EQ(changes[1].data.at("value"), "while down");
    EXPECT_EQ(changes[2].data.at("value"), json::array({1, 2}));
    EXPECT_GT(changes[0].id, last_id);
    expect_ids_are_increasing_revisions(seen);
    for (const SseEvent& e : seen) EXPECT_NE(e.event, "reset") << e;
    received.insert(received.end(), changes.begin(), changes.end());
  }

  // Across the three servers: each change once, per key in order, with the ids A gave them.
  expect_ids_are_increasing_revisions(received);
  expect_per_key_revisions_increase(received);
  ASSERT_TRUE(wait_until([&] { return has_change_of(witness, "marker2"); }, 30s))
      << describe(events_of(witness.text()));
  std::vector<SseEvent> live = events_of(witness.text());
  EXPECT_EQ(changes_of(live).size(), received.size()) << describe(live) << describe(received);
  for (const SseEvent& e : received) expect_the_witness_saw(live, e);
}

// How many times `needle` occurs in `text`.
std::size_t count_of(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The changes of `changes` with an id in (after, upto].
std::vector<SseEvent> between(const std::vector<SseEvent>& changes, int64_t after, int64_t upto) {
  std::vector<SseEvent> out;
  for (const SseEvent& e : changes) {
    if (e.id > after && e.id <= upto) out.push_back(e);
  }
  return out;
}

// The settings a client holds after applying `changes` in order to nothing.
std::map<std::string, json> state_after(const std::vector<SseEvent>& changes) {
  std::map<std::string, json> state;
  for (const SseEvent& e : changes) {
    if (e.data.at("deleted").get<bool>()) {
      state.erase(e.data.at("key"));
    } else {
      state[e.data.at("key")] = e.data.at("value");
    }
  }
  return state;
}

// A change a library Store delivered, as /watch would send it.
SseEvent event_of(const Change& c) {
  return {c.revision, "change",
          json{{"key", c.key},
               {"value", c.value.value_or(json(nullptr))},
               {"deleted", !c.value.has_value()},
               {"revision", c.revision}}};
}

// Fails unless `got` is exactly `want`, change for change, id for id.
void expect_same_changes(const std::vector<SseEvent>& got, const std::vector<SseEvent>& want) {
  std::set<int64_t> got_ids, want_ids;
  for (const SseEvent& e : got) got_ids.insert(e.id);
  for (const SseEvent& e : want) want_ids.insert(e.id);
  std::ostringstream missing, extra;
  for (int64_t id : want_ids) {
    if (!got_ids.count(id)) missing << " " << id;
  }
  for (int64_t id : got_ids) {
    if (!want_ids.count(id)) extra << " " << id;
  }
  ASSERT_EQ(got.size(), want.size())
      << "missing:" << missing.str() << "; not expected:" << extra.str();
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, want[i].id) << i;
    EXPECT_EQ(got[i].data, want[i].data) << i;
  }
}

// The same scenario while two other instances write as fast as they can, so that every resume
// lands in the middle of commits from two sources. What happened is what a library Store
// subscribed to the table delivered (every change, in revision order). A stream open on A all
// along gets exactly that; so does the client, live on A and resumed from B's memory (B runs
// since before the writes). Resumed from the table (B restarted, knowing nothing before it
// started), it gets each changed key's latest state after the id (the table keeps no older
// values: Store::changes_since), then everything: every change it gets happened, with that id,
// and every one it does not get is superseded by a later change of the same key that it does
// get. Nothing repeats, and it ends holding what the table holds.
TEST(
    Cli,
    a_watch_resumed_across_serve_processes_under_concurrent_writes_loses_no_key_and_repeats_nothing) {
  const std::string table = unique_name("t_cli_resume_busy");
  TableServer a(table);
  auto b = std::make_unique<TableServer>(table);
  ASSERT_GT(a.port(), 0);
  ASSERT_GT(b->port(), 0);
  Recorder truth;  // Before the store: its callbacks may run until the store is destroyed.
  auto truth_store = Store::open(dsn(), test_options(table));
  truth_store->subscribe(truth.callback());
  EventStream witness(a.port(), "/watch");
  ASSERT_TRUE(wait_until([&] { return !events_of(witness.text()).empty(); }, 20s))
      << witness.text();
  // The client's first stream, on A, opens before the first write.
  auto on_a = std::make_unique<EventStream>(a.port(), "/watch");
  ASSERT_TRUE(wait_until([&] { return !events_of(on_a->text()).empty(); }, 20s)) << on_a->text();

  std::atomic<bool> stop{false};
  std::atomic<int> written{0};  // Writes that changed something.
  std::mutex errors_mu;
  std::vector<std::string> errors;
  std::vector<std::thread> writers;
  // Stops and joins them however the test ends.
  struct JoinWriters {
    std::atomic<bool>& stop;
    std::vector<std::thread>& writers;
    ~JoinWriters() {
      stop = true;
      for (auto& t : writers) t.join();
    }
  } join_writers{stop, writers};
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      try {
        auto store = Store::open(dsn(), test_options(table));
        for (int i = 0; !stop && i < 50000; ++i) {
          const std::string key = "w" + std::to_string(w) + "_" + std::to_string(i % 8);
          if (i % 5 != 4) {
            store->set(key, i);
            ++written;
          } else if (store->remove(key)) {  // Absent only the first time round.
            ++written;
          }
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(errors_mu);
        errors.push_back(e.what());
      }
    });
  }
  auto changes_in = [](const EventStream& s) { return count_of(s.text(), "event: change\n"); };
  // Waits until a stream has `n` changes (the writes go on meanwhile).
  auto await_changes = [&](const EventStream& stream, std::size_t n) {
    EXPECT_TRUE(wait_until([&] { return changes_in(stream) >= n; }, 30s))
        << "written so far: " << written << describe(events_of(stream.text()));
  };

  // 1. On A: some changes, then the client hangs up.
  await_changes(*on_a, 50);
  const std::vector<SseEvent> first = events_of(on_a->text());
  on_a.reset();
  ASSERT_EQ(first.front().event, "ready");

  // 2. The client resumes on B (from its memory), and B is stopped under it.
  std::vector<SseEvent> second;
  {
    EventStream on_b(b->port(), "/watch", {{"Last-Event-ID", std::to_string(first.back().id)}});
    await_changes(on_b, 50);
    b->child().signal(SIGTERM);
    EXPECT_EQ(b->child().wait(30s), std::optional<int>(0)) << b->child().err();
    ASSERT_TRUE(wait_until([&] { return on_b.ended(); }, 10s));
    second = events_of(on_b.text());
  }
  ASSERT_FALSE(second.empty());
  const PortHold old_port_b(b->port());
  b.reset();

  // 3. B restarts on another port, the writes still going on; the client resumes there (from the
  // table: the id is older than anything the new process saw).
  b = std::make_unique<TableServer>(table);
  ASSERT_GT(b->port(), 0);
  std::vector<SseEvent> third;
  {
    EventStream again(b->port(), "/watch", {{"Last-Event-ID", std::to_string(second.back().id)}});
    await_changes(again, 50);
    const int before_stop = written;
    stop = true;
    for (auto& t : writers) t.join();
    writers.clear();
    EXPECT_GT(written, before_stop) << "the writers had stopped before the last resume";
    {
      std::lock_guard lock(errors_mu);
      ASSERT_TRUE(errors.empty()) << errors.front();
    }
    truth_store->set("marker", true);
    ASSERT_TRUE(wait_until(
        [&] { return again.text().find(R"("key":"marker")") != std::string::npos; }, 30s))
        << "written: " << written;
    third = events_of(again.text());
  }
  ASSERT_TRUE(wait_until(
      [&] { return witness.text().find(R"("key":"marker")") != std::string::npos; }, 30s));
  // The marker is the truth store's own write, applied at once: the writers' last commits may
  // still be on their way to its listener. Wait for all of them (or the deadline).
  ASSERT_TRUE(wait_until([&] { return truth.has("marker", json(true)); }, 30s));
  wait_until([&] { return static_cast<int>(truth.size()) >= written + 1; }, 30s);
  std::vector<SseEvent> happened;
  for (const Change& c : truth.changes()) happened.push_back(event_of(c));
  // A Store's callbacks keep commit order per key, not across keys: its own write ("marker") is
  // applied at once, possibly before older commits of other instances arrive. /watch sends every
  // key in revision order, so that is the order to compare with.
  std::stable_sort(happened.begin(), happened.end(),
                   [](const SseEvent& x, const SseEvent& y) { return x.id < y.id; });
  ASSERT_EQ(static_cast<int>(happened.size()), written + 1) << "every write is a change";

  // Each resume starts where the client left off, with no reset.
  EXPECT_EQ(second.front().event, "ready") << second.front();
  EXPECT_EQ(second.front().id, first.back().id);
  EXPECT_EQ(third.front().event, "ready") << third.front();
  EXPECT_EQ(third.front().id, second.back().id);
  std::vector<SseEvent> received = first;
  received.insert(received.end(), second.begin(), second.end());
  received.insert(received.end(), third.begin(), third.end());
  for (const SseEvent& e : received) ASSERT_NE(e.event, "reset") << e;
  const std::vector<SseEvent> got = changes_of(received);
  expect_ids_are_increasing_revisions(got);
  expect_per_key_revisions_increase(got);

  {
    SCOPED_TRACE("the witness, live on A all along");
    expect_same_changes(changes_of(events_of(witness.text())), happened);
  }
  {
    SCOPED_TRACE("the client live on A");
    expect_same_changes(changes_of(first), between(happened, first.front().id, first.back().id));
  }
  {
    SCOPED_TRACE("the client resumed on B from its memory");
    expect_same_changes(changes_of(second), between(happened, first.back().id, second.back().id));
  }
  // Resumed on the restarted B from the table: what it skipped, a later change it sent replaces.
  SCOPED_TRACE("the client resumed on the restarted B from the table");
  const std::vector<SseEvent> resumed = changes_of(third);
  const std::vector<SseEvent> expected = between(happened, second.back().id, INT64_MAX);
  std::map<int64_t, const SseEvent*> by_id;
  for (const SseEvent& e : expected) by_id[e.id] = &e;
  std::map<std::string, int64_t> last_sent;
  for (const SseEvent& e : resumed) {
    auto it = by_id.find(e.id);
    if (it == by_id.end()) {
      ADD_FAILURE() << "a change that did not happen: " << e;
      continue;
    }
    EXPECT_EQ(e.data, it->second->data) << e.id;
    last_sent[e.data.at("key")] = e.id;
  }
  for (const SseEvent& e : expected) {
    const std::string key = e.data.at("key");
    auto it = last_sent.find(key);
    if (it == last_sent.end() || it->second < e.id) {
      ADD_FAILURE() << "lost: " << e << " (the client's last change of the key: "
                    << (it == last_sent.end() ? -1 : it->second) << ")";
    }
  }
  EXPECT_EQ(resumed.back().data.at("key"), "marker");

  // The client ends holding what the table holds, as A lists it.
  httplib::Client http("127.0.0.1", a.port());
  auto listing = http.Get("/settings");
  ASSERT_TRUE(listing);
  EXPECT_EQ(json(state_after(got)), json::parse(listing->body));
  EXPECT_EQ(state_after(got), state_after(happened));
}

TEST(Cli,
     a_watch_resumed_beyond_the_tables_newest_revision_on_a_serve_process_starts_with_a_reset) {
  const std::string table = unique_name("t_cli_resume_ahead");
  TableServer server(table);
  ASSERT_GT(server.port(), 0);
  auto writer = Store::open(dsn(), test_options(table));
  writer->set("k", 1);
  const int64_t newest = std::stoll(Sql(dsn()).scalar("SELECT max(revision) FROM " + table));
  ASSERT_GT(newest, 0);

  json settings = {{"k", 1}};
  for (const bool by_header : {true, false}) {
    SCOPED_TRACE(by_header ? "Last-Event-ID" : "?since=");
    const std::string ahead = std::to_string(newest + 1000);
    EventStream stream(server.port(), by_header ? "/watch" : "/watch?since=" + ahead,
                       by_header ? httplib::Headers{{"Last-Event-ID", ahead}} : httplib::Headers{});
    ASSERT_TRUE(wait_until([&] { return !events_of(stream.text()).empty(); }, 20s))
        << stream.text() << "\nstderr: " << server.child().err();
    SseEvent reset = events_of(stream.text()).front();
    ASSERT_EQ(reset.event, "reset") << reset;
    EXPECT_EQ(reset.data.at("settings"), settings) << reset;
    EXPECT_EQ(reset.data.at("revision").get<int64_t>(), reset.id) << reset;
    EXPECT_LT(reset.id, newest + 1000) << "the reset is at the table's revision, not the client's";
    EXPECT_NE(reset.data.at("reason").get<std::string>().find("beyond"), std::string::npos)
        << reset;
    // Then live changes, after the reset.
    const std::string key = by_header ? "after_header" : "after_since";
    writer->set(key, 2);
    ASSERT_TRUE(wait_until([&] { return has_change_of(stream, key); }, 20s))
        << describe(events_of(stream.text()));
    std::vector<SseEvent> seen = events_of(stream.text());
    expect_ids_are_increasing_revisions(seen);
    std::vector<SseEvent> changes = changes_of(seen);
    ASSERT_EQ(changes.size(), 1u) << describe(seen);
    EXPECT_GT(changes[0].id, reset.id);
    EXPECT_EQ(changes[0].data.at("value"), 2);
    settings[key] = 2;
  }
}

// ---- Safe changes: --if-revision, apply, history, diff, rollback, leases -----------------------
// Each scenario runs on the database (--dsn) and, the same, through a server of the table
// (--server); the library reads the table itself to check what was written.

// Where the commands go, and the table that is checked.
struct Place {
  std::string table;
  std::vector<std::string> at;
};

Place on_database(const std::string& stem) {
  std::string table = unique_name(stem);
  return {table, on_table(table)};
}

std::vector<std::string> with(std::vector<std::string> args, const Place& p) {
  return concat(std::move(args), p.at);
}

int64_t revision_of(const Store& store, const std::string& key) {
  std::optional<KeyEntry> e = store.get_entry(key);
  return e ? e->revision : 0;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void conditional_set_and_delete(const Place& p) {
  auto store = Store::open(dsn(), test_options(p.table));
  RunResult r = run(with({"set", "k", "1", "--if-revision", "0"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  const int64_t first = revision_of(*store, "k");
  ASSERT_GT(first, 0);
  r = run(with({"set", "k", "2", "--if-revision", "0"}, p));  // Only if absent: it is not.
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_TRUE(has(r.err, "syncconfig: conflict: key \"k\" is at revision " + std::to_string(first) +
                             " with value 1"))
      << r;
  r = run(with({"set", "k", "2", "--if-revision", std::to_string(first)}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  const int64_t second = revision_of(*store, "k");
  ASSERT_GT(second, first);
  r = run(with({"set", "k", "3", "--if-revision", std::to_string(first)}, p));  // Stale.
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_TRUE(has(r.err, "is at revision " + std::to_string(second) + " with value 2")) << r;
  EXPECT_EQ(store->get_entry("k")->value, 2) << "a conflict writes nothing";
  r = run(with({"delete", "k", "--if-revision", std::to_string(first)}, p));
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_TRUE(store->get_entry("k").has_value());
  r = run(with({"delete", "k", "--if-revision", std::to_string(second)}, p));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_FALSE(store->get_entry("k").has_value());
  r = run(with({"delete", "k", "--if-revision", std::to_string(second)}, p));
  EXPECT_EQ(r.exit_code, 4) << r;
  EXPECT_TRUE(has(r.err, "conflict: key \"k\" is absent")) << r;
}

void history_shows_the_actor_and_comment_of_each_change(const Place& p) {
  ASSERT_EQ(run(with({"set", "h:a", "1", "--comment", "first try"}, p)).exit_code, 0);
  ASSERT_EQ(run(with({"set", "h:a", "2"}, p)).exit_code, 0);
  ASSERT_EQ(run(with({"delete", "h:a", "--comment", "not needed"}, p)).exit_code, 0);
  ASSERT_EQ(run(with({"set", "h:b", "true"}, p)).exit_code, 0);
  auto store = Store::open(dsn(), test_options(p.table));
  std::vector<HistoryRecord> recorded = store->history("h:a");
  ASSERT_EQ(recorded.size(), 3u);

  RunResult r = run(with({"history", "h:a"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r;
  for (std::size_t i = 0; i < 3; ++i) {  // Newest first, as the library's.
    EXPECT_EQ(lines[i].rfind(std::to_string(recorded[i].revision) + "  ", 0), 0u) << lines[i];
    EXPECT_FALSE(recorded[i].actor.empty());
    EXPECT_TRUE(has(lines[i], "  actor " + json(recorded[i].actor).dump())) << lines[i];
  }
  EXPECT_TRUE(has(lines[0], "  delete  \"h:a\"  2 -> (absent)  ")) << lines[0];
  EXPECT_TRUE(has(lines[0], "  comment \"not needed\"")) << lines[0];
  EXPECT_TRUE(has(lines[1], "  set  \"h:a\"  1 -> 2  ")) << lines[1];
  EXPECT_FALSE(has(lines[1], "comment")) << lines[1];
  EXPECT_TRUE(has(lines[2], "  set  \"h:a\"  (absent) -> 1  ")) << lines[2];
  EXPECT_TRUE(has(lines[2], "  comment \"first try\"")) << lines[2];

  r = run(with({"history", "h:a", "--limit", "1"}, p));
  EXPECT_EQ(lines_of(r.out), std::vector<std::string>{lines[0]}) << r;
  r = run(with({"history", "--prefix", "h:"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  ASSERT_EQ(lines_of(r.out).size(), 4u) << r;
  EXPECT_TRUE(has(lines_of(r.out)[0], "  set  \"h:b\"  (absent) -> true  ")) << r;
}

void apply_creates_updates_and_prunes_in_one_transaction(const Place& p) {
  for (auto [key, value] : {std::pair{"p:a", "1"}, {"p:b", "2"}, {"p:c", "3"}, {"other", "9"}}) {
    ASSERT_EQ(run(with({"set", key, value}, p)).exit_code, 0);
  }
  auto store = Store::open(dsn(), test_options(p.table));
  const int64_t b_revision = revision_of(*store, "p:b");
  TempDir dir;
  const std::string file = dir.write("settings.yaml", "a: 10\nb: 2\nd: x\nq: '10'\n");
  const std::string diff = "~ p:a 1 -> 10\n- p:c\n+ p:d \"x\"\n+ p:q \"10\"\n";

  RunResult r = run(with({"apply", file, "--prefix", "p:", "--prune", "--dry-run"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, diff);
  EXPECT_EQ(store->get_entry("p:a")->value, 1) << "--dry-run writes nothing";
  EXPECT_TRUE(store->get_entry("p:c").has_value());
  EXPECT_FALSE(store->get_entry("p:d").has_value());

  r = run(with({"apply", file, "--prefix", "p:", "--prune", "--comment", "from git"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  ASSERT_EQ(r.out.rfind(diff + "applied 4 changes at revision ", 0), 0u) << r;
  const int64_t revision = std::stoll(r.out.substr(r.out.rfind(' ') + 1));
  EXPECT_EQ(store->get_entry("p:a")->value, 10);
  EXPECT_EQ(revision_of(*store, "p:b"), b_revision) << "an unchanged key is not written";
  EXPECT_FALSE(store->get_entry("p:c").has_value());
  EXPECT_EQ(store->get_entry("p:d")->value, "x");
  EXPECT_EQ(store->get_entry("p:q")->value, "10") << "a quoted YAML scalar is a string";
  EXPECT_EQ(store->get_entry("other")->value, 9) << "--prune stays under the prefix";
  // One transaction: consecutive revisions ending at the one printed, one comment.
  std::set<int64_t> revisions;
  for (const char* key : {"p:a", "p:c", "p:d", "p:q"}) {
    HistoryRecord h = store->history(key).at(0);
    revisions.insert(h.revision);
    EXPECT_EQ(h.comment, "from git") << key;
  }
  EXPECT_EQ(revisions, (std::set<int64_t>{revision - 3, revision - 2, revision - 1, revision}));

  r = run(with({"apply", file, "--prefix", "p:", "--prune"}, p));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "no changes\n");
  // Without --prune, keys the file does not name stay; JSON works as YAML does.
  const std::string more = dir.write("more.json", R"({"p:e": {"n": [1, 2]}})");
  r = run(with({"apply", more}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out.rfind("+ p:e {\"n\":[1,2]}\napplied 1 change at revision ", 0), 0u) << r;
  EXPECT_EQ(store->get_entry("other")->value, 9);
}

// An apply whose store changes between its diff and its transaction. The diff has 100 lines of
// 6 KB (under a server's 1 MiB request limit): far more than the pipe to this test holds (64 KiB),
// so once the test has read its first line, apply has read the store and is still printing (its
// transaction not sent) until the test reads on.
void apply_conflicts_with_a_change_after_its_diff(const Place& p) {
  ASSERT_EQ(run(with({"set", "big:000", "\"old\""}, p)).exit_code, 0);
  json values = json::object();
  for (int i = 0; i < 100; ++i) {
    char key[8];
    std::snprintf(key, sizeof(key), "%03d", i);
    values[key] = std::string(6000, 'v');
  }
  TempDir dir;
  const std::string file = dir.write("big.json", values.dump());
  auto store = Store::open(dsn(), test_options(p.table));
  {
    Child apply(with({"apply", file, "--prefix", "big:"}, p));
    std::optional<std::string> first = apply.read_line(60s);
    ASSERT_TRUE(first) << apply.err();
    EXPECT_EQ(first->rfind("~ big:000 \"old\" -> \"vvv", 0), 0u) << first->substr(0, 40);
    ASSERT_EQ(run(with({"set", "big:000", "\"theirs\""}, p)).exit_code, 0);
    const int64_t theirs = revision_of(*store, "big:000");
    apply.read_rest(60s);
    EXPECT_EQ(apply.wait(60s), std::optional<int>(4)) << apply.err();
    EXPECT_TRUE(has(apply.err(),
                    "syncconfig: conflict: key \"big:000\" changed after the diff "
                    "was read"))
        << apply.err();
    EXPECT_TRUE(has(apply.err(), "key \"big:000\" is at revision " + std::to_string(theirs) +
                                     " with value \"theirs\""))
        << apply.err();
    EXPECT_EQ(store->get_entry("big:000")->value, "theirs");
    EXPECT_FALSE(store->get_entry("big:001").has_value()) << "nothing was written";
  }
  {
    // With --prune, a key created under the prefix meanwhile would escape the pruning.
    Child apply(with({"apply", file, "--prefix", "big:", "--prune"}, p));
    ASSERT_TRUE(apply.read_line(60s)) << apply.err();
    ASSERT_EQ(run(with({"set", "big:new", "1"}, p)).exit_code, 0);
    apply.read_rest(60s);
    EXPECT_EQ(apply.wait(60s), std::optional<int>(4)) << apply.err();
    EXPECT_TRUE(has(apply.err(), "conflict: keys starting with \"big:\" changed after revision"))
        << apply.err();
    EXPECT_TRUE(has(apply.err(), "key \"big:new\" is at revision")) << apply.err();
    EXPECT_FALSE(store->get_entry("big:001").has_value()) << "nothing was written";
  }
}

void diff_and_rollback(const Place& p) {
  auto store = Store::open(dsn(), test_options(p.table));
  ASSERT_EQ(run(with({"set", "r:a", "1"}, p)).exit_code, 0);
  const int64_t good = revision_of(*store, "r:a");
  ASSERT_EQ(run(with({"set", "r:a", "2"}, p)).exit_code, 0);
  ASSERT_EQ(run(with({"set", "r:b", "5"}, p)).exit_code, 0);
  const int64_t bad = revision_of(*store, "r:b");

  RunResult r = run(with(
      {"diff", "--from", std::to_string(good), "--to", std::to_string(bad), "--prefix", "r:"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "~ r:a 1 -> 2\n+ r:b 5\n");
  r = run(with({"diff", "--from", std::to_string(bad), "--to", std::to_string(bad)}, p));
  EXPECT_EQ(r.out, "no differences\n") << r;

  r = run(with({"rollback", "r:a", "--to", std::to_string(good), "--comment", "back to 1"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out.rfind("rolled back to revision " + std::to_string(good) + " at revision ", 0), 0u)
      << r;
  EXPECT_EQ(store->get_entry("r:a")->value, 1);
  EXPECT_EQ(store->get_entry("r:b")->value, 5) << "a key's rollback leaves the others";
  EXPECT_EQ(store->history("r:a").at(0).comment, "back to 1");

  r = run(with({"rollback", "--prefix", "r:", "--to", std::to_string(good)}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_FALSE(store->get_entry("r:b").has_value());
  EXPECT_EQ(store->get_entry("r:a")->value, 1);
  r = run(with({"rollback", "--prefix", "r:", "--to", std::to_string(good)}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "no changes: already as at revision " + std::to_string(good) + "\n");
}

void leases_grant_keepalive_and_revoke(const Place& p) {
  auto store = Store::open(dsn(), test_options(p.table));
  RunResult r = run(with({"lease", "grant", "60"}, p));
  ASSERT_EQ(r.exit_code, 0) << r;
  const int64_t id = std::stoll(r.out);
  EXPECT_EQ(r.out, std::to_string(id) + "\n") << "the id alone on its line";
  const std::string lease = std::to_string(id);
  ASSERT_EQ(run(with({"set", "l:k", "1", "--lease", lease}, p)).exit_code, 0);
  EXPECT_EQ(store->get_entry("l:k")->lease, id);
  r = run(with({"lease", "keepalive", lease}, p));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out.rfind("lease " + lease + " expires at 20", 0), 0u) << r;
  r = run(with({"lease", "revoke", lease}, p));
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_FALSE(store->get_entry("l:k").has_value()) << "revoking deletes the lease's keys";
  EXPECT_EQ(store->history("l:k").at(0).op, "expire");
  r = run(with({"lease", "revoke", lease}, p));
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_TRUE(has(r.err, "lease " + lease + " not found")) << r;
  EXPECT_EQ(run(with({"lease", "keepalive", lease}, p)).exit_code, 1);
}

TEST(Cli, set_and_delete_with_if_revision_write_only_at_that_revision_and_exit_4_otherwise) {
  conditional_set_and_delete(on_database("t_cli_cas"));
}

TEST(Cli, history_prints_one_line_per_change_with_its_actor_and_comment) {
  history_shows_the_actor_and_comment_of_each_change(on_database("t_cli_history"));
}

TEST(Cli, apply_creates_updates_and_prunes_in_one_transaction_and_dry_run_writes_nothing) {
  apply_creates_updates_and_prunes_in_one_transaction(on_database("t_cli_apply"));
}

TEST(Cli, an_apply_whose_keys_change_after_its_diff_exits_4_and_writes_nothing) {
  apply_conflicts_with_a_change_after_its_diff(on_database("t_cli_apply_race"));
}

TEST(Cli, diff_prints_what_differs_between_revisions_and_rollback_restores_it_as_a_new_change) {
  diff_and_rollback(on_database("t_cli_rollback"));
}

TEST(Cli, a_lease_granted_on_the_command_line_deletes_its_keys_when_revoked) {
  leases_grant_keepalive_and_revoke(on_database("t_cli_lease"));
}

TEST(Cli, the_safe_changes_commands_over_a_server_behave_as_on_the_database) {
  const std::string table = unique_name("t_cli_safe_remote");
  TableServer server(table);
  ASSERT_GT(server.port(), 0);
  const Place p{table, {"--server", server.url()}};
  auto scenarios = {conditional_set_and_delete,
                    history_shows_the_actor_and_comment_of_each_change,
                    apply_creates_updates_and_prunes_in_one_transaction,
                    apply_conflicts_with_a_change_after_its_diff,
                    diff_and_rollback,
                    leases_grant_keepalive_and_revoke};
  int i = 0;
  for (auto scenario : scenarios) {
    SCOPED_TRACE("scenario " + std::to_string(i++));
    scenario(p);
  }
  // Over a server, the history records the HTTP client.
  auto store = Store::open(dsn(), test_options(table));
  EXPECT_EQ(store->history("h:a").at(0).actor.rfind("http:", 0), 0u);
  // A revision the server has no state for (410) is a usage error, as on the database.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"diff", "--from", "1", "--to", "999999999"},
        std::vector<std::string>{"rollback", "k", "--to", "999999999"}}) {
    RunResult r = run(with(args, p));
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_TRUE(has(r.err, "999999999")) << r;
  }
}

TEST(Cli, bad_input_to_the_safe_changes_commands_exits_2_with_a_clear_message) {
  const Place p = on_database("t_cli_safe_usage");
  TempDir dir;
  const std::string bad_yaml = dir.write("bad.yaml", "a: [1, 2\nb: 3\n");
  const std::string list = dir.write("list.json", "[1, 2]");
  const std::string infinite = dir.write("inf.yml", "a: .inf\n");
  const std::string missing = (dir.path() / "missing.yaml").string();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"set", "k", "1", "--if-revision", "abc"}, "--if-revision"},
      {{"set", "k", "1", "--if-revision", "-1"}, "--if-revision must be a revision (0 or more)"},
      {{"delete", "k", "--if-revision", "0"}, "a key cannot be deleted only if it is absent"},
      {{"set", "k", "1", "--lease", "-5"}, "--lease must be a lease id"},
      {{"diff", "--from", "x1", "--to", "2"}, "--from"},
      {{"diff", "--from", "-3", "--to", "2"}, "--from must be a revision (0 or more), not -3"},
      {{"diff", "--from", "1", "--to", "999999999"}, "beyond the table's newest"},
      {{"rollback", "k", "--to", "999999999"}, "999999999 is beyond the table's newest"},
      {{"rollback", "k"}, "--to"},
      {{"rollback", "--to", "1"}, "rollback: give either KEY or --prefix P"},
      {{"history"}, "history: give either KEY or --prefix P"},
      {{"history", "k", "--prefix", "p"}, "history: give either KEY or --prefix P"},
      {{"history", "k", "--limit", "0"}, "--limit must be 1..10000"},
      {{"apply", missing}, missing + ": cannot be read: No such file or directory"},
      {{"apply", bad_yaml}, bad_yaml + ": not valid YAML (line "},
      {{"apply", list}, list + ": expected an object of keys to values, found array"},
      {{"apply", infinite}, "is not a value JSON can hold"},
      {{"lease", "grant", "0"}, "TTL_SECONDS must be 1 or more"},
      {{"lease", "revoke", "abc"}, "ID"},
  };
  for (const Case& c : cases) {
    RunResult r = run(with(c.args, p));
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_TRUE(has(r.err, c.message)) << "expected \"" << c.message << "\" in " << r;
    EXPECT_EQ(r.out, "") << r;
  }
  auto store = Store::open(dsn(), test_options(p.table));
  EXPECT_EQ(store->size(), 0u) << "bad input writes nothing";
}

}  // namespace
}  // namespace syncconfig::testing

// ---------------------------------------------------------------------------------------------
// Named tokens (docs/access-control.md): `syncconfig token` on the database and over a server.
namespace syncconfig::testing {
namespace {

TEST(CliTokens, create_prints_the_secret_alone_on_the_last_line_and_list_never_shows_it) {
  const std::string schema = unique_name("t_cli_tok");
  const std::vector<std::string> on = {"--dsn", dsn(), "--schema", schema};
  RunResult created = run(concat(
      {"token", "create", "ci", "--allow", "app/=write", "--allow", "app/secret/=deny"}, on));
  ASSERT_EQ(created.exit_code, 0) << created;
  std::vector<std::string> lines = lines_of(created.out);
  ASSERT_GE(lines.size(), 2u) << created;
  const std::string secret = lines.back();
  EXPECT_TRUE(secret.starts_with("sct_")) << created;
  EXPECT_EQ(secret.find(' '), std::string::npos);
  EXPECT_EQ(created.out.find(secret), created.out.size() - secret.size() - 1)
      << "the secret is printed once, on the last line";
  EXPECT_EQ(created.err.find(secret), std::string::npos);

  RunResult listed = run(concat({"token", "list"}, on));
  ASSERT_EQ(listed.exit_code, 0) << listed;
  ASSERT_EQ(lines_of(listed.out).size(), 1u) << listed;
  json line = json::parse(listed.out);
  EXPECT_EQ(line.at("name"), "ci");
  EXPECT_EQ(line.at("rules"), "app/=write app/secret/=deny");
  EXPECT_EQ(line.at("state"), "active");
  EXPECT_EQ(listed.out.find(secret), std::string::npos);
  EXPECT_EQ(listed.out.find("sct_"), std::string::npos);

  RunResult twice = run(concat({"token", "create", "ci", "--allow", "=read"}, on));
  EXPECT_EQ(twice.exit_code, 2) << twice;
  EXPECT_NE(twice.err.find("token 'ci' exists"), std::string::npos) << twice;
  RunResult bad = run(concat({"token", "create", "x", "--allow", "app/=rw"}, on));
  EXPECT_EQ(bad.exit_code, 2) << bad;
  EXPECT_NE(bad.err.find("rule 'app/=rw'"), std::string::npos) << bad;
  RunResult no_rule = run(concat({"token", "create", "x"}, on));
  EXPECT_EQ(no_rule.exit_code, 2) << no_rule;

  RunResult revoked = run(concat({"token", "revoke", "ci"}, on));
  EXPECT_EQ(revoked.exit_code, 0) << revoked;
  EXPECT_EQ(revoked.out, "revoked token 'ci'\n");
  RunResult again = run(concat({"token", "revoke", "ci"}, on));
  EXPECT_EQ(again.exit_code, 1) << again;
  listed = run(concat({"token", "list"}, on));
  ASSERT_EQ(listed.exit_code, 0) << listed;
  EXPECT_EQ(json::parse(listed.out).at("state"), "revoked");
}

// A config file with `serve: {auth: true}` and one store, `cfg`, on a schema of its own (the
// database from ${TEST_DSN}); `extra_params` are added to the store's params.
std::string auth_services_yaml(const std::string& schema, const std::string& extra_params = "") {
  return "serve:\n"
         "  auth: true\n"
         "service-definitions:\n"
         "  db:\n"
         "    type: dbpool_pg\n"
         "    params: {dsn: \"${TEST_DSN}\", schema: " +
         schema +
         "}\n"
         "  cfg:\n"
         "    type: sync_config_pg\n"
         "    params: {dbpool_name: db, table_name: cfg, channel: " +
         schema + extra_params + "}\n";
}

// A `serve` with `serve: {auth: true}` in its file, on a schema of its own.
class AuthServer {
 public:
  explicit AuthServer(const std::string& schema) {
    std::string file = dir_.write("services.yaml", auth_services_yaml(schema));
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"serve", "--config", file, "--listen", "127.0.0.1:0"},
        EnvChanges{{"TEST_DSN", dsn()}});
    port_ = listening_port(*child_);
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
};

TEST(CliTokens, a_server_with_auth_enforces_tokens_made_on_the_database_or_through_it) {
  const std::string schema = unique_name("t_cli_auth");
  AuthServer server(schema);
  ASSERT_GT(server.port(), 0);
  const std::vector<std::string> on = {"--dsn", dsn(), "--schema", schema};
  RunResult admin = run(concat({"token", "create", "root", "--allow", "=admin"}, on));
  ASSERT_EQ(admin.exit_code, 0) << admin;
  const std::string admin_secret = lines_of(admin.out).back();

  httplib::Client client("127.0.0.1", server.port());
  auto status_with = [&](const std::string& secret, const std::string& path) {
    auto r = client.Get(path, {{"Authorization", "Bearer " + secret}});
    return r ? r->status : -1;
  };
  EXPECT_EQ(client.Get("/settings")->status, 401);
  EXPECT_TRUE(wait_until([&] { return status_with(admin_secret, "/settings") == 200; }, 5s));

  // Through the server, with the admin token.
  const std::vector<std::string> over = {"--server", server.url(), "--token", admin_secret};
  RunResult reader = run(concat({"token", "create", "reader", "--allow", "app/=read"}, over));
  ASSERT_EQ(reader.exit_code, 0) << reader;
  const std::string reader_secret = lines_of(reader.out).back();
  EXPECT_TRUE(reader_secret.starts_with("sct_"));
  EXPECT_TRUE(
      wait_until([&] { return status_with(reader_secret, "/settings?prefix=app/") == 200; }, 5s));
  EXPECT_EQ(status_with(reader_secret, "/settings/db/x"), 403);

  auto raw = client.Get("/tokens", {{"Authorization", "Bearer " + admin_secret}});
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->status, 200) << raw->body;
  EXPECT_EQ(json::parse(raw->body).at("tokens").size(), 2u) << raw->body;
  EXPECT_EQ(raw->body.find("hash"), std::string::npos) << raw->body;
  RunResult listed = run(concat({"token", "list"}, over));
  ASSERT_EQ(listed.exit_code, 0) << listed;
  EXPECT_EQ(lines_of(listed.out).size(), 2u) << listed;
  EXPECT_EQ(listed.out.find("sct_"), std::string::npos) << listed;

  // Not an admin: refused (a 4xx: exit 2).
  RunResult not_admin = run({"token", "list", "--server", server.url(), "--token", reader_secret});
  EXPECT_EQ(not_admin.exit_code, 2) << not_admin;

  RunResult revoked = run(concat({"token", "revoke", "reader"}, over));
  ASSERT_EQ(revoked.exit_code, 0) << revoked;
  EXPECT_TRUE(
      wait_until([&] { return status_with(reader_secret, "/settings?prefix=app/") == 401; }, 5s));
  RunResult gone = run(concat({"token", "revoke", "reader"}, over));
  EXPECT_EQ(gone.exit_code, 1) << gone;
}

// With a snapshot file, the tokens are kept beside it (FILE.tokens): a server with --auth starts
// and authenticates while the database is down.
TEST(CliTokens, a_server_with_auth_starts_from_its_snapshot_files_while_the_database_is_down) {
  const std::string schema = unique_name("t_cli_auth_snap");
  TempDir dir;
  const std::string snapshot = (dir.path() / "cfg.snap").string();
  const std::string file =
      dir.write("auth.yaml", auth_services_yaml(schema, ", snapshot_file: " + snapshot));
  const std::vector<std::string> args = {"serve", "--config", file, "--listen", "127.0.0.1:0"};
  std::string secret;
  {
    Child serve(args, {{"TEST_DSN", dsn()}});
    const int port = listening_port(serve);
    ASSERT_GT(port, 0) << serve.err();
    RunResult made =
        run({"token", "create", "reader", "--allow", "=read", "--dsn", dsn(), "--schema", schema});
    ASSERT_EQ(made.exit_code, 0) << made;
    secret = lines_of(made.out).back();
    httplib::Client client("127.0.0.1", port);
    ASSERT_TRUE(wait_until([&] {
      auto r = client.Get("/settings", {{"Authorization", "Bearer " + secret}});
      return r && r->status == 200;
    }));
    serve.signal(SIGTERM);  // Both files are written as it stops.
    ASSERT_EQ(serve.wait(30s), std::optional<int>(0)) << serve.err();
  }
  ASSERT_TRUE(std::filesystem::exists(snapshot + ".tokens"));
  EXPECT_EQ(std::filesystem::status(snapshot + ".tokens").permissions() &
                (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  // Nothing listens on port 1: the database is down.
  Child serve(args, {{"TEST_DSN", "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=1"}});
  const int port = listening_port(serve);
  ASSERT_GT(port, 0) << "serve --auth did not start from its snapshot files: " << serve.err();
  httplib::Client client("127.0.0.1", port);
  auto with = client.Get("/settings", {{"Authorization", "Bearer " + secret}});
  ASSERT_TRUE(with);
  EXPECT_EQ(with->status, 200) << with->body;
  auto without = client.Get("/settings");
  ASSERT_TRUE(without);
  EXPECT_EQ(without->status, 401);
  auto wrong = client.Get("/settings", {{"Authorization", "Bearer sct_not_a_token"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(30s), std::optional<int>(0)) << serve.err();
}

TEST(CliTokens, serve_refuses_auth_together_with_a_shared_token) {
  RunResult r = run({"serve", "--dsn", dsn(), "--auth", "--token", "x", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--auth"), std::string::npos) << r;
}

}  // namespace
}  // namespace syncconfig::testing
