// syncconfig_remote: RemoteStore (a process that follows `syncconfig serve` over HTTP instead of
// holding database connections) next to Store, measured in the same process against the same
// embedded PostgreSQL, with the real `syncconfig serve` program run as child processes (serve
// --dsn on the database, serve --upstream for relays; `--listen 127.0.0.1:0`, the port read from
// its "listening on" line).
//
//   1. propagation: set() on a Store until the callback of a RemoteStore that follows one server
//      (the goal: p50 <= 2x), and of a RemoteStore that follows the second of two stacked relays
//      (serve --upstream A, serve --upstream relay 1), vs set() on a Store until the callback of
//      another Store of the same table. Samples rotate over the three paths, 1 ms apart.
//      Diagnostics: RemoteStore::set (a PUT through the server) vs Store::set; how long after
//      its callback a Store's progress passes the change (what serve's /watch waits for).
//   2. start-up at 100k and 1M keys: RemoteStore::open through one server (until it returns:
//      every key loaded) vs Store::open on the same table; rounds interleaved. Diagnostics: the
//      bare GET /settings on a raw socket (the server's part and the transfer) and
//      nlohmann::json::parse of that body (the first step of the client's part); at 1M, how
//      late a change reaches a RemoteStore while another RemoteStore opens, and how long
//      Store::snapshot() (what GET /settings runs under the cache's read lock) takes.
//   3. PostgreSQL backends held by 1,000 RemoteStores through two servers, from
//      pg_stat_activity: before the servers, with the servers, with the RemoteStores open (the
//      goal: only the servers' own); set() on a Store until the last of the 1,000 callbacks
//      (shown). Memory per key of one RemoteStore vs one Store holding the same 1M keys: heap
//      (and RSS) growth of this process over open(), as syncconfig_latency's memory figure, and
//      the peak RSS during open().
//
// Tables are filled with one INSERT ... SELECT generate_series through the library's triggers
// (every row stamped with its own revision), before any server listens: 9 values in 10 are the
// JSON string "v-000123", every 10th a small object {"n": 10, "on": true}. Each table lives in a
// database of its own, so that serve --dsn finds it under its default name (sync_config).
//
// Usage: syncconfig_remote [--samples N] [--gap-us U] [--stores N] [--startup-runs R] [--fsync]
//                          [--smoke] [--only propagation|startup|memory|connections]
//   N samples per propagation path (default 2000, smoke 50), U microseconds between them
//   (default 1000); --stores: RemoteStores of figure 3 (default 1000, smoke 50); R timed
//   start-up rounds per size (default 5 at 100k, 3 at 1M); --fsync runs the cluster with
//   fsync=on (default: the temporary cluster's fsync=off); --smoke: sizes 1k / 10k keys, few
//   rounds (checks that the benchmark works; its numbers mean nothing). Fails (exit 1) on
//   errors only, never on timings.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/syncconfig.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench_util.h"

#ifndef SYNCCONFIG_BIN
#error "SYNCCONFIG_BIN (the path of the syncconfig program) must be defined by the build"
#endif

namespace {

using bench::Clock;
using bench::FanIn;
using bench::micros;
using bench::PgConn;
using bench::Row;
using bench::summarize;
using bench::Summary;
using bench::Unit;
using namespace std::chrono_literals;

struct Config {
  int samples = 2000;  // Per propagation path.
  int warmup = 100;
  int write_samples = 500;  // RemoteStore::set vs Store::set (diagnostic).
  int mid_keys = 100000;
  int large_keys = 1000000;
  int startup_runs = 5;        // Timed opens at mid_keys (after one warm-up) ...
  int startup_runs_large = 3;  // ... and at large_keys.
  int stall_samples = 100;     // Writes while nothing else happens (diagnose_open_stall).
  int stores = 1000;           // RemoteStores of figure 3.
  int fleet_rounds = 20;       // set -> last of `stores` callbacks.
  // Pause after each propagation sample, so that whatever a write started elsewhere is over.
  std::chrono::microseconds gap = 1000us;
  bool fsync = false;

  void smoke() {
    samples = 50;
    warmup = 10;
    write_samples = 20;
    mid_keys = 1000;
    large_keys = 10000;
    startup_runs = startup_runs_large = 1;
    stall_samples = 10;
    stores = 50;
    fleet_rounds = 3;
  }
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

// "1k", "100k", "1M".
std::string count_label(int n) {
  if (n >= 1000000 && n % 1000000 == 0) return std::to_string(n / 1000000) + "M";
  if (n >= 1000 && n % 1000 == 0) return std::to_string(n / 1000) + "k";
  return std::to_string(n);
}
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The JSON string "v-000123", as syncconfig_latency writes.
std::string value_string(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "v-%06d", i % 1000000);
  return buf;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- Child processes ----------------------------------------------------------------------------

// A program run as a child process with its stdout on a pipe (stdin /dev/null, stderr ours), as
// in syncconfig_watch_fanout. The destructor stops it (SIGTERM, SIGKILL after 30 s) and reaps it;
// PR_SET_PDEATHSIG kills it if this process dies without running destructors.
class ChildProcess {
 public:
  ChildProcess(std::string name, std::vector<std::string> args) : name_(std::move(name)) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) fail_errno("pipe2");
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // The child of a process with threads: async-signal-safe calls only until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      if (int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
      }
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      struct sigaction default_action {};
      default_action.sa_handler = SIG_DFL;
      ::sigaction(SIGPIPE, &default_action, nullptr);  // Ignored here (see main), not in children.
      ::execv(argv[0], argv.data());
      static const char kMsg[] = "bench: exec of a child process failed\n";
      [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(out[1]);
    out_ = out[0];
    if (pid_ < 0) {
      ::close(out_);
      out_ = -1;
      errno = fork_errno;
      fail_errno("fork for " + name_);
    }
  }
  ~ChildProcess() {
    stop();
    if (out_ >= 0) ::close(out_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  // The next stdout line starting with `prefix` (earlier lines are skipped), without the prefix.
  std::string read_line(const std::string& prefix, std::chrono::seconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      for (std::size_t nl; (nl = buf_.find('\n')) != std::string::npos;) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p{out_, POLLIN, 0};
      int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        fail(name_ + " printed no \"" + prefix + "\" line within " +
             std::to_string(timeout.count()) + " s");
      }
      char chunk[4096];
      ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n > 0) {
        buf_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        wait_exit(10s);
        fail(name_ + " exited (status " + std::to_string(status_.value_or(-1)) +
             ") before printing \"" + prefix + "\"; its stderr is above");
      }
    }
  }

  // SIGTERM, then SIGKILL if it has not exited within 30 s. Returns the exit status (128 +
  // signal when killed); idempotent.
  int stop() {
    if (status_) return *status_;
    ::kill(pid_, SIGTERM);
    if (!wait_exit(30s)) {
      ::kill(pid_, SIGKILL);
      wait_exit(std::chrono::hours(1));
    }
    return *status_;
  }
  // For die(): no waiting for a clean shutdown.
  void kill_now() {
    if (status_) return;
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::hours(1));
  }

 private:
  bool wait_exit(std::chrono::milliseconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      }
      if (r < 0 && errno != EINTR) {
        status_ = -1;
        return true;
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
  }

  std::string name_;
  pid_t pid_ = -1;
  int out_ = -1;  // Kept open until the end: the child must not get SIGPIPE for a line it prints.
  std::string buf_;
  std::optional<int> status_;
};

// A running `syncconfig serve`.
struct Server {
  ChildProcess* process = nullptr;
  std::string url;  // http://127.0.0.1:PORT
  int port = 0;
  double start_seconds = 0;  // From fork until its "listening on" line.
};

// Every child this run started; the destructor stops those still running (children are stopped
// before the cluster, which is declared first).
class Servers {
 public:
  Server start(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {SYNCCONFIG_BIN, "serve"});
    for (const char* a : {"--listen", "127.0.0.1:0", "--log-level", "warn"}) args.push_back(a);
    const Clock::time_point t0 = Clock::now();
    children_.push_back(std::make_unique<ChildProcess>(name, std::move(args)));
    Server s;
    s.process = children_.back().get();
    s.url = s.process->read_line("listening on ", 300s);
    s.start_seconds = seconds_since(t0);
    s.port = std::atoi(s.url.c_str() + s.url.rfind(':') + 1);
    if (s.url.rfind("http://", 0) != 0 || s.port <= 0) fail(name + ": bad URL " + s.url);
    return s;
  }
  // Stops it with SIGTERM; a non-zero exit status is an error.
  void stop(const Server& s) {
    if (int status = s.process->stop(); status != 0) {
      fail(s.process->name() + " exited with status " + std::to_string(status) + " after SIGTERM");
    }
  }
  void kill_all() {
    for (auto& c : children_) c->kill_now();
  }

 private:
  std::vector<std::unique_ptr<ChildProcess>> children_;
};

// ---- /proc, limits, raw HTTP --------------------------------------------------------------------

// A "Name:   123 kB" field of /proc/PID/status (kB for sizes); pid 0: this process.
long proc_status(pid_t pid, const std::string& field) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : "/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  fail("no " + field + " in /proc/" + std::to_string(pid) + "/status");
}

long open_fds() {
  long n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Resets this process's peak RSS (VmHWM) to the current RSS; false if the kernel refuses.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

// The soft RLIMIT_NOFILE raised to the hard limit (figure 3 holds a socket per RemoteStore).
rlim_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) fail_errno("getrlimit(RLIMIT_NOFILE)");
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) fail_errno("setrlimit(RLIMIT_NOFILE)");
  return lim.rlim_cur;
}

// GET `target` on 127.0.0.1:port with a plain blocking socket (Connection: close), read to EOF:
// what the server and the transfer cost, without any client library. Returns the body;
// `first_byte_us` is set to the time from the request's send until the answer's first byte (the
// server builds the whole answer before it sends any of it).
std::string raw_get(int port, const std::string& target, double* first_byte_us) {
  const Clock::time_point t0 = Clock::now();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    fail_errno("connect");
  }
  const std::string req =
      "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  for (std::string_view rest = req; !rest.empty();) {
    ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      fail_errno("send");
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  std::string data;
  std::size_t used = 0;
  for (;;) {
    if (data.size() - used < (1 << 20))
      data.resize(std::max<std::size_t>(2 * data.size(), 4 << 20));
    ssize_t n = ::recv(fd, data.data() + used, data.size() - used, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      fail_errno("recv");
    }
    if (n == 0) break;
    if (used == 0) *first_byte_us = micros(Clock::now() - t0);
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  data.resize(used);
  const std::size_t head = data.find("\r\n\r\n");
  if (data.rfind("HTTP/1.1 200", 0) != 0 || head == std::string::npos) {
    fail("GET " + target + ": " + data.substr(0, 200));
  }
  return data.substr(head + 4);
}

// ---- Databases ----------------------------------------------------------------------------------

// `dsn` (embedded: .../postgres) with another database name.
std::string dsn_for(const std::string& dsn, const std::string& db) {
  return dsn.substr(0, dsn.rfind('/') + 1) + db;
}

std::string create_database(PgConn& admin, const std::string& dsn, const std::string& db) {
  admin.exec("DROP DATABASE IF EXISTS " + db);
  admin.exec("CREATE DATABASE " + db);
  return dsn_for(dsn, db);
}

// Client backends connected to database `db`.
int backends(PgConn& admin, const std::string& db) {
  return std::atoi(admin
                       .scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                               "' AND backend_type = 'client backend'")
                       .c_str());
}

// Creates serve's default table (sync_config) in the database of `dsn` with an untimed
// Store::open, then fills it with `n` rows through its triggers, before anything listens.
double fill_table(PgConn& admin, const std::string& dsn, int n) {
  syncconfig::Options o;
  o.enable_notification = false;
  syncconfig::Store::open(dsn, o).reset();
  PgConn conn(dsn);
  const Clock::time_point t0 = Clock::now();
  conn.exec(
      "INSERT INTO sync_config (key, value) SELECT 'k' || i, CASE WHEN i % 10 = 0 THEN "
      "jsonb_build_object('n', i, 'on', true) ELSE to_jsonb('v-' || lpad((i % 1000000)::text, 6, "
      "'0')) END FROM generate_series(1, " +
      std::to_string(n) + ") AS i");
  const double fill = seconds_since(t0);
  conn.exec("VACUUM ANALYZE sync_config");
  admin.exec("CHECKPOINT");
  return fill;
}

syncconfig::RemoteOptions patient_remote_options() {
  // Start-up at 1M keys is what is measured: no default bound should cut it short.
  syncconfig::RemoteOptions o;
  o.open_timeout = 300s;
  o.request_timeout = 300s;
  return o;
}

void wait_connected(const std::vector<syncconfig::RemoteStore*>& stores, std::chrono::seconds t) {
  const Clock::time_point deadline = Clock::now() + t;
  for (syncconfig::RemoteStore* s : stores) {
    while (!s->stats().connected) {
      if (Clock::now() > deadline) fail("a RemoteStore's /watch stream did not open in time");
      std::this_thread::sleep_for(1ms);
    }
  }
}

// bench::print_pair with this driver's column widths.
void print_remote_pair(const char* title, const Summary& a, const char* a_name, const Summary& b,
                       const char* b_name) {
  bench::print_pair(title, a, a_name, b, b_name, /*title_width=*/34, /*name_width=*/36);
}

Summary single(double v) { return Summary{v, v, v, v, 1}; }

// ---- 1. propagation -----------------------------------------------------------------------------

// Three paths, each with its own key, every receiver connected for the whole figure:
//   Store -> Store: table bench_prop; a writer Store (no listener: it only writes) and a reader
//     Store (its listener connection and dispatcher thread);
//   Store -> serve A -> RemoteStore: serve's table (sync_config); the writer Store (no listener),
//     serve A, a RemoteStore following A with prefix "hop1:" (A sends it nothing else);
//   Store -> serve A -> relay 1 -> relay 2 -> RemoteStore: the same writer and serve A; relay 1
//     is `serve --upstream A`, relay 2 `serve --upstream relay1`; a RemoteStore follows relay 2
//     with prefix "hop3:" (the relays carry every key, the last hop only its own).
// Each sample writes a new value and waits for that path's callback; then 1 ms passes, so that
// whatever a write started elsewhere (the relays carry the "hop1:" writes too) is over before the
// next sample. The order of the three paths rotates from sample to sample.
std::vector<Row> bench_propagation(Servers& servers, const std::string& dsn, const Config& cfg) {
  syncconfig::Options quiet;  // Writers: no listening connection.
  quiet.enable_notification = false;
  syncconfig::Options store_writer = quiet;
  store_writer.table_name = "bench_prop";
  store_writer.channel = "bench_prop_ch";
  syncconfig::Options store_reader;
  store_reader.table_name = "bench_prop";
  store_reader.channel = "bench_prop_ch";
  store_reader.pool_size = 1;
  auto ws = syncconfig::Store::open(dsn, store_writer);
  auto reader = syncconfig::Store::open(dsn, store_reader);
  auto writer = syncconfig::Store::open(dsn, quiet);  // Creates sync_config.

  const Server a = servers.start("serve A", {"--dsn", dsn});
  const Server relay1 = servers.start("relay 1", {"--upstream", a.url});
  const Server relay2 = servers.start("relay 2", {"--upstream", relay1.url});
  std::printf("1. serve A on %s (started in %.2f s); relay 1 %s -> A; relay 2 %s -> relay 1\n",
              a.url.c_str(), a.start_seconds, relay1.url.c_str(), relay2.url.c_str());
  syncconfig::RemoteOptions o1;
  o1.prefix = "hop1:";
  syncconfig::RemoteOptions o3;
  o3.prefix = "hop3:";
  auto r1 = syncconfig::RemoteStore::open({a.url}, o1);
  auto r3 = syncconfig::RemoteStore::open({relay2.url}, o3);
  wait_connected({r1.get(), r3.get()}, 30s);

  FanIn fs(1), f1(1), f3(1);
  // When the reader's progress passes the revision of a change it just delivered: serve's feed
  // releases a change to /watch only then (docs/protocol.md, "The watermark": after applying
  // notifications the listener sends a trivial query and waits for the answer), while a Store's
  // callback runs before that round trip.
  struct Settle {
    std::mutex mu;
    bool waiting = false;
    int64_t revision = 0;
    Clock::time_point change_at;
    std::vector<double> us;
  } settle;
  reader->subscribe(
      [&fs, &settle](const syncconfig::Change& c) {
        if (c.key != "prop") return;
        {
          std::lock_guard lock(settle.mu);
          settle.waiting = true;
          settle.revision = c.revision;
          settle.change_at = Clock::now();
        }
        fs.arrive(0);
      },
      [&settle](const syncconfig::Progress& p) {
        std::lock_guard lock(settle.mu);
        if (settle.waiting && p.revision >= settle.revision) {
          settle.waiting = false;
          settle.us.push_back(micros(Clock::now() - settle.change_at));
        }
      });
  r1->subscribe([&f1](const syncconfig::Change& c) {
    if (c.key == "hop1:prop") f1.arrive(0);
  });
  r3->subscribe([&f3](const syncconfig::Change& c) {
    if (c.key == "hop3:prop") f3.arrive(0);
  });

  std::vector<double> store_us, one_us, relay_us;
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    const nlohmann::json value = value_string(i);
    for (int k = 0; k < 3; ++k) {
      const int path = (i + k) % 3;
      FanIn& fan = path == 0 ? fs : path == 1 ? f1 : f3;
      syncconfig::Store& w = path == 0 ? *ws : *writer;
      const char* key = path == 0 ? "prop" : path == 1 ? "hop1:prop" : "hop3:prop";
      std::vector<double>& into = path == 0 ? store_us : path == 1 ? one_us : relay_us;
      fan.expect();
      const Clock::time_point t0 = Clock::now();
      w.set(key, value);
      const Clock::time_point t1 = fan.wait_last();
      if (i >= cfg.warmup) into.push_back(micros(t1 - t0));
      if (cfg.gap.count() > 0) std::this_thread::sleep_for(cfg.gap);
    }
  }

  // Diagnostic: a write through the server (PUT, one connection per request) vs Store::set, the
  // same key, alternating.
  std::vector<double> remote_set, store_set;
  for (int i = 0; i < cfg.write_samples + cfg.warmup / 2; ++i) {
    const Clock::time_point t0 = Clock::now();
    r1->set("hop1:w", value_string(2 * i));
    const Clock::time_point t1 = Clock::now();
    if (cfg.gap.count() > 0) std::this_thread::sleep_for(cfg.gap);
    const Clock::time_point t2 = Clock::now();
    writer->set("hop1:w", value_string(2 * i + 1));
    const Clock::time_point t3 = Clock::now();
    if (cfg.gap.count() > 0) std::this_thread::sleep_for(cfg.gap);
    if (i >= cfg.warmup / 2) {
      remote_set.push_back(micros(t1 - t0));
      store_set.push_back(micros(t3 - t2));
    }
  }
  Summary settled;
  {
    std::lock_guard lock(settle.mu);
    settled = summarize(settle.us);
  }
  const syncconfig::Stats s1 = r1->stats();
  const syncconfig::Stats s3 = r3->stats();
  r1->shutdown();
  r3->shutdown();
  reader->shutdown();
  servers.stop(relay2);
  servers.stop(relay1);
  servers.stop(a);

  Row one{"propagation -> RemoteStore, 1 server vs Store", summarize(one_us), summarize(store_us)};
  one.target = "p50 <= 2x";
  one.met = bench::met_text(one.mine.p50 <= 2 * one.base.p50);
  Row relays{"  via 2 relays (3 servers) vs Store", summarize(relay_us), one.base};
  Row per_hop{"  via 2 relays vs via 1 server", relays.mine, one.mine};
  Row writes{"  RemoteStore::set (PUT) vs Store::set", summarize(remote_set), summarize(store_set)};
  print_remote_pair("1. propagation", one.mine, "Store.set -> RemoteStore (1 server)", one.base,
                    "Store.set -> Store callback");
  print_remote_pair("", relays.mine, "Store.set -> RemoteStore (2 relays)", one.base,
                    "Store.set -> Store callback");
  print_remote_pair("   RemoteStore::set", writes.mine, "RemoteStore::set (PUT via serve A)",
                    writes.base, "Store::set");
  std::printf(
      "   Store -> Store: the reader's progress passed the change p50 %.1f  p99 %.1f us after its "
      "callback (n=%zu; the round trip serve's /watch waits for)\n",
      settled.p50, settled.p99, settled.n);
  std::printf(
      "   RemoteStores' stats: via A reconnects %llu, resyncs %llu; via relays reconnects %llu, "
      "resyncs %llu\n",
      static_cast<unsigned long long>(s1.reconnects), static_cast<unsigned long long>(s1.resyncs),
      static_cast<unsigned long long>(s3.reconnects), static_cast<unsigned long long>(s3.resyncs));
  std::fflush(stdout);
  return {one, relays, per_hop, writes};
}

// ---- 2. start-up, and memory per key ----------------------------------------------------------

struct Table {
  std::string db;
  std::string dsn;
  int keys = 0;
};

Table make_table(PgConn& admin, const std::string& dsn, int n) {
  Table t;
  t.db = lower("bench_remote_" + count_label(n));
  t.dsn = create_database(admin, dsn, t.db);
  t.keys = n;
  const double fill = fill_table(admin, t.dsn, n);
  PgConn conn(t.dsn);
  const double text = std::atof(
      conn.scalar("SELECT sum(octet_length(key) + octet_length(value::text)) FROM sync_config")
          .c_str());
  std::printf(
      "fill: %s rows into %s.sync_config through its triggers (one INSERT ... SELECT): %.2f s; "
      "key + value text %.1f B per row\n",
      count_label(n).c_str(), t.db.c_str(), fill, text / n);
  std::fflush(stdout);
  return t;
}

// Memory of one RemoteStore vs one Store holding the table's keys: heap and RSS growth of this
// process from before open() until it has returned (free memory trimmed on both probes, so
// transients such as the response body do not count), and the peak RSS during open() when the
// kernel lets the peak be reset.
Row bench_memory(const Table& t, const Server& s) {
  auto measure = [&](auto open) {
    struct Out {
      double heap = 0, rss = 0, peak = -1;
    } out;
    const bench::MemoryProbe before = bench::probe_memory();
    const bool peak_ok = reset_peak_rss();
    auto store = open();
    const bench::MemoryProbe after = bench::probe_memory();
    if (peak_ok) out.peak = static_cast<double>(proc_status(0, "VmHWM")) * 1024 - before.rss_bytes;
    if (store->size() != static_cast<std::size_t>(t.keys)) fail("memory: keys missing");
    store->shutdown();
    out.heap = (after.heap_bytes - before.heap_bytes) / t.keys;
    out.rss = (after.rss_bytes - before.rss_bytes) / t.keys;
    return out;
  };
  const auto remote =
      measure([&] { return syncconfig::RemoteStore::open({s.url}, patient_remote_options()); });
  const auto store = measure([&] { return syncconfig::Store::open(t.dsn, syncconfig::Options{}); });
  const std::string n = count_label(t.keys);
  auto peak = [](double p) {
    return p < 0 ? std::string("n/a") : std::to_string(static_cast<long>(p / 1e6)) + " MB";
  };
  std::printf(
      "5. memory, %s keys: RemoteStore heap %.1f B/key, RSS %.1f B/key, peak RSS during open "
      "+%s; Store heap %.1f B/key, RSS %.1f B/key, peak RSS during open +%s\n",
      n.c_str(), remote.heap, remote.rss, peak(remote.peak).c_str(), store.heap, store.rss,
      peak(store.peak).c_str());
  std::fflush(stdout);
  Row row{"memory per key, " + n + " (heap): Remote vs Store", single(remote.heap),
          single(store.heap), Unit::kBytes};
  return row;
}

// RemoteStore::open through `s` vs Store::open on the same table, interleaved with a bare GET
// /settings on a raw socket (the server's part and the transfer) followed by
// nlohmann::json::parse of its body (the first step of the client's part); the order of the
// three rotates from round to round. One warm-up round.
std::vector<Row> bench_startup(const Table& t, const Server& s, int runs) {
  std::vector<double> remote, store, get, first_byte, parse;
  std::size_t body_bytes = 0;
  for (int i = 0; i < runs + 1; ++i) {
    double remote_us = 0, store_us = 0, get_us = 0, first_byte_us = 0, parse_us = 0;
    auto open_remote = [&] {
      const Clock::time_point t0 = Clock::now();
      auto r = syncconfig::RemoteStore::open({s.url}, patient_remote_options());
      remote_us = micros(Clock::now() - t0);
      if (r->size() != static_cast<std::size_t>(t.keys)) fail("start-up: keys missing (remote)");
    };
    auto open_store = [&] {
      const Clock::time_point t0 = Clock::now();
      auto r = syncconfig::Store::open(t.dsn, syncconfig::Options{});
      store_us = micros(Clock::now() - t0);
      if (r->size() != static_cast<std::size_t>(t.keys)) fail("start-up: keys missing (store)");
    };
    auto get_and_parse = [&] {
      const Clock::time_point g0 = Clock::now();
      std::string body = raw_get(s.port, "/settings", &first_byte_us);
      get_us = micros(Clock::now() - g0);
      body_bytes = body.size();
      const Clock::time_point p0 = Clock::now();
      nlohmann::json parsed = nlohmann::json::parse(body);
      parse_us = micros(Clock::now() - p0);
      if (parsed.size() != static_cast<std::size_t>(t.keys)) fail("start-up: GET /settings short");
    };
    const std::function<void()> steps[3] = {open_remote, open_store, get_and_parse};
    for (int k = 0; k < 3; ++k) steps[(i + k) % 3]();
    if (i > 0) {
      remote.push_back(remote_us);
      store.push_back(store_us);
      get.push_back(get_us);
      first_byte.push_back(first_byte_us);
      parse.push_back(parse_us);
    }
  }
  const std::string n = count_label(t.keys);
  Row open{"start-up, " + n + " keys: RemoteStore vs Store", summarize(remote), summarize(store)};
  Row server{"  GET /settings: until its first byte", summarize(first_byte), open.base};
  Row raw{"  GET /settings: whole body (raw socket)", summarize(get), open.base};
  Row json{"  json::parse of that body", summarize(parse), open.base};
  print_remote_pair(("2. start-up, " + n + " keys").c_str(), open.mine,
                    "RemoteStore::open (1 server)", open.base, "Store::open");
  print_remote_pair("", server.mine, "GET /settings, until the first byte", open.base,
                    "Store::open");
  print_remote_pair("", raw.mine, "GET /settings, whole body", open.base, "Store::open");
  print_remote_pair("", json.mine, "nlohmann::json::parse(body)", open.base, "Store::open");
  std::printf(
      "   body of GET /settings: %.1f MB (%.1f B per key); RemoteStore::open minus the bare GET "
      "(the client's part), p50: %.1f ms\n",
      body_bytes / 1e6, static_cast<double>(body_bytes) / t.keys,
      (open.mine.p50 - raw.mine.p50) / 1e3);
  std::fflush(stdout);
  return {open, server, raw, json};
}

// Printed, and one row: GET /settings builds the whole answer under the cache's read lock, so
// while a RemoteStore opens on a large table the server cannot apply a change. A RemoteStore that
// follows only the keys under "stall:" (so its own open is small) receives changes written by
// plain SQL (the triggers stamp and notify them), one every 10 ms: first with nothing else going
// on, then while another RemoteStore opens on the whole table.
Row diagnose_open_stall(const Table& t, const Server& s, int idle_samples) {
  PgConn writer(t.dsn);
  writer.prepare("upsert",
                 "INSERT INTO sync_config (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) "
                 "DO UPDATE SET value = EXCLUDED.value",
                 2);
  syncconfig::RemoteOptions o;
  o.prefix = "stall:";
  auto follower = syncconfig::RemoteStore::open({s.url}, o);
  wait_connected({follower.get()}, 30s);
  FanIn fan(1);
  follower->subscribe([&fan](const syncconfig::Change& c) {
    if (c.key == "stall:x") fan.arrive(0);
  });
  int seq = 0;
  auto sample = [&](std::vector<double>& into) {
    fan.expect();
    const Clock::time_point t0 = Clock::now();
    writer.exec_prepared("upsert", {"stall:x", std::to_string(seq++)});
    into.push_back(micros(fan.wait_last(60s) - t0));
    std::this_thread::sleep_for(10ms);
  };
  std::vector<double> idle, during;
  for (int i = 0; i < idle_samples; ++i) sample(idle);
  std::atomic<bool> done{false};
  double open_seconds = 0;
  std::thread opener([&] {
    const Clock::time_point t0 = Clock::now();
    try {
      auto r = syncconfig::RemoteStore::open({s.url}, patient_remote_options());
      // The table's keys and "stall:x".
      if (r->size() != static_cast<std::size_t>(t.keys) + 1) bench::die("stall: keys missing");
    } catch (const std::exception& e) {
      bench::die(std::string("stall: ") + e.what());
    }
    open_seconds = seconds_since(t0);
    done.store(true);
  });
  while (!done.load()) sample(during);
  opener.join();
  follower->shutdown();
  // The section that holds the lock, in this process: Store::snapshot() is what GET /settings
  // runs on the served store (src/http/http_server.cc), Cache::snapshot under its read lock.
  std::vector<double> snap;
  {
    auto store = syncconfig::Store::open(t.dsn, syncconfig::Options{});
    for (int i = 0; i < 2; ++i) {
      const Clock::time_point t0 = Clock::now();
      syncconfig::Snapshot all = store->snapshot();
      snap.push_back(micros(Clock::now() - t0));
      if (all.values.size() < static_cast<std::size_t>(t.keys)) fail("stall: snapshot short");
    }
  }
  const Summary a = summarize(during), b = summarize(idle);
  std::printf(
      "   Store::snapshot() of %s keys (what GET /settings runs, under the cache's read lock), "
      "2 runs: %.0f / %.0f ms\n",
      count_label(t.keys).c_str(), snap[0] / 1e3, snap[1] / 1e3);
  std::printf(
      "   plain-SQL write -> a RemoteStore's callback, every 10 ms: idle p50 %.1f max %.1f us "
      "(n=%zu); "
      "while another RemoteStore opened on all %s keys (%.2f s) p50 %.1f p99 %.1f max %.1f "
      "us "
      "(n=%zu)\n",
      b.p50, b.max, b.n, count_label(t.keys).c_str(), open_seconds, a.p50, a.p99, a.max, a.n);
  std::fflush(stdout);
  // p50 and max in the table's two cells.
  Row row{"  write->Remote during " + count_label(t.keys) + " open (p50/max)",
          Summary{a.p50, a.p90, a.max, a.max, a.n}, Summary{b.p50, b.p90, b.max, b.max, b.n}};
  return row;
}

// ---- 3. connections of a fleet --------------------------------------------------------------

std::vector<Row> bench_connections(Servers& servers, PgConn& admin, const std::string& dsn,
                                   const Config& cfg) {
  const std::string db = "bench_remote_fleet";
  const std::string fleet_dsn = create_database(admin, dsn, db);
  syncconfig::Options quiet;
  quiet.enable_notification = false;
  auto writer = syncconfig::Store::open(fleet_dsn, quiet);  // Creates sync_config.
  for (int k = 0; k < 100; ++k) writer->set("fleet:" + std::to_string(k), value_string(k));
  writer->shutdown();  // Closes its connections: counted again below.
  writer.reset();

  // A closed connection's backend exits a moment later.
  int before = backends(admin, db);
  for (const Clock::time_point t0 = Clock::now(); before > 0 && Clock::now() - t0 < 5s;) {
    std::this_thread::sleep_for(20ms);
    before = backends(admin, db);
  }
  const Server c = servers.start("serve C", {"--dsn", fleet_dsn});
  const Server d = servers.start("serve D", {"--dsn", fleet_dsn});
  // One write through each server, so that each has opened the pooled connection it writes on.
  for (const Server* s : {&c, &d}) {
    auto r = syncconfig::RemoteStore::open({s->url});
    r->set("fleet:warm", s->port);
  }
  std::this_thread::sleep_for(200ms);
  const int with_servers = backends(admin, db);

  const bench::MemoryProbe m0 = bench::probe_memory();
  const long fds0 = open_fds();
  const long threads0 = proc_status(0, "Threads");
  const long c_rss0 = proc_status(c.process->pid(), "VmRSS");
  const long d_rss0 = proc_status(d.process->pid(), "VmRSS");
  const int n = cfg.stores;
  FanIn fan(static_cast<std::size_t>(n));
  std::vector<std::unique_ptr<syncconfig::RemoteStore>> fleet;
  fleet.reserve(n);
  const Clock::time_point o0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    // Both URLs, in alternating order (failover lists as a fleet is configured): half follow C.
    std::vector<std::string> urls =
        i % 2 == 0 ? std::vector{c.url, d.url} : std::vector{d.url, c.url};
    fleet.push_back(syncconfig::RemoteStore::open(std::move(urls)));
    fleet.back()->subscribe([&fan, i](const syncconfig::Change& ch) {
      if (ch.key == "fleet:round") fan.arrive(static_cast<std::size_t>(i));
    });
  }
  const double open_seconds = seconds_since(o0);
  std::vector<syncconfig::RemoteStore*> all;
  for (auto& r : fleet) all.push_back(r.get());
  wait_connected(all, 120s);
  const double connected_seconds = seconds_since(o0);
  const int with_fleet = backends(admin, db);

  // set -> last of n callbacks, through both servers.
  writer = syncconfig::Store::open(fleet_dsn, quiet);
  std::vector<double> last;
  for (int r = 0; r < cfg.fleet_rounds + 1; ++r) {
    fan.expect();
    const Clock::time_point t0 = Clock::now();
    writer->set("fleet:round", r);
    const Clock::time_point t1 = fan.wait_last(60s);
    if (r > 0) last.push_back(micros(t1 - t0));
    std::this_thread::sleep_for(5ms);
  }
  writer->shutdown();
  writer.reset();
  std::this_thread::sleep_for(200ms);
  const int after_writes = backends(admin, db);
  const bench::MemoryProbe m1 = bench::probe_memory();
  const long fds1 = open_fds();
  const long threads1 = proc_status(0, "Threads");
  const long c_rss1 = proc_status(c.process->pid(), "VmRSS");
  const long d_rss1 = proc_status(d.process->pid(), "VmRSS");
  // What the servers' backends ran last (a pooled connection shows the read it was opened for).
  const std::vector<std::string> last_queries = admin.column(
      "SELECT count(*) || ' x ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM "
      "pg_stat_activity WHERE datname = '" +
      db + "' AND backend_type = 'client backend' GROUP BY query ORDER BY 1 DESC");
  std::size_t on_c = 0;
  for (auto& r : fleet) on_c += r->current_server() == c.url ? 1 : 0;
  const std::vector<std::string> by_state =
      admin.column("SELECT state || ' x' || count(*) FROM pg_stat_activity WHERE datname = '" + db +
                   "' AND backend_type = 'client backend' GROUP BY state ORDER BY state");

  const Clock::time_point s0 = Clock::now();
  for (auto& r : fleet) r->shutdown();
  const double shutdown_seconds = seconds_since(s0);
  fleet.clear();
  const int fleet_gone = backends(admin, db);
  servers.stop(c);
  servers.stop(d);

  std::printf(
      "3. %d RemoteStores through serve C and serve D (%zu following C): PostgreSQL client "
      "backends of %s: before the servers %d, with the servers %d, with the RemoteStores open %d, "
      "after %d writes %d, RemoteStores shut down %d\n",
      n, on_c, db.c_str(), before, with_servers, with_fleet, cfg.fleet_rounds + 1, after_writes,
      fleet_gone);
  std::string states;
  for (const std::string& s : by_state) states += (states.empty() ? "" : ", ") + s;
  std::printf("   the servers' backends by state: %s; by last statement:\n", states.c_str());
  for (const std::string& q : last_queries) std::printf("     %s\n", q.c_str());
  std::printf(
      "   opened in %.2f s (%.2f ms each, sequential), every /watch stream open after %.2f s; "
      "shut down in %.2f s\n",
      open_seconds, open_seconds * 1e3 / n, connected_seconds, shutdown_seconds);
  std::printf(
      "   this process per RemoteStore (100 small keys each): heap %+.0f B, RSS %+.0f B, "
      "descriptors %+.2f, threads %+.2f\n",
      (m1.heap_bytes - m0.heap_bytes) / n, (m1.rss_bytes - m0.rss_bytes) / n,
      static_cast<double>(fds1 - fds0) / n, static_cast<double>(threads1 - threads0) / n);
  std::printf("   serve VmRSS per stream: C %+.0f B, D %+.0f B\n",
              static_cast<double>(c_rss1 - c_rss0) * 1024 / std::max<std::size_t>(on_c, 1),
              static_cast<double>(d_rss1 - d_rss0) * 1024 /
                  std::max<std::size_t>(static_cast<std::size_t>(n) - on_c, 1));
  const Summary fanout = summarize(last);
  std::printf("   set -> last of %d callbacks (%d rounds): p50 %.1f  p99 %.1f  max %.1f us\n", n,
              cfg.fleet_rounds, fanout.p50, fanout.p99, fanout.max);
  std::fflush(stdout);

  const std::string label = count_label(n);
  Row conns{"PG backends: " + label + " RemoteStores vs servers",
            single(std::max(with_fleet, after_writes) - before), single(with_servers - before),
            Unit::kCount};
  // Each server holds at most its listener and its write pool, whatever its clients do.
  const int cap = 2 * (1 + static_cast<int>(syncconfig::Options{}.pool_size));
  conns.target = "servers' own: <= 2 x (1 + pool " + std::to_string(cap / 2 - 1) + ")";
  conns.met = bench::met_text(std::max(with_fleet, after_writes) - before <= cap);
  Row fan_row{"  set -> last of " + label + " RemoteStores", fanout, Summary{}};
  fan_row.target = "(shown)";
  return {conns, fan_row};
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  ::signal(SIGPIPE, SIG_IGN);
  Config cfg;
  const char* smoke_env = std::getenv("BENCH_SMOKE");
  bool smoke = smoke_env != nullptr && std::string_view(smoke_env) == "1";
  int samples = 0;
  int stores = 0;
  int runs = 0;
  int gap_us = -1;
  std::string only;
  const std::vector<std::string> figures = {"propagation", "startup", "memory", "connections"};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--smoke") {
      smoke = true;
    } else if (a == "--fsync") {
      cfg.fsync = true;
    } else if (a == "--samples" && i + 1 < argc) {
      samples = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--gap-us" && i + 1 < argc) {
      gap_us = std::max(0, std::atoi(argv[++i]));
    } else if (a == "--startup-runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--stores" && i + 1 < argc) {
      stores = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--only" && i + 1 < argc &&
               std::find(figures.begin(), figures.end(), argv[i + 1]) != figures.end()) {
      only = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--samples N] [--gap-us U] [--stores N] [--startup-runs N] [--fsync] "
                   "[--smoke] "
                   "[--only propagation|startup|memory|connections]\n",
                   argv[0]);
      return 2;
    }
  }
  const bool fsync = cfg.fsync;
  if (smoke) cfg.smoke();
  cfg.fsync = fsync;
  if (samples > 0) cfg.samples = samples;
  if (stores > 0) cfg.stores = stores;
  if (runs > 0) cfg.startup_runs = cfg.startup_runs_large = runs;
  if (gap_us >= 0) cfg.gap = std::chrono::microseconds(gap_us);
  auto want = [&](const char* name) { return only.empty() || only == name; };

  try {
    const rlim_t fd_limit = raise_fd_limit();
    // Figure 3: each RemoteStore holds 4 descriptors (its stream's socket, its io_context's
    // epoll, eventfd and timerfd), more while it makes a request.
    if (want("connections") && fd_limit < 6 * static_cast<rlim_t>(cfg.stores) + 256) {
      fail("the open files limit is " + std::to_string(fd_limit) + " and " +
           std::to_string(cfg.stores) + " RemoteStores need about " +
           std::to_string(6 * cfg.stores + 256) + ": raise it (ulimit -n) or pass --stores");
    }
    syncconfig::EmbeddedPostgresOptions pg_options;
    if (cfg.fsync) pg_options.settings["fsync"] = "on";
    syncconfig::EmbeddedPostgres pg(pg_options);
    pg.start();
    const std::string dsn = pg.dsn();
    Servers servers;  // Declared after the cluster: stopped before it.
    // On die() (FanIn's timeout) no destructor runs: stop what would outlive the process, and
    // remove the cluster's temporary directory as ~EmbeddedPostgres would. The children also
    // have PR_SET_PDEATHSIG.
    bench::DieCleanup cleanup([&] {
      servers.kill_all();
      try {
        pg.stop();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: stopping PostgreSQL: %s\n", e.what());
      }
      std::error_code ec;
      std::filesystem::remove_all(pg.data_dir(), ec);
    });
    PgConn admin(dsn);
    std::printf(
        "PostgreSQL %s (embedded, temporary cluster; fsync=%s, synchronous_commit=%s)%s; %d "
        "samples per propagation path, %d warm-up; %d RemoteStores; open files limit %llu\n\n",
        admin.scalar("SHOW server_version").c_str(), admin.scalar("SHOW fsync").c_str(),
        admin.scalar("SHOW synchronous_commit").c_str(),
        smoke ? " SMOKE RUN (tiny sizes, the numbers mean nothing)" : "", cfg.samples, cfg.warmup,
        cfg.stores, static_cast<unsigned long long>(fd_limit));
    std::fflush(stdout);

    std::vector<Row> rows;
    auto add = [&rows](std::vector<Row> more) {
      for (Row& r : more) rows.push_back(std::move(r));
    };
    if (want("propagation")) add(bench_propagation(servers, dsn, cfg));
    std::optional<Row> memory;
    if (want("startup") || want("memory")) {
      for (int n : {cfg.mid_keys, cfg.large_keys}) {
        const bool large = n == cfg.large_keys;
        if (!want("startup") && !large) continue;
        const Table t = make_table(admin, dsn, n);
        const Server s = servers.start("serve " + count_label(n), {"--dsn", t.dsn});
        std::printf("   serve on %s: listening %.2f s after it was started; VmRSS %.1f MB\n",
                    t.db.c_str(), s.start_seconds,
                    static_cast<double>(proc_status(s.process->pid(), "VmRSS")) / 1024);
        // Memory first, on a heap that has not yet held a million entries.
        if (large && want("memory")) memory = bench_memory(t, s);
        if (want("startup")) {
          add(bench_startup(t, s, large ? cfg.startup_runs_large : cfg.startup_runs));
          if (large) rows.push_back(diagnose_open_stall(t, s, cfg.stall_samples));
        }
        std::printf("   serve on %s after the rounds: VmRSS %.1f MB, peak (VmHWM) %.1f MB\n",
                    t.db.c_str(),
                    static_cast<double>(proc_status(s.process->pid(), "VmRSS")) / 1024,
                    static_cast<double>(proc_status(s.process->pid(), "VmHWM")) / 1024);
        servers.stop(s);
        admin.exec("DROP DATABASE " + t.db);
      }
    }
    if (want("connections")) add(bench_connections(servers, admin, dsn, cfg));
    if (memory) rows.push_back(*memory);
    bench::print_table(rows);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
