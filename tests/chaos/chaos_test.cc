// Chaos convergence test (issue 5): several instances in separate processes (chaos_instance)
// write overlapping keys of one table, on a primary + synchronous standby (tests/replica_set.h),
// while this driver writes with plain SQL and injects faults, failovers among them (issue 13);
// after each round's faults stop, every instance must equal the table within
// heartbeat_interval + reconnect_interval + a margin, and the recorded histories must satisfy
// the checks of history.h. See docs/reliability.md.
//
//   chaos_test [--profile ci|long] [--seed N] [--duration S] [--instances N] [--keep-logs]
//   chaos_test --self-test
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "history.h"
#include "replica_set.h"
#include "syncconfig/syncconfig.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

std::atomic<bool> g_interrupted{false};

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_interrupted() {
  if (g_interrupted.load()) throw Failure("interrupted by a signal");
}

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// ---------------------------------------------------------------------------------------------
// Configuration

struct Config {
  std::string profile = "ci";
  uint64_t seed = 20261127;
  int duration_s = 0;  // 0: the profile's number of rounds.
  int rounds = 5;
  int round_ms = 6000;
  int instances = 4;
  int keys = 24;
  int large_pct = 6;
  int remove_pct = 25;
  int heartbeat_ms = 1000;
  int reconnect_ms = 200;
  int margin_ms = 1500;
  int db_timeout_ms = 3000;
  bool keep_logs = false;
  // Failovers in the even rounds (--failover): not in CI until the one unexplained failure seen
  // with them is understood (docs/reliability.md, open finding 5).
  bool failover = false;
  fs::path instance_bin;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "chaos_test: " << why << "\n"
            << "usage: chaos_test [--profile ci|long] [--seed N] [--duration SECONDS]\n"
               "                  [--instances N] [--rounds N] [--round-ms MS] [--keep-logs]\n"
               "                  [--failover]\n"
               "                  [--instance-bin PATH]\n"
               "       chaos_test --self-test\n";
  std::exit(2);
}

Config parse_args(int argc, char** argv) {
  Config c;
  std::map<std::string, std::string> given;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--keep-logs") {
      c.keep_logs = true;
    } else if (a == "--failover") {
      c.failover = true;
    } else if (i + 1 < argc && a.starts_with("--")) {
      given[a] = argv[++i];
    } else {
      usage("bad argument " + a);
    }
  }
  auto num = [&](const char* name, auto& field) {
    if (auto it = given.find(name); it != given.end()) {
      try {
        field = static_cast<std::remove_reference_t<decltype(field)>>(std::stoull(it->second));
      } catch (const std::exception&) {
        usage(std::string("bad number for ") + name);
      }
      given.erase(it);
    }
  };
  if (auto it = given.find("--profile"); it != given.end()) {
    c.profile = it->second;
    given.erase(it);
  }
  if (c.profile == "long") {
    c.duration_s = 600;
    c.round_ms = 15000;
    c.instances = 5;
    c.keys = 40;
  } else if (c.profile != "ci") {
    usage("unknown profile " + c.profile);
  } else if (kSanitized) {
    // Everything runs several times slower under TSan/ASan: fewer, shorter rounds, and more
    // time for the machinery (not for the protocol: the bound keeps its two intervals).
    c.rounds = 4;
    c.round_ms = 5000;
    c.instances = 3;
    c.margin_ms = 3000;
    c.db_timeout_ms = 5000;
  }
  num("--seed", c.seed);
  num("--duration", c.duration_s);
  num("--rounds", c.rounds);
  num("--round-ms", c.round_ms);
  num("--instances", c.instances);
  num("--margin-ms", c.margin_ms);
  if (auto it = given.find("--instance-bin"); it != given.end()) {
    c.instance_bin = it->second;
    given.erase(it);
  }
  if (!given.empty()) usage("unknown option " + given.begin()->first);
  if (c.instance_bin.empty()) {
    c.instance_bin = fs::read_symlink("/proc/self/exe").parent_path() / "chaos_instance";
  }
  if (c.instances < 1 || c.round_ms < 1000) usage("need --instances >= 1, --round-ms >= 1000");
  return c;
}

// ---------------------------------------------------------------------------------------------
// Plain SQL from outside the library (reconnects after a server restart).

class Sql {
 public:
  explicit Sql(std::string dsn) : dsn_(std::move(dsn)) { connect(); }
  ~Sql() {
    if (conn_) PQfinish(conn_);
  }
  using Rows = std::vector<std::vector<std::optional<std::string>>>;
  // Runs `sql`; the rows of the last result. Throws Failure on error (after one reconnect when
  // the connection was lost).
  Rows query(const std::string& sql) {
    std::string error;
    if (auto r = try_query(sql, &error)) return *r;
    throw Failure("SQL failed: " + error + "\n  " + sql.substr(0, 300));
  }
  std::optional<Rows> try_query(const std::string& sql, std::string* error) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (PQstatus(conn_) != CONNECTION_OK) connect();
      PGresult* r = PQexec(conn_, sql.c_str());
      auto status = PQresultStatus(r);
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        Rows rows(PQntuples(r));
        for (int i = 0; i < PQntuples(r); ++i) {
          for (int j = 0; j < PQnfields(r); ++j) {
            rows[i].push_back(PQgetisnull(r, i, j)
                                  ? std::nullopt
                                  : std::optional<std::string>(PQgetvalue(r, i, j)));
          }
        }
        PQclear(r);
        return rows;
      }
      *error = PQresultErrorMessage(r);
      if (error->empty()) *error = PQerrorMessage(conn_);
      PQclear(r);
      if (PQstatus(conn_) == CONNECTION_OK) {
        PQclear(PQexec(conn_,
                       "ROLLBACK"));  // In case a multi-statement string left a transaction open.
        return std::nullopt;
      }
    }
    return std::nullopt;
  }
  void reconnect() { connect(); }

 private:
  void connect() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    auto deadline = Clock::now() + 60s;
    for (;;) {
      conn_ = PQconnectdb(dsn_.c_str());
      if (PQstatus(conn_) == CONNECTION_OK) break;
      if (Clock::now() > deadline) throw Failure(std::string("connect: ") + PQerrorMessage(conn_));
      PQfinish(conn_);
      std::this_thread::sleep_for(50ms);
    }
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
  }
  std::string dsn_;
  PGconn* conn_ = nullptr;
};

std::string lit(const std::string& s) {  // Our keys and ids are [a-z0-9.]: no escaping needed.
  return "'" + s + "'";
}

// ---------------------------------------------------------------------------------------------
// Instance processes

class Child {
 public:
  Child(const Config& cfg, const std::string& dsn, const std::string& table, const fs::path& dir,
        int instance, int incarnation)
      : instance_(instance), incarnation_(incarnation) {
    name_ = "i" + std::to_string(instance) + "." + std::to_string(incarnation);
    log_path_ = dir / (name_ + ".jsonl");
    stderr_path_ = dir / (name_ + ".stderr");
    std::vector<std::string> args = {cfg.instance_bin.string(),
                                     "--dsn",
                                     dsn,
                                     "--table",
                                     table,
                                     "--log",
                                     log_path_.string(),
                                     "--instance",
                                     std::to_string(instance),
                                     "--incarnation",
                                     std::to_string(incarnation),
                                     "--heartbeat-ms",
                                     std::to_string(cfg.heartbeat_ms),
                                     "--reconnect-ms",
                                     std::to_string(cfg.reconnect_ms),
                                     "--db-timeout-ms",
                                     std::to_string(cfg.db_timeout_ms)};
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw Failure("pipe failed");
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw Failure("fork failed");
    if (pid_ == 0) {
      // Dies with the driver, whatever kills it.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      dup2(in[0], 0);
      dup2(out[1], 1);
      int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) dup2(err, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
  }
  ~Child() { kill_now(); }

  void send(const std::string& line) {
    std::string text = line + "\n";
    if (write(to_child_, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      throw Failure(name_ + ": writing a command failed");
    }
  }
  // The next reply line; throws Failure on timeout or exit.
  std::string read_line(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      check_interrupted();
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) throw Failure(name_ + ": no reply in time");
      pollfd p{from_child_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
      if (n > 0) {
        char buf[4096];
        ssize_t got = read(from_child_, buf, sizeof buf);
        if (got <= 0)
          throw Failure(name_ + ": exited unexpectedly" + exit_status() + stderr_tail());
        buffer_.append(buf, got);
      }
    }
  }
  std::string request(const std::string& line, std::chrono::milliseconds timeout) {
    send(line);
    return read_line(timeout);
  }
  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
      killed_ = true;
    }
    if (to_child_ >= 0) close(to_child_);
    if (from_child_ >= 0) close(from_child_);
    to_child_ = from_child_ = -1;
  }
  // Asks the instance to shut down; its exit status (0 expected; sanitizer reports exit non-0).
  int quit() {
    std::string reply = request("quit", 30s);
    if (reply != "bye") throw Failure(name_ + ": quit answered " + reply);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    close(to_child_);
    close(from_child_);
    to_child_ = from_child_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // How the process ended, once its stdout closed: " (exit code N)" or " (signal N: name)".
  std::string exit_status() {
    if (pid_ <= 0) return "";
    int status = 0;
    pid_t r = -1;
    for (int i = 0; i < 50 && (r = waitpid(pid_, &status, WNOHANG)) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (r != pid_) return " (still running, stdout closed)";
    pid_ = -1;
    if (WIFEXITED(status)) return " (exit code " + std::to_string(WEXITSTATUS(status)) + ")";
    if (WIFSIGNALED(status)) {
      return " (signal " + std::to_string(WTERMSIG(status)) + ": " + strsignal(WTERMSIG(status)) +
             ")";
    }
    return "";
  }
  std::string stderr_tail() const {
    std::ifstream in(stderr_path_);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    if (all.empty()) return "";
    return "\n--- " + stderr_path_.string() + " (tail) ---\n" +
           all.substr(all.size() > 3000 ? all.size() - 3000 : 0);
  }

  const std::string& name() const { return name_; }
  const fs::path& log_path() const { return log_path_; }
  int instance() const { return instance_; }
  int incarnation() const { return incarnation_; }
  bool killed() const { return killed_; }
  bool working = false;

 private:
  int instance_, incarnation_;
  std::string name_;
  fs::path log_path_, stderr_path_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string buffer_;
  bool killed_ = false;
};

// ---------------------------------------------------------------------------------------------
// The table as the driver sees it

struct TableDigest {
  uint32_t crc = 0;
  std::size_t count = 0;
  chaos::TableState ids;
};

TableDigest table_digest(Sql& sql, const std::string& table) {
  TableDigest d;
  for (auto& row : sql.query("SELECT key, value::text, coalesce(value->>'w', '?') FROM " + table)) {
    const std::string& key = *row[0];
    const std::string& text = *row[1];
    // The library's CRC: CRC32(key || 0x00 || jsonb text), summed modulo 2^32.
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(key.data()), key.size());
    crc = crc32(crc, reinterpret_cast<const Bytef*>("\0"), 1);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(text.data()), text.size());
    d.crc += static_cast<uint32_t>(crc);
    ++d.count;
    d.ids[key] = *row[2];
  }
  return d;
}

// Records every committed change of the table, in the writing transaction: an ALWAYS trigger,
// so replica-mode sessions record theirs too. Fires after the library's triggers (name order),
// so for a deletion currval() is the revision syncconfig_notify drew for it.
void install_audit(Sql& sql, const std::string& table) {
  const std::string seq = table + "_revision_seq";
  const std::string last =
      "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM " + seq + ")";
  sql.query(R"(
CREATE TABLE chaos_audit (id bigserial PRIMARY KEY, key text, wid text, op char(1) NOT NULL,
  revision bigint, replica boolean NOT NULL, hint bigint NOT NULL);
CREATE FUNCTION chaos_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE rep boolean := current_setting('session_replication_role') = 'replica';
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO chaos_audit (key, wid, op, revision, replica, hint)
      VALUES (OLD.key, NULL, 'd', CASE WHEN rep THEN NULL ELSE currval(')" +
            seq + R"(') END, rep, )" + last + R"();
  ELSE
    INSERT INTO chaos_audit (key, wid, op, revision, replica, hint)
      VALUES (NEW.key, NEW.value->>'w', 'u', CASE WHEN rep THEN NULL ELSE NEW.revision END, rep, )" +
            last + R"();
    IF TG_OP = 'UPDATE' AND OLD.key <> NEW.key THEN  -- a rename also deletes the old key
      INSERT INTO chaos_audit (key, wid, op, revision, replica, hint)
        VALUES (OLD.key, NULL, 'd', CASE WHEN rep THEN NULL ELSE currval(')" +
            seq + R"(') END, rep, )" + last + R"();
    END IF;
  END IF;
  RETURN NULL;
END $$;
CREATE FUNCTION chaos_audit_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE rep boolean := current_setting('session_replication_role') = 'replica';
BEGIN
  INSERT INTO chaos_audit (key, wid, op, revision, replica, hint)
    VALUES (NULL, NULL, 't', CASE WHEN rep THEN NULL ELSE currval(')" +
            seq + R"(') END, rep, )" + last + R"();
  RETURN NULL;
END $$;
CREATE TRIGGER zz_chaos_audit AFTER INSERT OR UPDATE OR DELETE ON )" +
            table + R"(
  FOR EACH ROW EXECUTE FUNCTION chaos_audit_row();
CREATE TRIGGER zz_chaos_audit_truncate AFTER TRUNCATE ON )" +
            table + R"(
  FOR EACH STATEMENT EXECUTE FUNCTION chaos_audit_truncate();
ALTER TABLE )" +
            table + R"( ENABLE ALWAYS TRIGGER zz_chaos_audit;
ALTER TABLE )" +
            table + R"( ENABLE ALWAYS TRIGGER zz_chaos_audit_truncate;
)");
}

std::vector<chaos::AuditOp> read_audit(Sql& sql) {
  std::vector<chaos::AuditOp> out;
  for (auto& row : sql.query("SELECT coalesce(key, ''), coalesce(wid, ''), op, revision, replica, "
                             "hint FROM chaos_audit ORDER BY id")) {
    chaos::AuditOp a;
    a.key = *row[0];
    a.wid = *row[1];
    a.op = (*row[2])[0];
    if (row[3]) a.revision = std::stoll(*row[3]);
    a.replica = *row[4] == "t";
    a.hint = std::stoll(*row[5]);
    out.push_back(std::move(a));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The run

enum class Fault {
  kSqlUpsert,       // one row, sometimes a value over the NOTIFY limit
  kSqlMultiInsert,  // INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE
  kSqlMultiUpdate,  // UPDATE ... WHERE key IN (...)
  kSqlDelete,       // DELETE ... WHERE key IN (...)
  kSqlTransaction,  // BEGIN; INSERT; UPDATE; DELETE; COMMIT
  kSqlRename,       // UPDATE ... SET key = ...: a deletion and an insertion in one row change
  kTruncateInsert,  // BEGIN; TRUNCATE; INSERT ...; COMMIT
  kTruncateOutage,  // every listener cut off, then TRUNCATE: the catch-up must apply it
  kDeleteOutage,    // every listener cut off, then DELETE of keys the table holds: the same
  kSqlLarge,        // a value over the 8000-byte payload limit
  kTruncate,
  kReplicaWrite,   // session_replication_role = replica: no trigger, no notification
  kKillListeners,  // pg_terminate_backend on every listening connection
  kKillWriters,    // ... on the pooled write connections
  kServerRestart,  // pg_ctl stop -m fast; start
  kKillInstance,   // SIGKILL an instance process and start it again
  kFailover,       // stop the primary (fast or immediate), promote the standby, rebuild one
};
constexpr int kFaultKinds = 17;
const char* fault_name(Fault f) {
  static const char* names[] = {"sql upsert",
                                "sql multi-row insert",
                                "sql multi-row update",
                                "sql delete",
                                "sql transaction",
                                "sql key rename",
                                "truncate+insert transaction",
                                "truncate missed by listeners",
                                "deletion missed by listeners",
                                "sql large value",
                                "truncate",
                                "replica-mode write",
                                "kill listeners",
                                "kill writers",
                                "server restart",
                                "SIGKILL instance",
                                "failover"};
  return names[static_cast<int>(f)];
}

class Run {
 public:
  explicit Run(Config cfg) : cfg_(std::move(cfg)), rng_(cfg_.seed) {}

  int execute() {
    auto started = Clock::now();
    std::cout << "chaos_test: profile " << cfg_.profile << ", seed " << cfg_.seed
              << (kSanitized ? " (sanitizer build: scaled down)" : "") << "\n"
              << "  reproduce: chaos_test --profile " << cfg_.profile << " --seed " << cfg_.seed
              << (cfg_.duration_s ? " --duration " + std::to_string(cfg_.duration_s) : "")
              << "\n  instances " << cfg_.instances << ", keys " << cfg_.keys << ", rounds of "
              << cfg_.round_ms << " ms, heartbeat " << cfg_.heartbeat_ms << " ms, reconnect "
              << cfg_.reconnect_ms << " ms, margin " << cfg_.margin_ms << " ms" << std::endl;
    // A new directory every run: a kept one of an earlier run whose process had the same pid
    // would otherwise lend this run its instance logs (which are appended to), and the checker
    // would read another history (seen once in a loop of --keep-logs runs).
    std::string dir =
        (fs::temp_directory_path() / ("chaos_" + std::to_string(getpid()) + "_XXXXXX")).string();
    if (::mkdtemp(dir.data()) == nullptr) {
      throw std::runtime_error("cannot create a directory for the logs (" + dir +
                               "): " + std::strerror(errno));
    }
    dir_ = dir;

    // Synchronous: a commit is acknowledged once the standby has it, so a failover loses no
    // acknowledged write and every check keeps its meaning across one. Everything connects
    // with the set's multi-host DSN and so follows the primary.
    replicas_ = std::make_unique<syncconfig::testing::ReplicaSet>(/*synchronous=*/true);
    // With the instances' logs: a failure is read against what both servers logged.
    replicas_->keep_server_logs_in(dir_);
    {
      // Creates the table and the protocol's objects, exactly as an instance would.
      syncconfig::Options o;
      o.table_name = table_;
      o.channel = table_ + "_ch";
      syncconfig::Store::open(replicas_->dsn(), o)->shutdown();
    }
    sql_ = std::make_unique<Sql>(replicas_->dsn());
    install_audit(*sql_, table_);

    for (int i = 0; i < cfg_.instances; ++i) start_instance(i, 0);

    int round = 0;
    for (;;) {
      ++round;
      if (cfg_.duration_s > 0 ? ms_since(started) >= cfg_.duration_s * 1000LL
                              : round > cfg_.rounds) {
        break;
      }
      run_round(round);
    }
    const int rounds_run = round - 1;

    for (auto& c : children_) {
      int status = c->quit();
      if (status != 0) {
        extra_violations_.push_back(c->name() + ": exited with status " + std::to_string(status) +
                                    c->stderr_tail());
      }
    }
    TableDigest final_table = table_digest(*sql_, table_);
    return report(rounds_run, ms_since(started), final_table);
  }

  ~Run() {
    children_.clear();  // SIGKILL + reap whatever still runs.
    all_children_.clear();
    sql_.reset();
    replicas_.reset();  // Stops both servers, saves their logs, removes their data directories.
    // A failed run on a CI machine leaves only what it printed: show what the servers said about
    // replication, shutdowns and promotions (for a lost acknowledged write, finding 5).
    if (failed_ && !failovers_.empty()) print_server_log_excerpts();
    if (!dir_.empty() && !cfg_.keep_logs && !failed_) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  fs::path log_dir() const { return dir_; }

  void print_server_log_excerpts() const {
    static const char* const kWords[] = {"replication",     "standby", "promot",   "shutdown",
                                         "database system", "redo",    "timeline", "terminating",
                                         "synchronous",     "WARNING", "PANIC"};
    // The faults' own noise: terminated sessions, refused connections during a restart (not a
    // WARNING that a commit stopped waiting for the standby: that one is kept).
    static const char* const kNoise[] = {
        "FATAL:  terminating connection due to administrator",
        "the database system is shutting down", "the database system is starting up",
        "there is no transaction in progress", "skipping special file"};
    constexpr std::size_t kLinesPerLog = 40;
    std::error_code ec;
    std::vector<fs::path> logs;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      if (entry.path().string().ends_with(".server.log")) logs.push_back(entry.path());
    }
    std::sort(logs.begin(), logs.end());
    for (const fs::path& log : logs) {
      std::ifstream in(log);
      std::vector<std::string> kept;
      for (std::string line; std::getline(in, line);) {
        if (std::any_of(std::begin(kNoise), std::end(kNoise),
                        [&](const char* noise) { return line.find(noise) != std::string::npos; })) {
          continue;
        }
        for (const char* word : kWords) {
          if (line.find(word) != std::string::npos) {
            kept.push_back(line);
            break;
          }
        }
      }
      const std::size_t from = kept.size() > kLinesPerLog ? kept.size() - kLinesPerLog : 0;
      std::cout << "  " << log.filename().string() << ": the last " << kept.size() - from << " of "
                << kept.size() << " lines about replication and shutdowns\n";
      for (std::size_t i = from; i < kept.size(); ++i) std::cout << "    " << kept[i] << "\n";
    }
    std::cout.flush();
  }

  void mark_failed() { failed_ = true; }

 private:
  void start_instance(int instance, int incarnation) {
    auto c = std::make_shared<Child>(cfg_, replicas_->dsn(), table_, dir_, instance, incarnation);
    std::string line = c->read_line(kSanitized ? 180s : 90s);
    if (line != "ready") throw Failure(c->name() + ": said '" + line + "' instead of ready");
    if (static_cast<int>(children_.size()) <= instance) children_.resize(instance + 1);
    children_[instance] = c;
    all_children_.push_back(c);
  }

  std::string next_id() { return "s" + std::to_string(next_sql_id_++); }
  std::string random_key() {
    for (;;) {
      std::string k = "k" + std::to_string(rng_() % cfg_.keys);
      // distinct_keys() asks for up to 8 keys: leave it enough to choose from.
      if (!avoid_keys_.contains(k) || avoid_keys_.size() + 8 >= std::size_t(cfg_.keys)) return k;
    }
  }
  std::vector<std::string> distinct_keys(std::size_t n) {
    std::set<std::string> s;
    while (s.size() < n) s.insert(random_key());
    return {s.begin(), s.end()};
  }

  // One statement (or transaction) of plain SQL; failures (e.g. during a restart) are counted:
  // the audit table knows what committed.
  void sql(const std::string& text) {
    ++sql_statements_;
    std::string error;
    if (!sql_->try_query(text, &error)) ++sql_failures_;
  }

  void inject(Fault f) {
    ++faults_[static_cast<int>(f)];
    const std::string t = table_;
    switch (f) {
      case Fault::kSqlUpsert: {
        std::string k = random_key();
        sql("INSERT INTO " + t + " (key, value) VALUES (" + lit(k) + ", jsonb_build_object('w', " +
            lit(next_id()) + ")) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value");
        break;
      }
      case Fault::kSqlLarge: {
        std::string k = random_key();
        sql("INSERT INTO " + t + " (key, value) VALUES (" + lit(k) + ", jsonb_build_object('w', " +
            lit(next_id()) + ", 'p', repeat('y', " + std::to_string(9000 + rng_() % 30000) +
            "))) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value");
        break;
      }
      case Fault::kSqlMultiInsert: {
        std::string id = next_id(), values;
        for (auto& k : distinct_keys(2 + rng_() % 5)) {
          values += (values.empty() ? "" : ", ") + std::string("(") + lit(k) +
                    ", jsonb_build_object('w', " + lit(id + "." + k) + "))";
        }
        sql("INSERT INTO " + t + " (key, value) VALUES " + values +
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value");
        break;
      }
      case Fault::kSqlMultiUpdate: {
        std::string keys;
        for (auto& k : distinct_keys(3 + rng_() % 6)) keys += (keys.empty() ? "" : ", ") + lit(k);
        sql("UPDATE " + t + " SET value = jsonb_build_object('w', " + lit(next_id() + ".") +
            " || key) WHERE key IN (" + keys + ")");
        break;
      }
      case Fault::kSqlDelete: {
        std::string keys;
        for (auto& k : distinct_keys(1 + rng_() % 4)) keys += (keys.empty() ? "" : ", ") + lit(k);
        sql("DELETE FROM " + t + " WHERE key IN (" + keys + ")");
        break;
      }
      case Fault::kSqlTransaction: {
        auto ks = distinct_keys(4);
        std::string id = next_id();
        sql("BEGIN; INSERT INTO " + t + " (key, value) VALUES (" + lit(ks[0]) +
            ", jsonb_build_object('w', " + lit(id + "." + ks[0]) + ")), (" + lit(ks[1]) +
            ", jsonb_build_object('w', " + lit(id + "." + ks[1]) +
            ")) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value; UPDATE " + t +
            " SET value = jsonb_build_object('w', " + lit(id + "." + ks[2]) + ") WHERE key = " +
            lit(ks[2]) + "; DELETE FROM " + t + " WHERE key = " + lit(ks[3]) + "; COMMIT");
        break;
      }
      case Fault::kSqlRename: {
        // Fails (counted) when the new key exists already; the audit knows what committed.
        auto ks = distinct_keys(2);
        sql("UPDATE " + t + " SET key = " + lit(ks[1]) + ", value = jsonb_build_object('w', " +
            lit(next_id()) + ") WHERE key = " + lit(ks[0]));
        break;
      }
      case Fault::kTruncateInsert: {
        auto ks = distinct_keys(2);
        std::string id = next_id();
        sql("BEGIN; TRUNCATE " + t + "; INSERT INTO " + t + " (key, value) VALUES (" + lit(ks[0]) +
            ", jsonb_build_object('w', " + lit(id + "." + ks[0]) + ")), (" + lit(ks[1]) +
            ", jsonb_build_object('w', " + lit(id + "." + ks[1]) + ")); COMMIT");
        break;
      }
      case Fault::kTruncateOutage:
        sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "application_name = 'syncconfig-listener'");
        sql("TRUNCATE " + t);
        break;
      case Fault::kDeleteOutage: {
        // Keys the table holds, so that the DELETE is a change (a tombstone), not a no-op.
        std::string error, keys;
        auto rows = sql_->try_query("SELECT key FROM " + t + " ORDER BY key", &error);
        if (!rows || rows->empty()) break;
        const std::size_t n = std::min<std::size_t>(rows->size(), 1 + rng_() % 2);
        deleted_keys_.clear();
        for (std::size_t i = 0; i < n; ++i) {
          std::string k = *(*rows)[rng_() % rows->size()][0];
          if (deleted_keys_.insert(k).second) keys += (keys.empty() ? "" : ", ") + lit(k);
        }
        sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "application_name = 'syncconfig-listener'");
        sql("DELETE FROM " + t + " WHERE key IN (" + keys + ")");
        break;
      }
      case Fault::kTruncate:
        sql("TRUNCATE " + t);
        break;
      case Fault::kReplicaWrite: {
        // No trigger of the library runs: no revision, no tombstone, no notification. Only the
        // heartbeat (comparing with the table) can find these.
        trigger_less_rounds_.insert(round_);
        auto ks = distinct_keys(4);
        std::string id = "r" + std::to_string(next_sql_id_++);
        sql("BEGIN; SET LOCAL session_replication_role = replica; UPDATE " + t +
            " SET value = jsonb_build_object('w', " + lit(id + ".") + " || key) WHERE key IN (" +
            lit(ks[0]) + ", " + lit(ks[1]) + "); INSERT INTO " + t + " (key, value) VALUES (" +
            lit(ks[2]) + ", jsonb_build_object('w', " + lit(id + "." + ks[2]) +
            ")) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value; DELETE FROM " + t +
            " WHERE key = " + lit(ks[3]) + "; COMMIT");
        break;
      }
      case Fault::kKillListeners:
        sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "application_name = 'syncconfig-listener'");
        break;
      case Fault::kKillWriters:
        sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "application_name = 'syncconfig'");
        break;
      case Fault::kServerRestart:
        // The primary; the standby reconnects to it by itself (commits wait for that).
        replicas_->primary().restart();
        sql_->reconnect();
        break;
      case Fault::kKillInstance: {
        int i = static_cast<int>(rng_() % children_.size());
        int incarnation = children_[i]->incarnation() + 1;
        children_[i]->kill_now();
        start_instance(i, incarnation);  // Starts without work: it just follows the table.
        break;
      }
      case Fault::kFailover:
        fail_over();
        break;
    }
  }

  // The standby takes over from a primary stopped cleanly or crashed (the two alternate, the
  // first chosen by the seed), and a new standby is built from it at once, so that the next
  // failover has one (and commits are synchronous again). The instances keep writing
  // throughout. A failover manager promotes only a standby that has what the primary committed:
  // wait for it to stream and to have replayed the primary's WAL. Without that wait, a commit
  // whose wait for the standby was cut short (a writer terminated, a client timeout while the
  // standby reconnected after a restart) is visible on the primary though never acknowledged,
  // and a crash of the primary could lose it after instances observed it.
  void fail_over() {
    using syncconfig::testing::Shutdown;
    replicas_->wait_streaming();
    replicas_->wait_replayed();
    const Shutdown how =
        (failovers_.size() + cfg_.seed) % 2 == 0 ? Shutdown::kFast : Shutdown::kImmediate;
    const auto t0 = Clock::now();
    const int64_t promotion = replicas_->fail_over(how).count();
    const int64_t stop_and_promote = ms_since(t0);
    sql_->reconnect();
    const auto t1 = Clock::now();
    replicas_->rebuild_standby();
    failovers_.push_back(
        {round_, how == Shutdown::kFast, promotion, stop_and_promote, ms_since(t1)});
    const FailoverTimes& f = failovers_.back();
    std::cout << "  round " << round_ << ": failover (" << (f.fast ? "fast" : "immediate")
              << " shutdown): stop + promotion " << f.stop_and_promote_ms << " ms (promotion "
              << f.promotion_ms << " ms), standby rebuilt in " << f.rebuild_ms << " ms"
              << std::endl;
  }

  struct InstanceState {
    uint32_t crc = 0;
    std::size_t size = 0;
    bool connected = false;
    int64_t revision = 0;  // Stats::revision: the watermark.
  };
  InstanceState state_of(Child& c) {
    std::istringstream reply(c.request("crc", 30s));
    std::string word;
    InstanceState s;
    reply >> word >> s.crc >> s.size >> s.connected >> s.revision;
    if (word != "crc" || reply.fail()) throw Failure(c.name() + ": bad crc reply");
    return s;
  }

  // Waits until every instance is complete to the table's last revision (its watermark equals
  // the sequence's value) and returns that revision. Nothing writes meanwhile, so each gets there
  // by its next heartbeat's catch-up at the latest: not within the convergence bound is reported.
  int64_t wait_until_complete(int round) {
    const auto t0 = Clock::now();
    const int64_t bound = cfg_.heartbeat_ms + cfg_.reconnect_ms + cfg_.margin_ms;
    const std::string seq = table_ + "_revision_seq";
    std::map<int, int64_t> behind;  // instance -> its revision, until it is complete
    int64_t table_revision = 0;
    for (;;) {
      check_interrupted();
      auto rows = sql_->query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM " + seq);
      table_revision = std::stoll(*rows.at(0).at(0));
      behind.clear();
      for (auto& c : children_) {
        int64_t r = state_of(*c).revision;
        if (r != table_revision) behind[c->instance()] = r;
      }
      if (behind.empty() || ms_since(t0) > bound) break;
      std::this_thread::sleep_for(10ms);
    }
    for (auto& [instance, r] : behind) {
      extra_violations_.push_back("round " + std::to_string(round) + ": " +
                                  children_[instance]->name() + " was complete to revision " +
                                  std::to_string(r) + ", not the table's " +
                                  std::to_string(table_revision) + ", " + std::to_string(bound) +
                                  " ms after the writes stopped");
    }
    return table_revision;
  }

  void run_round(int round) {
    round_ = round;
    // Replica-mode writes only in odd rounds. In the even ones every change is notified or read
    // by a catch-up, so a heartbeat that finds a difference there is a violation: it would be
    // repairing a change the protocol lost (docs/reliability.md, "The heartbeat finds nothing to
    // repair outside replica-mode rounds").
    const bool replica_round = round % 2 == 1;
    // With --failover, a failover in the even rounds (2 and 4 of the CI profile: over and back),
    // where the heartbeat must find nothing: under synchronous replication a failover loses nothing
    // the instances saw, so their reconnect's catch-up has all there is to find.
    const bool failover_round = cfg_.failover && round % 2 == 0;
    // The schedule: every kind of fault once at a random moment (the server restart, the
    // SIGKILL and the failover once per round), plus plain-SQL upserts every 50-250 ms. The
    // faults planned during a failover follow it as soon as it is done.
    std::vector<std::pair<int, Fault>> plan;
    const int lo = cfg_.round_ms / 10, span = cfg_.round_ms * 3 / 4;
    for (int k = 1; k < kFaultKinds; ++k) {
      if (Fault(k) == Fault::kReplicaWrite && !replica_round) continue;
      if (Fault(k) == Fault::kFailover && !failover_round) continue;
      plan.emplace_back(lo + rng_() % span, Fault(k));
    }
    for (int extra = 0; extra < cfg_.round_ms / 2000; ++extra) {  // More of the cheap ones.
      for (Fault f : {Fault::kKillListeners, Fault::kReplicaWrite, Fault::kSqlMultiUpdate,
                      Fault::kSqlLarge}) {
        if (f == Fault::kReplicaWrite && !replica_round) continue;
        plan.emplace_back(lo + rng_() % span, f);
      }
    }
    for (int at = lo; at < lo + span; at += 50 + rng_() % 200)
      plan.emplace_back(at, Fault::kSqlUpsert);
    std::sort(plan.begin(), plan.end(), [](auto& a, auto& b) { return a.first < b.first; });

    auto start = Clock::now();
    for (auto& c : children_) {
      c->send("work " + std::to_string(rng_()) + " " + std::to_string(cfg_.round_ms) + " " +
              std::to_string(cfg_.keys) + " " + std::to_string(cfg_.large_pct) + " " +
              std::to_string(cfg_.remove_pct));
      c->working = true;
    }
    for (auto& [at, f] : plan) {
      check_interrupted();
      auto when = start + std::chrono::milliseconds(at);
      if (Clock::now() < when) std::this_thread::sleep_until(when);
      inject(f);
    }
    // The instances stop writing after round_ms; collect them.
    for (auto& c : children_) {
      if (!c->working) continue;
      std::string reply = c->read_line(std::chrono::milliseconds(cfg_.round_ms) + 120s);
      c->working = false;
      if (!reply.starts_with("done ")) throw Failure(c->name() + ": work answered " + reply);
    }

    // A last burst right before the clock starts, so that convergence has to be earned: in some
    // rounds a server restart, every listener cut off and writes they must catch up on; in odd
    // rounds a change only the heartbeat can find.
    if (rng_() % 2 == 0) inject(Fault::kServerRestart);
    if (replica_round) {
      inject(Fault::kReplicaWrite);
      inject(Fault::kKillListeners);
    } else {
      // The change right after an instance's watermark W is the catch-up's boundary case (its
      // log record is the first one with revision > W). Once every instance is complete to the
      // table's last revision, cut the listeners off and make that change a deletion (rounds 2,
      // 6, ...) or a TRUNCATE (rounds 4, 8, ...). Nothing later in the burst writes the deleted
      // keys, so a catch-up that skipped the change leaves a difference only the heartbeat can
      // find, and this round lets it find none.
      const int64_t w = wait_until_complete(round);
      deleted_keys_.clear();
      inject(round % 4 == 2 ? Fault::kDeleteOutage : Fault::kTruncateOutage);
      avoid_keys_ = deleted_keys_;
      // The change log records a TRUNCATE's keys one by one before its mark; instances apply
      // it (and report its deletions) at the mark's revision.
      auto first = sql_->query("SELECT revision, op FROM " + table_ + "_changes WHERE revision > " +
                               std::to_string(w) +
                               " AND NOT (op = 'truncate' AND key IS NOT NULL) ORDER BY revision "
                               "LIMIT 1");
      if (!first.empty() && first[0][0] && first[0][1] && *first[0][1] != "set") {
        away_revisions_.insert(std::stoll(*first[0][0]));
      } else {
        std::cout << "  round " << round << ": the change after revision " << w
                  << " was not a deletion or truncation" << std::endl;
      }
    }
    inject(Fault::kSqlMultiInsert);
    inject(Fault::kSqlLarge);
    inject(Fault::kSqlDelete);
    avoid_keys_.clear();

    // Faults and writes have stopped: every instance must reach the table within the bound.
    const auto t0 = Clock::now();
    const int64_t bound = cfg_.heartbeat_ms + cfg_.reconnect_ms + cfg_.margin_ms;
    std::map<int, int64_t> converged;  // instance -> ms
    TableDigest table;
    while (static_cast<int>(converged.size()) < static_cast<int>(children_.size())) {
      check_interrupted();
      table = table_digest(*sql_, table_);
      for (auto& c : children_) {
        if (converged.contains(c->instance())) continue;
        InstanceState state = state_of(*c);
        if (state.crc == table.crc && state.size == table.count) {
          converged[c->instance()] = ms_since(t0);
        }
      }
      if (ms_since(t0) > bound + 30000) break;  // Give up: reported below.
      std::this_thread::sleep_for(10ms);
    }
    std::ostringstream times;
    for (auto& c : children_) {
      auto it = converged.find(c->instance());
      if (it == converged.end()) {
        extra_violations_.push_back("round " + std::to_string(round) + ": " + c->name() +
                                    " did not converge within " + std::to_string(bound + 30000) +
                                    " ms");
        continue;
      }
      convergence_ms_.push_back(it->second);
      times << " " << c->name() << "=" << it->second;
      if (it->second > bound) {
        extra_violations_.push_back("round " + std::to_string(round) + ": " + c->name() +
                                    " converged after " + std::to_string(it->second) +
                                    " ms, over the bound of " + std::to_string(bound) + " ms");
      }
    }
    tables_[round] = table.ids;
    for (auto& c : children_) {
      std::string reply = c->request("dump " + std::to_string(round), 30s);
      if (reply != "dumped") throw Failure(c->name() + ": dump answered " + reply);
    }
    // Nothing may have written since: the dumps are compared with this state.
    if (table_digest(*sql_, table_).ids != table.ids) {
      extra_violations_.push_back("round " + std::to_string(round) +
                                  ": the table changed after the faults stopped");
    }
    std::cout << "  round " << round << ": " << table.count
              << " keys, converged in ms:" << times.str() << std::endl;
  }

  int report(int rounds, int64_t elapsed_ms, const TableDigest& final_table) {
    chaos::Checker checker(read_audit(*sql_));
    // One log at a time: a long run's logs do not all fit in memory comfortably.
    for (auto& c : all_children_) {
      chaos::InstanceLog log{c->name(), {}, c->killed()};
      std::ifstream in(c->log_path());
      std::string line;
      std::size_t n = 0;
      while (std::getline(in, line)) {
        ++n;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded()) {
          // A SIGKILL can cut the last line short; anything else is a bug of the test.
          if (!c->killed() || in.peek() != EOF) {
            checker.violation(c->name() + ": unreadable log line " + std::to_string(n));
          }
          continue;
        }
        log.lines.push_back(std::move(j));
      }
      checker.check_instance(log, tables_);
      checker.check_acks({log}, final_table.ids);
      checker.check_heartbeats(log, trigger_less_rounds_);
      checker.count_caught_up(log, away_revisions_);
    }
    for (auto& v : extra_violations_) checker.violation(v);

    const chaos::Figures& f = checker.figures();
    std::sort(convergence_ms_.begin(), convergence_ms_.end());
    auto pct = [&](double p) -> int64_t {
      if (convergence_ms_.empty()) return -1;
      return convergence_ms_[static_cast<std::size_t>(p * (convergence_ms_.size() - 1))];
    };
    std::cout << "\nchaos_test result (seed " << cfg_.seed << ", profile " << cfg_.profile << ")\n"
              << "  duration            " << elapsed_ms / 1000.0 << " s, " << rounds << " rounds\n"
              << "  operations          "
              << f.sets_ok + f.sets_failed + f.removes_ok + f.removes_failed
              << " by instances (sets ok " << f.sets_ok << ", failed " << f.sets_failed
              << "; removes ok " << f.removes_ok << ", failed " << f.removes_failed << "), "
              << sql_statements_ << " plain-SQL statements (" << sql_failures_ << " failed)\n"
              << "  committed changes   " << f.committed_ops << " normal, " << f.replica_ops
              << " replica-mode\n"
              << "  ambiguous writes    " << f.ambiguous << " (" << f.ambiguous_committed
              << " of them committed)\n"
              << "  callbacks checked   " << f.callbacks << " (" << f.pairs_exempt
              << " consecutive pairs exempt from ordering: replica-mode states)\n"
              << "  faults              ";
    bool first = true;
    for (int k = 0; k < kFaultKinds; ++k) {
      if (k == 0) continue;  // Background SQL upserts are operations, counted above.
      std::cout << (first ? "" : ", ") << fault_name(Fault(k)) << " " << faults_[k];
      first = false;
    }
    if (!failovers_.empty()) {
      int fast = 0;
      int64_t promotion = 0, stop_and_promote = 0, rebuild = 0;
      for (const FailoverTimes& t : failovers_) {
        fast += t.fast;
        promotion = std::max(promotion, t.promotion_ms);
        stop_and_promote = std::max(stop_and_promote, t.stop_and_promote_ms);
        rebuild = std::max(rebuild, t.rebuild_ms);
      }
      std::cout << "\n  failovers           " << failovers_.size() << " (" << fast << " fast, "
                << failovers_.size() - fast << " immediate): stop + promotion max "
                << stop_and_promote << " ms (promotion " << promotion
                << " ms), standby rebuilt in max " << rebuild << " ms; history resets "
                << f.history_resets << " (none allowed)";
    }
    std::cout << "\n  heartbeat           " << f.heartbeat_diffs_excused
              << " differences found in rounds with replica-mode writes (expected), "
              << f.heartbeat_diffs_unexcused << " in the " << f.heartbeat_rounds_checked
              << " instance-rounds without (none allowed)\n"
              << "  first change away   " << away_revisions_.size()
              << " rounds (a deletion or TRUNCATE at W + 1, listeners cut off); applied by a "
                 "catch-up in "
              << f.away_changes_caught_up << " instance-rounds\n"
              << "  convergence         p50 " << pct(0.5) << " ms, max " << pct(1.0) << " ms over "
              << convergence_ms_.size() << " instance-rounds (bound "
              << cfg_.heartbeat_ms + cfg_.reconnect_ms + cfg_.margin_ms << " ms)\n"
              << "  violations          " << checker.violations().size() << "\n";
    for (const auto& v : checker.violations()) std::cout << "    - " << v << "\n";
    if (!checker.violations().empty()) {
      failed_ = true;
      std::cout << "  logs kept in " << dir_ << "\n";
    }
    std::cout.flush();
    return checker.violations().empty() ? 0 : 1;
  }

  Config cfg_;
  std::mt19937_64 rng_;
  const std::string table_ = "chaos_config";
  fs::path dir_;
  std::unique_ptr<syncconfig::testing::ReplicaSet> replicas_;
  std::unique_ptr<Sql> sql_;
  std::vector<std::shared_ptr<Child>> children_;      // Current incarnation per instance.
  std::vector<std::shared_ptr<Child>> all_children_;  // Every incarnation, for the logs.
  std::map<int, chaos::TableState> tables_;
  std::vector<int64_t> convergence_ms_;
  std::vector<std::string> extra_violations_;
  int round_ = 0;
  std::set<int> trigger_less_rounds_;   // Rounds in which a replica-mode write was run.
  std::set<int64_t> away_revisions_;    // The first change after W of each even round's burst.
  std::set<std::string> deleted_keys_;  // By the last kDeleteOutage.
  std::set<std::string> avoid_keys_;    // Keys the rest of a burst leaves alone.
  uint64_t sql_statements_ = 0, sql_failures_ = 0, next_sql_id_ = 0;
  int faults_[kFaultKinds] = {};
  struct FailoverTimes {
    int round;
    bool fast;  // Else immediate.
    int64_t promotion_ms, stop_and_promote_ms, rebuild_ms;
  };
  std::vector<FailoverTimes> failovers_;
  bool failed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--self-test") {
    std::cout << "chaos checker self-test: planted violations must be found\n";
    int failures = chaos::self_test();
    std::cout << (failures ? "FAILED" : "passed") << "\n";
    return failures ? 1 : 0;
  }
  Config cfg = parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted.store(true); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  auto logger = spdlog::stderr_logger_mt("chaos_test");
  logger->set_level(spdlog::level::warn);
  spdlog::set_default_logger(logger);

  Run run(cfg);
  try {
    return run.execute();
  } catch (const std::exception& e) {
    run.mark_failed();
    std::cerr << "chaos_test: " << e.what() << "\n  logs kept in " << run.log_dir()
              << "\n  reproduce with --seed " << cfg.seed << "\n";
    return 1;
  }
}
