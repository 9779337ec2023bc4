// The `syncconfig` program, run as a child process against the test cluster: operator commands
// and their exit codes, configuration errors, watch, serve (two instances syncing over HTTP,
// signals, the embedded default surviving a restart), demo, and the operator commands through a
// running `serve` (--server, SYNCCONFIG_SERVER, server.json discovery, watch resuming).
#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace syncconfig::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Environment changes for a child: a value sets the variable, nullopt removes it. SYNCCONFIG_DSN,
// SYNCCONFIG_SERVER and SYNCCONFIG_TOKEN are always removed first, so that the caller's
// environment cannot leak in.
using EnvChanges = std::map<std::string, std::optional<std::string>>;

std::vector<std::string> child_environment(const EnvChanges& changes) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    if (name == "SYNCCONFIG_DSN" || name == "SYNCCONFIG_SERVER" || name == "SYNCCONFIG_TOKEN" ||
        changes.count(name) != 0) {
      continue;
    }
    out.push_back(entry);
  }
  for (const auto& [name, value] : changes) {
    if (value) out.push_back(name + "=" + *value);
  }
  return out;
}

// A temporary directory, removed with everything in it. World-traversable: the embedded
// PostgreSQL runs as the postgres user when the tests run as root.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "syncconfig_cli_XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  // Writes `text` to a file in the directory; returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }

 private:
  fs::path path_;
};

// The program running as a child: stdout through a pipe (read line by line with deadlines),
// stderr into a file. The destructor stops a child still running (SIGTERM, then SIGKILL), so a
// failed test leaves no process behind. `cwd`: its working directory (empty: ours).
class Child {
 public:
  Child(const std::vector<std::string>& args, const EnvChanges& env = {},
        const fs::path& cwd = {}) {
    err_path_ = (fs::temp_directory_path() /
                 ("syncconfig_cli_err_" + std::to_string(getpid()) + "_" + unique_name("c")))
                    .string();
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    out_fd_ = fds[0];

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);

    std::vector<std::string> argv = {SYNCCONFIG_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> envs = child_environment(env);
    std::vector<char*> cenv;
    for (std::string& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    int rc = posix_spawn(&pid_, SYNCCONFIG_BIN, &actions, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc != 0) {
      close(out_fd_);
      throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
    }
  }

  ~Child() {
    if (!exit_code_) {
      kill(pid_, SIGTERM);
      if (!wait(30s)) {
        kill(pid_, SIGKILL);
        wait(10s);
      }
    }
    close(out_fd_);
    std::error_code ec;
    fs::remove(err_path_, ec);
  }

  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo) { kill(pid_, signo); }

  // The next line of stdout (without '\n'), or nullopt at EOF or when `timeout` passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      if (std::size_t nl = out_.find('\n'); nl != std::string::npos) {
        std::string line = out_.substr(0, nl);
        out_.erase(0, nl + 1);
        return line;
      }
      if (eof_ || !fill(deadline)) return std::nullopt;
    }
  }

  // Everything left on stdout until EOF (or `timeout`).
  std::string read_rest(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (!eof_ && fill(deadline)) {
    }
    return std::exchange(out_, {});
  }

  // The exit status (128 + N when killed by signal N), or nullopt if still running at timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (!exit_code_) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (r < 0 && errno != EINTR) {
        exit_code_ = -1;
      } else if (Clock::now() >= deadline) {
        return std::nullopt;
      } else {
        std::this_thread::sleep_for(5ms);
      }
    }
    return exit_code_;
  }

  std::string err() const {
    std::ifstream in(err_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  // Reads what is available before `deadline`; false on timeout.
  bool fill(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{out_fd_, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) return true;
    if (ready <= 0) return false;
    char buffer[4096];
    ssize_t n = read(out_fd_, buffer, sizeof(buffer));
    if (n > 0) {
      out_.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      eof_ = true;
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string out_;
  bool eof_ = false;
  std::optional<int> exit_code_;
  std::string err_path_;
};

struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit " << r.exit_code << "\nstdout: " << r.out << "\nstderr: " << r.err;
}

// Runs the program to completion (killed after `timeout`), in `cwd` (empty: ours).
RunResult run(const std::vector<std::string>& args, const EnvChanges& env = {},
              std::chrono::milliseconds timeout = 60s, const fs::path& cwd = {}) {
  Child child(args, env, cwd);
  Clock::time_point deadline = Clock::now() + timeout;
  std::string out = child.read_rest(timeout);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  std::optional<int> code = child.wait(std::max(left, 0ms));
  return {code.value_or(-1), out, child.err()};
}

// Connection arguments for a fresh table of the test cluster.
std::vector<std::string> on_table(const std::string& table) {
  return {"--dsn", dsn(), "--table", table, "--channel", table + "_ch"};
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Waits for serve's "listening on http://HOST:PORT" line; returns the port (0 on failure).
int listening_port(Child& serve, std::chrono::milliseconds timeout = 60s) {
  std::optional<std::string> line = serve.read_line(timeout);
  const std::string prefix = "listening on http://127.0.0.1:";
  if (!line || line->rfind(prefix, 0) != 0) {
    ADD_FAILURE() << "no listening line; got: " << line.value_or("<none>")
                  << "\nstderr: " << serve.err();
    return 0;
  }
  return std::stoi(line->substr(prefix.size()));
}

// A /watch stream read on its own thread.
class EventStream {
 public:
  EventStream(int port, const std::string& path) : client_("127.0.0.1", port) {
    client_.set_read_timeout(120, 0);
    thread_ = std::thread([this, path] {
      client_.Get(path, [this](const char* data, std::size_t n) {
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

// `syncconfig serve` of one fresh table of the test cluster (through a service-definitions file,
// since --dsn serves the default table), on 127.0.0.1 and a free port, or `port`.
class TableServer {
 public:
  explicit TableServer(const std::string& table, int port = 0, EnvChanges env = {}) {
    std::string file = dir_.write("services.yaml",
                                  "service-definitions:\n"
                                  "  db:\n"
                                  "    type: dbpool_pg\n"
                                  "    params: {dsn: \"${TEST_DSN}\"}\n"
                                  "  cfg:\n"
                                  "    type: sync_config_pg\n"
                                  "    params: {dbpool_name: db, table_name: " +
                                      table + ", channel: " + table + "_ch}\n");
    env["TEST_DSN"] = dsn();
    child_ = std::make_unique<Child>(std::vector<std::string>{"serve", "--config", file, "--listen",
                                                              "127.0.0.1:" + std::to_string(port)},
                                     env);
    port_ = listening_port(*child_);
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  Child& child() { return *child_; }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
};

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
  RunResult r = run({"list", "--server", "https://127.0.0.1:8443"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("--server: server URL \"https://127.0.0.1:8443\": https is not supported"),
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

}  // namespace
}  // namespace syncconfig::testing
