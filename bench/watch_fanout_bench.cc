// syncconfig_watch_fanout: N `/watch` streams on one `syncconfig serve` (the fleet-scale
// figure; N = 10,000 by default), measured from outside the server as a fleet would see it.
//
// The real `syncconfig serve` program runs as a child process on an embedded PostgreSQL; this
// process opens the streams, writes through a syncconfig::Store of its own on the table serve
// uses (serve's defaults: sync_config, channel config_changes), and times the events' arrival.
// Figures, p50 / p99 over R rounds:
//
//   1. memory per idle stream: serve's VmRSS after opening N streams minus before, / N (with the
//      kernel's socket memory next to it: whole machine, both ends of each connection)
//   2. set() -> the round's event received on the last (and first, and median) of the N streams
//   3. baseline: a minimal fan-out written here (one thread writing the same number of bytes to
//      N accepted sockets in a plain loop), trigger -> received on the last stream, read by the
//      same client. Judged: figure 2's p99 <= 50 ms, and figure 2 / figure 3 <= 1.5x (p50 and
//      p99). Also figure 2 next to the fan-out plus a raw libpq upsert + NOTIFY round trip (the
//      least any set -> stream path pays), summed round by round.
//   4. GET /settings/{key} on one keep-alive connection with the N streams open vs none open.
//
// Rounds alternate serve / fan-out / raw NOTIFY, 5 ms apart, so that every side sees the same
// machine noise, when this process may hold both sets of streams at once (2N + 64 descriptors).
// Otherwise (N = 10,000 under a hard RLIMIT_NOFILE of 20,000, as on the benchmark machine, where
// root lacks CAP_SYS_RESOURCE) serve's rounds run first (alternating with the raw NOTIFY ones),
// then its streams are closed and the fan-out's rounds run; --sequential forces that order.
//
// The client (WatchClient) is one thread with one level-triggered epoll set over every stream's
// non-blocking socket: a stream with an event to read costs one recv() into a 64 KiB buffer
// shared by all streams, plus its share of one epoll_wait per up to 1024 ready sockets, plus a
// parse that touches each byte once (chunked framing and SSE lines by a per-stream state machine
// that only recognises `event: change` and the number after "round": in its data; a data line
// that is whole in the buffer is searched at once). No allocation per event; 72 bytes of state
// per stream. Measured on the fan-out at N = 10,000 on this 2-vCPU KVM guest (others' builds
// running): 4.1-4.7 us of client CPU per event, under 0.7 us of it in user space (the parse); the
// rest is the kernel's recv, epoll re-polling each ready socket, and the thread going to sleep
// and being woken whenever it has caught up with the sender (a short busy-poll before sleeping
// was tried: the client cost more, the rounds were no faster). The fan-out server spends 4.8-6.3
// us per write (a loopback send also runs the receiving side's TCP input), so the server, not the
// client, is the longer of the two, and they run on different cores. The run prints the
// client's CPU time per round next to the round's latency (print_client_cost), so a run where the
// client was the bottleneck shows it. The baseline goes through the same client, so what the client
// costs is in both sides of the ratio.
//
// Event values carry a round number ({"pad": "...", "round": 100017}) and the client matches on
// it, not on event ids, so it works with today's server (ids are its own sequence numbers) and
// the new one (ids are revisions). Rounds start at 100000 so that every event has the same size.
//
// Usage: syncconfig_watch_fanout [--streams N] [--rounds R] [--smoke] [--baseline-only] [--fsync]
//                                [--sequential]
//   N: --streams, else $BENCH_WATCH_STREAMS, else 10000 (100 with --smoke or BENCH_SMOKE=1).
//   --smoke: few rounds and requests (checks that the benchmark works; its numbers mean nothing).
//   --baseline-only: only the fan-out through the client (no PostgreSQL, no serve), to check the
//   client at a size the server under test cannot take yet.
// Fails (exit 1) on errors only, never on timings. The fan-out server is this program run again
// as a child (--fanout-server N, internal; see run_fanout_server).
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/syncconfig.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
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
using bench::micros;
using bench::Row;
using bench::summarize;
using bench::Summary;
using bench::Unit;
using namespace std::chrono_literals;

struct Config {
  int streams = 10000;
  int rounds = 100;         // Measured rounds per side.
  int warmup = 5;           // Unrecorded rounds per side.
  int gets = 2000;          // Timed GET /settings/{key} requests per series.
  int get_warmup = 100;     // Untimed requests before each series.
  int pad = 100;            // Bytes of padding in each value (the event is ~2x that).
  int connect_batch = 256;  // Connects in flight while opening streams.
  bool fsync = false;       // Run the cluster with fsync=on (production's setting).

  void smoke() {
    streams = 100;
    rounds = 10;
    warmup = 2;
    gets = 200;
    get_warmup = 20;
  }
};

constexpr int kFirstRound = 100000;  // Six digits for every round: events of constant size.
constexpr std::chrono::milliseconds kRoundGap = 5ms;
constexpr std::chrono::seconds kRoundTimeout = 30s;
constexpr const char* kWatchKey = "bench_watch";
constexpr const char* kGetKey = "bench_get";
constexpr const char* kRawChannel = "bench_watch_raw";

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void set_int_option(int fd, int level, int name, int value) {
  ::setsockopt(fd, level, name, &value, sizeof value);
}

void set_timeouts(int fd, std::chrono::seconds t) {
  timeval tv{static_cast<time_t>(t.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Writes all of `data` to a blocking socket.
void send_all(int fd, std::string_view data, const char* what) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno(what);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The value of header `name` (lowercase, without the colon) in a lowercased header block.
std::optional<std::string> header_value(const std::string& lower_head, const std::string& name) {
  std::size_t at = lower_head.find("\r\n" + name + ":");
  if (at == std::string::npos) return std::nullopt;
  at += name.size() + 3;
  std::size_t end = lower_head.find("\r\n", at);
  std::string v = lower_head.substr(at, end - at);
  while (!v.empty() && v.front() == ' ') v.erase(0, 1);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

clockid_t thread_cpu_clock(std::thread& t) {
  clockid_t c;
  if (int rc = ::pthread_getcpuclockid(t.native_handle(), &c); rc != 0) {
    fail(std::string("pthread_getcpuclockid: ") + std::strerror(rc));
  }
  return c;
}

// ---- Resource limits and /proc ------------------------------------------------------------------

// Raises RLIMIT_NOFILE's soft limit to the hard one and, as root, tries to raise the hard one to
// `wanted` (within fs.nr_open; needs CAP_SYS_RESOURCE). Children inherit the result.
struct FdLimit {
  rlim_t soft = 0;
  std::string note;  // Why the hard limit stayed below `wanted`, or "".
};
FdLimit raise_fd_limit(rlim_t wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) fail_errno("getrlimit(RLIMIT_NOFILE)");
  FdLimit result;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < wanted) {
    rlim_t cap = wanted;
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    if (unsigned long long v = 0; nr_open >> v) cap = std::min<rlim_t>(cap, v);
    rlimit more{cap, cap};
    if (::geteuid() != 0) {
      result.note = fmt::format(" (hard limit {}; only root may raise it)", lim.rlim_max);
    } else if (::setrlimit(RLIMIT_NOFILE, &more) == 0) {
      lim = more;
    } else {
      result.note = fmt::format(" (hard limit {}: raising it to {} failed: {})", lim.rlim_max, cap,
                                std::strerror(errno));
    }
  }
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) fail_errno("setrlimit(RLIMIT_NOFILE)");
  result.soft = lim.rlim_cur;
  return result;
}

// A "Name:   123 kB" field of /proc/PID/status, as a number (kB for sizes).
long proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  fail("no " + field + " in /proc/" + std::to_string(pid) + "/status");
}

// utime + stime of a process, in seconds (clock ticks: 10 ms resolution).
double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t paren = text.rfind(')');
  if (paren == std::string::npos) fail("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(text.substr(paren + 2));  // From field 3 (state) on.
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::atof(f.c_str());
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Kernel memory of sockets, machine-wide: what can be had cheaply. Buffers from
// /proc/net/sockstat ("TCP: ... mem PAGES"), socket objects from /proc/slabinfo (root only): the
// TCP and sock_inode_cache slabs, active objects x object size.
struct KernelSockets {
  double buffer_bytes = 0;
  double object_bytes = -1;  // -1: /proc/slabinfo not readable.
};
KernelSockets kernel_sockets() {
  KernelSockets k;
  std::ifstream sockstat("/proc/net/sockstat");
  for (std::string line; std::getline(sockstat, line);) {
    if (line.rfind("TCP:", 0) != 0) continue;
    std::size_t at = line.find(" mem ");
    if (at != std::string::npos) {
      k.buffer_bytes = std::atof(line.c_str() + at + 5) * static_cast<double>(::getpagesize());
    }
  }
  std::ifstream slab("/proc/slabinfo");
  if (!slab) return k;
  k.object_bytes = 0;
  for (std::string line; std::getline(slab, line);) {
    std::istringstream s(line);
    std::string name;
    double active = 0, total = 0, size = 0;
    if (s >> name >> active >> total >> size && (name == "TCP" || name == "sock_inode_cache")) {
      k.object_bytes += active * size;
    }
  }
  return k;
}

// ---- Child processes ----------------------------------------------------------------------------

// A program run as a child process, its stdout (and, if asked, stdin) through pipes, its stderr
// ours. The destructor stops it (stdin closed, SIGTERM, SIGKILL after 30 s) and reaps it;
// PR_SET_PDEATHSIG kills it if this process dies without running destructors (die(), a crash, a
// signal). Started by fork + exec because PR_SET_PDEATHSIG must be set in the child.
class ChildProcess {
 public:
  ChildProcess(std::string name, std::vector<std::string> args, bool with_stdin)
      : name_(std::move(name)) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    int in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0) fail_errno("pipe2");
    if (with_stdin && ::pipe2(in, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      fail_errno("pipe2");
    }
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // The child of a process with threads: async-signal-safe calls only until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // The parent is already gone.
      ::dup2(out[1], STDOUT_FILENO);
      if (with_stdin) {
        ::dup2(in[0], STDIN_FILENO);
      } else if (int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); null_fd >= 0) {
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
    out_ = Fd(out[0]);
    if (with_stdin) {
      ::close(in[0]);
      in_ = Fd(in[1]);
    }
    if (pid_ < 0) {
      errno = fork_errno;
      fail_errno("fork for " + name_);
    }
  }
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  // The next stdout line starting with `prefix` (earlier lines are skipped), without the prefix.
  std::string read_line(const std::string& prefix, std::chrono::seconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      for (std::size_t nl; (nl = out_buf_.find('\n')) != std::string::npos;) {
        std::string line = out_buf_.substr(0, nl);
        out_buf_.erase(0, nl + 1);
        if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p{out_.get(), POLLIN, 0};
      int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        fail(fmt::format("{} printed no \"{}\" line within {} s", name_, prefix, timeout.count()));
      }
      char buf[4096];
      ssize_t n = ::read(out_.get(), buf, sizeof buf);
      if (n > 0) {
        out_buf_.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        wait_exit(10s);
        fail(fmt::format("{} exited (status {}) before printing \"{}\"; its stderr is above", name_,
                         exit_status_.value_or(-1), prefix));
      }
    }
  }

  void write_stdin(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(in_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_errno("writing to " + name_);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void close_stdin() { in_.reset(); }

  // The exit status once it has exited (128 + signal when killed), nullopt while it runs.
  std::optional<int> exit_status() {
    if (!exit_status_) wait_exit(0ms);
    return exit_status_;
  }

  // Closes stdin, sends SIGTERM, then SIGKILL if it has not exited within 30 s. Returns the exit
  // status; idempotent.
  int stop() {
    if (exit_status_) return *exit_status_;
    in_.reset();
    ::kill(pid_, SIGTERM);
    if (!wait_exit(30s)) {
      ::kill(pid_, SIGKILL);
      wait_exit(std::chrono::hours(1));
    }
    return *exit_status_;
  }
  // Waits up to `timeout` for it to exit by itself (after close_stdin()), then stop()s it.
  int finish(std::chrono::seconds timeout) {
    wait_exit(timeout);
    return stop();
  }
  // For die(): no waiting for a clean shutdown.
  void kill_now() {
    if (exit_status_) return;
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
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      }
      if (r < 0 && errno != EINTR) {
        exit_status_ = -1;
        return true;
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
  }

  std::string name_;
  pid_t pid_ = -1;
  Fd out_;  // Kept open until the end: the child must not get SIGPIPE for a line it prints.
  Fd in_;
  std::string out_buf_;
  std::optional<int> exit_status_;
};

// ---- The baseline fan-out -----------------------------------------------------------------------

const std::string kSseResponseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

std::string chunk(std::string_view data) {
  return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
}

nlohmann::json round_value(int round, int pad) {
  return {{"round", round}, {"pad", std::string(static_cast<std::size_t>(pad), 'x')}};
}

// The bytes today's server writes for a change of kWatchKey to round_value(round, pad): one
// chunk holding `id: SEQ\nevent: change\ndata: {"deleted","key","revision","value"}\n\n`, SEQ
// being a 16-digit number (its sequence starts at the start time in microseconds).
std::string change_chunk(int round, int pad) {
  nlohmann::json data = {{"key", kWatchKey},
                         {"value", round_value(round, pad)},
                         {"deleted", false},
                         {"revision", round}};
  return chunk(
      fmt::format("id: {}\nevent: change\ndata: {}\n\n", 1767225600000000LL + round, data.dump()));
}

// The pad that makes change_chunk() `wire_bytes` long (as close as the hex size field allows).
int pad_for_wire_bytes(std::size_t wire_bytes, int pad) {
  for (int i = 0; i < 4; ++i) {
    const long diff =
        static_cast<long>(wire_bytes) - static_cast<long>(change_chunk(kFirstRound, pad).size());
    if (diff == 0) break;
    pad = std::max(0, pad + static_cast<int>(diff));
  }
  return pad;
}

// The baseline server, run as a child process (this program with --fanout-server N): it accepts
// N /watch requests, answers each with the SSE response head and a `ready` event, then for every
// message on stdin (a 4-byte length, then the bytes) writes those bytes to every socket in a plain
// loop, in accept order: the least a server can do to fan one event out. One thread, blocking
// sockets with TCP_NODELAY (as today's server sets). At EOF on stdin it prints "cpu SECONDS" (its
// CPU time in the write loops) and exits 0.
//
// A child rather than a thread of this process because of RLIMIT_NOFILE: at N = 10,000 the
// client's N sockets and the server's N do not fit under a hard limit of 20,000 in one process
// (this machine's, which root cannot raise: no CAP_SYS_RESOURCE). serve is a process of its own
// too, so both sides wake the same way: a process blocked in read() is woken by the trigger.
int run_fanout_server(int connections) {
  try {
    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (listener.get() < 0) fail_errno("socket");
    set_int_option(listener.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    sockaddr_in a = loopback(0);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      fail_errno("bind 127.0.0.1:0");
    }
    if (::listen(listener.get(), SOMAXCONN) != 0) fail_errno("listen");
    socklen_t len = sizeof a;
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len);
    std::printf("port %d\n", ntohs(a.sin_port));
    std::fflush(stdout);

    const std::string opening = kSseResponseHead + chunk("id: 0\nevent: ready\ndata: {}\n\n");
    std::vector<Fd> sockets;
    sockets.reserve(static_cast<std::size_t>(connections));
    std::string request;
    while (static_cast<int>(sockets.size()) < connections) {
      pollfd p[2] = {{listener.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        fail_errno("poll");
      }
      if (p[1].revents != 0) return 0;  // Stopped (stdin closed) before every stream came.
      Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd.get() < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
        fail_errno("accept after " + std::to_string(sockets.size()) + " connections");
      }
      set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
      set_timeouts(fd.get(), 10s);
      request.clear();
      while (request.find("\r\n\r\n") == std::string::npos) {
        char buf[1024];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno("reading a request");
        if (n == 0) fail("a client closed its connection before sending a request");
        request.append(buf, static_cast<std::size_t>(n));
      }
      send_all(fd.get(), opening, "writing the response head");
      sockets.push_back(std::move(fd));
    }

    auto read_exact = [](char* to, std::size_t n) {
      while (n > 0) {
        ssize_t r = ::read(STDIN_FILENO, to, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail_errno("reading stdin");
        if (r == 0) return false;
        to += r;
        n -= static_cast<std::size_t>(r);
      }
      return true;
    };
    double cpu = 0;
    std::string bytes;
    for (uint32_t size = 0; read_exact(reinterpret_cast<char*>(&size), sizeof size);) {
      bytes.resize(size);
      if (!read_exact(bytes.data(), size)) break;
      const double cpu0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
      for (const Fd& fd : sockets) send_all(fd.get(), bytes, "fan-out write");
      cpu += cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    }
    std::printf("cpu %.9f\n", cpu);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: fan-out server: %s\n", e.what());
    return 1;
  }
}

// The parent's side of the fan-out server.
class FanoutServer {
 public:
  explicit FanoutServer(int connections)
      : child_("the fan-out server",
               {std::filesystem::read_symlink("/proc/self/exe").string(), "--fanout-server",
                std::to_string(connections)},
               true),
        port_(std::atoi(child_.read_line("port ", 10s).c_str())) {}

  int port() const { return port_; }

  // Hands `bytes` to the server, which writes them to every socket. Returns at once.
  void trigger(std::string_view bytes) {
    std::string message(sizeof(uint32_t), '\0');
    const auto size = static_cast<uint32_t>(bytes.size());
    std::memcpy(message.data(), &size, sizeof size);
    message.append(bytes);
    child_.write_stdin(message);
  }
  // A description of the server's state for an error message ("" while it runs).
  std::string failure() {
    std::optional<int> status = child_.exit_status();
    return status ? fmt::format("the fan-out server exited with status {}", *status) : "";
  }
  // Ends the server; returns its CPU time in the write loops, in seconds.
  double finish() {
    child_.close_stdin();
    const double cpu = std::atof(child_.read_line("cpu ", 30s).c_str());
    if (int status = child_.finish(10s); status != 0) {
      fail("the fan-out server exited with status " + std::to_string(status));
    }
    return cpu;
  }

 private:
  ChildProcess child_;
  int port_;
};

// ---- The client ---------------------------------------------------------------------------------

struct RoundTimes {
  Clock::time_point first;   // The round's event read on the first stream ...
  Clock::time_point median;  // ... on the ceil(N/2)-th ...
  Clock::time_point last;    // ... and on the last.
};

// N /watch streams per group (0: serve, 1: the fan-out baseline), all read by one thread through
// one epoll set; see the comment at the top of the file. Controller methods (open, close_group,
// expect, wait_round, ...) may be called from one other thread; they run their part on the client
// thread and wait for it. Any error (a refused or ended stream, a malformed response, an event out
// of order) stops the client: every waiting or later call throws it.
class WatchClient {
 public:
  static constexpr int kGroups = 2;

  WatchClient() : buffer_(64 * 1024) {
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    if (epoll_.get() < 0) fail_errno("epoll_create1");
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (wake_.get() < 0) fail_errno("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) fail_errno("epoll_ctl");
    thread_ = std::thread([this] { run(); });
  }
  ~WatchClient() {
    stop_.store(true);
    wake();
    thread_.join();
    for (Stream& s : streams_) {
      if (s.fd >= 0) ::close(s.fd);
    }
  }
  WatchClient(const WatchClient&) = delete;
  WatchClient& operator=(const WatchClient&) = delete;

  // Opens n streams of `group` to 127.0.0.1:port (GET /watch, no since), at most `batch` connects
  // in flight, and returns once every one has received its first event (ready or reset).
  void open(int group, int port, int n, int batch, std::chrono::seconds timeout) {
    {
      std::lock_guard lock(mu_);
      open_done_ = false;
    }
    call([=, this] { begin_open(group, port, n, batch); });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return open_done_ || exited_; })) {
      fail(
          fmt::format("only {} of {} /watch streams to 127.0.0.1:{} had their first event within "
                      "{} s",
                      open_ready_.load(), n, port, timeout.count()));
    }
    if (exited_) fail(error_);
  }

  // Closes every stream of `group` (the client side closes first).
  void close_group(int group) {
    call([=, this] {
      for (uint32_t i : groups_[group].members) {
        ::close(streams_[i].fd);
        streams_[i].fd = -1;
      }
      groups_[group].members.clear();
      if (opening_.group == group) opening_.group = -1;
    });
  }

  // The round every stream of `group` must receive next; call before triggering it.
  void expect(int group, int round) {
    {
      std::lock_guard lock(mu_);
      round_done_ = false;
    }
    call([=, this] {
      expect_group_ = group;
      expect_round_ = round;
      target_ = static_cast<int>(groups_[group].members.size());
      median_rank_ = (target_ + 1) / 2;
      count_.store(0);
    });
  }

  // Waits until every stream of the expected group has received the expected round.
  RoundTimes wait_round() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kRoundTimeout, [&] { return round_done_ || exited_; })) {
      fail(fmt::format("only {} of {} streams received round {} within {} s", count_.load(),
                       target_, expect_round_.load(), kRoundTimeout.count()));
    }
    if (exited_) fail(error_);
    return result_;
  }

  // Bytes received so far on the first stream of `group`, framing included.
  uint64_t first_stream_bytes(int group) {
    uint64_t bytes = 0;
    call([&] { bytes = streams_.at(groups_[group].members.at(0)).bytes; });
    return bytes;
  }
  // `change` events that carried no round (another key changed): ignored, counted.
  uint64_t other_changes() const { return other_changes_.load(); }

  clockid_t cpu_clock() { return thread_cpu_clock(thread_); }
  static constexpr std::size_t state_bytes_per_stream() { return sizeof(Stream); }

 private:
  static constexpr uint64_t kWakeTag = ~uint64_t{0};
  static constexpr int kMaxEvents = 1024;
  static constexpr std::string_view kRoundKey = "\"round\":";

  enum class Phase : uint8_t { kConnecting, kSending, kHeaders, kRejected, kBody };
  enum class ChunkState : uint8_t { kSize, kSizeRest, kData, kDataEnd };
  enum class Line : uint8_t { kHead, kData, kSkip };
  enum class Event : uint8_t { kNone, kChange, kReady, kReset, kOther };

  // One stream's state: the connection's phase, the chunked decoder, the SSE line parser.
  struct Stream {
    int fd = -1;
    uint8_t group = 0;
    Phase phase = Phase::kConnecting;
    ChunkState chunk = ChunkState::kSize;
    Line line = Line::kHead;
    Event event = Event::kNone;
    uint8_t head_len = 0;     // Bytes of the current line kept in head (up to its size).
    uint8_t matched = 0;      // Bytes of kRoundKey matched on the current data line.
    bool in_number = false;   // Reading the digits after kRoundKey.
    bool ready = false;       // First event received.
    uint16_t sent = 0;        // Request bytes sent.
    uint32_t chunk_left = 0;  // Size of the chunk being read (and its size field as it is read).
    int32_t number = 0;
    int32_t round = -1;       // The current event's round, -1 until its data has one.
    int32_t last_round = -1;  // The last round delivered.
    uint64_t bytes = 0;
    char head[24];  // The start of the current line: "event: change", "data:", "id: ...".
    std::unique_ptr<std::string> response;  // The response head, while it is being read.
  };

  struct Group {
    std::vector<uint32_t> members;  // Indexes into streams_.
    std::string request;
    sockaddr_in address{};
  };

  struct Opening {
    int group = -1;  // -1: not opening.
    int target = 0;
    int started = 0;
    int in_flight = 0;  // Connected or connecting, no first event yet.
    int ready = 0;
    int batch = 0;
  };

  struct Command {
    std::function<void()> fn;
    std::shared_ptr<std::promise<void>> done;
  };

  // Runs fn on the client thread and waits for it; rethrows what it threw.
  void call(std::function<void()> fn) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> f = done->get_future();
    {
      std::lock_guard lock(mu_);
      if (exited_) fail(error_);
      commands_.push_back({std::move(fn), done});
    }
    wake();
    f.get();
  }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  void run() {
    std::string error = "the watch client was stopped";
    try {
      loop();
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::deque<Command> pending;
    {
      std::lock_guard lock(mu_);
      exited_ = true;
      error_ = error;
      pending.swap(commands_);
    }
    for (Command& c : pending)
      c.done->set_exception(std::make_exception_ptr(std::runtime_error(error)));
    cv_.notify_all();
  }

  void loop() {
    std::vector<epoll_event> events(kMaxEvents);
    while (!stop_.load(std::memory_order_relaxed)) {
      int n = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_errno("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kWakeTag) {
          run_commands();
        } else {
          handle(streams_[events[i].data.u64]);
        }
      }
      if (opening_.group >= 0) top_up();
    }
  }

  void run_commands() {
    uint64_t count;
    [[maybe_unused]] ssize_t r = ::read(wake_.get(), &count, sizeof count);
    std::deque<Command> todo;
    {
      std::lock_guard lock(mu_);
      todo.swap(commands_);
    }
    for (Command& c : todo) {
      try {
        c.fn();
        c.done->set_value();
      } catch (const std::exception& e) {
        // A failed command ends the client; the other commands get the same error.
        for (Command& other : todo) {
          if (&other != &c) {
            other.done->set_exception(std::make_exception_ptr(std::runtime_error(e.what())));
          }
        }
        c.done->set_exception(std::current_exception());
        throw;
      }
    }
  }

  void begin_open(int group, int port, int n, int batch) {
    Group& g = groups_[group];
    if (!g.members.empty()) fail("a group of streams is already open");
    g.address = loopback(port);
    g.request = fmt::format(
        "GET /watch HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n", port);
    streams_.reserve(streams_.size() + static_cast<std::size_t>(n));
    opening_ = Opening{group, n, 0, 0, 0, batch};
    open_ready_.store(0);
    top_up();
  }

  void top_up() {
    while (opening_.in_flight < opening_.batch && opening_.started < opening_.target) connect_one();
  }

  void connect_one() {
    Group& g = groups_[opening_.group];
    const int k = opening_.started + 1;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fail_errno(fmt::format("socket for /watch stream {} of {} (open files limit: {})", k,
                             opening_.target, current_fd_limit()));
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&g.address), sizeof g.address) != 0 &&
        errno != EINPROGRESS) {
      int err = errno;
      ::close(fd);
      errno = err;
      fail_errno(fmt::format("connect for /watch stream {} of {} to 127.0.0.1:{}", k,
                             opening_.target, ntohs(g.address.sin_port)));
    }
    const auto index = static_cast<uint32_t>(streams_.size());
    Stream& s = streams_.emplace_back();
    s.fd = fd;
    s.group = static_cast<uint8_t>(opening_.group);
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = index;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) fail_errno("epoll_ctl ADD");
    g.members.push_back(index);
    ++opening_.started;
    ++opening_.in_flight;
  }

  static rlim_t current_fd_limit() {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    return lim.rlim_cur;
  }

  std::string describe(const Stream& s) const {
    return fmt::format("a /watch stream to 127.0.0.1:{} ({})",
                       ntohs(groups_[s.group].address.sin_port),
                       s.group == 0 ? "serve" : "fan-out baseline");
  }

  void handle(Stream& s) {
    if (s.fd < 0) return;  // Closed by a command earlier in this batch.
    switch (s.phase) {
      case Phase::kConnecting: {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) fail("connect of " + describe(s) + ": " + std::strerror(err));
        s.phase = Phase::kSending;
        send_request(s);
        return;
      }
      case Phase::kSending:
        send_request(s);
        return;
      default:
        receive(s);
    }
  }

  void send_request(Stream& s) {
    const std::string& request = groups_[s.group].request;
    while (s.sent < request.size()) {
      ssize_t n = ::send(s.fd, request.data() + s.sent, request.size() - s.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        fail_errno("sending the request of " + describe(s));
      }
      s.sent = static_cast<uint16_t>(s.sent + n);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(&s - streams_.data());
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, s.fd, &ev) != 0) fail_errno("epoll_ctl MOD");
    s.phase = Phase::kHeaders;
    s.response = std::make_unique<std::string>();
  }

  // One recv() per readiness (level-triggered): what is left is reported again by the next
  // epoll_wait, and a stream with one event to read costs one system call.
  void receive(Stream& s) {
    ssize_t n = ::recv(s.fd, buffer_.data(), buffer_.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      fail_errno("reading " + describe(s));
    }
    const Clock::time_point now = Clock::now();
    if (n == 0) {
      if (s.phase == Phase::kRejected) rejected(s);
      fail(fmt::format("{} was closed by the server after {} bytes{}", describe(s), s.bytes,
                       s.ready ? "" : ", before its first event"));
    }
    s.bytes += static_cast<uint64_t>(n);
    const char* p = buffer_.data();
    const char* end = p + n;
    if (s.phase == Phase::kHeaders || s.phase == Phase::kRejected) p = read_head(s, p, end);
    if (s.phase == Phase::kBody && p < end) parse_chunks(s, p, end, now);
  }

  // Collects the response head; returns where the body starts in [p, end).
  const char* read_head(Stream& s, const char* p, const char* end) {
    std::string& r = *s.response;
    const std::size_t old = r.size();
    r.append(p, end);
    if (s.phase == Phase::kRejected) {
      if (response_complete(r)) rejected(s);
      return end;
    }
    std::size_t at = r.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (at == std::string::npos) {
      if (r.size() > 64 * 1024) fail("the response head of " + describe(s) + " exceeds 64 KiB");
      return end;
    }
    const std::size_t head_end = at + 4;
    const char* body = end - (r.size() - head_end);
    const std::string lower = lowercase(r.substr(0, head_end));
    if (lower.rfind("http/1.1 200 ", 0) != 0 && lower.rfind("http/1.0 200 ", 0) != 0) {
      s.phase = Phase::kRejected;
      if (response_complete(r)) rejected(s);
      return end;
    }
    if (header_value(lower, "transfer-encoding") != "chunked") {
      fail("the response of " + describe(s) +
           " is not chunked (Transfer-Encoding: chunked): this client reads chunked streams only");
    }
    s.response.reset();
    s.phase = Phase::kBody;
    return body;
  }

  static bool response_complete(const std::string& r) {
    std::size_t at = r.find("\r\n\r\n");
    if (at == std::string::npos) return false;
    std::optional<std::string> length =
        header_value(lowercase(r.substr(0, at + 4)), "content-length");
    return length && r.size() >= at + 4 + std::strtoull(length->c_str(), nullptr, 10);
  }

  [[noreturn]] void rejected(const Stream& s) {
    const std::string& r = *s.response;
    std::size_t at = r.find("\r\n\r\n");
    fail(fmt::format("GET /watch was refused ({} streams had had their first event): \"{}\" {}",
                     open_ready_.load(), r.substr(0, r.find("\r\n")),
                     at == std::string::npos ? "" : r.substr(at + 4, 300)));
  }

  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Chunked transfer coding: size line, data (to the SSE parser), CRLF.
  void parse_chunks(Stream& s, const char* p, const char* end, Clock::time_point now) {
    while (p < end) {
      switch (s.chunk) {
        case ChunkState::kSize: {
          const char c = *p++;
          if (int d = hex_digit(c); d >= 0) {
            if (s.chunk_left >= (1u << 27)) fail("a chunk size over 2 GiB on " + describe(s));
            s.chunk_left = s.chunk_left * 16 + static_cast<uint32_t>(d);
          } else if (c == '\n') {
            end_size_line(s);
          } else {
            s.chunk = ChunkState::kSizeRest;  // "\r" or a chunk extension.
          }
          break;
        }
        case ChunkState::kSizeRest: {
          const char* nl =
              static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
          if (nl == nullptr) return;
          p = nl + 1;
          end_size_line(s);
          break;
        }
        case ChunkState::kData: {
          const std::size_t take =
              std::min<std::size_t>(s.chunk_left, static_cast<std::size_t>(end - p));
          parse_sse(s, p, p + take, now);
          p += take;
          s.chunk_left -= static_cast<uint32_t>(take);
          if (s.chunk_left == 0) s.chunk = ChunkState::kDataEnd;
          break;
        }
        case ChunkState::kDataEnd: {
          const char c = *p++;
          if (c == '\n') {
            s.chunk = ChunkState::kSize;
          } else if (c != '\r') {
            fail("malformed chunked framing (no CRLF after a chunk) on " + describe(s));
          }
          break;
        }
      }
    }
  }

  void end_size_line(Stream& s) {
    if (s.chunk_left == 0)
      fail(describe(s) + " ended (last chunk) after " + std::to_string(s.bytes) + " bytes");
    s.chunk = ChunkState::kData;
  }

  // Server-Sent Events: lines up to '\n'; a blank line dispatches the event. Only the start of a
  // line is kept (head); a data line is scanned for kRoundKey and the number after it.
  void parse_sse(Stream& s, const char* p, const char* end, Clock::time_point now) {
    while (p < end) {
      switch (s.line) {
        case Line::kHead: {
          const char c = *p++;
          if (c == '\n') {
            end_head_line(s, now);
            break;
          }
          s.head[s.head_len++] = c;
          if (s.head_len == 5 && std::memcmp(s.head, "data:", 5) == 0) {
            s.line = Line::kData;
            s.matched = 0;
            s.in_number = false;
          } else if (s.head_len == sizeof s.head) {
            // Too long for any line this client needs whole: skip it.
            if (std::memcmp(s.head, "event:", 6) == 0) s.event = Event::kOther;
            s.line = Line::kSkip;
          }
          break;
        }
        case Line::kData: {
          if (s.matched == 0 && !s.in_number) {
            // Fast path: search the rest of the line (or of the span) at once. A match cut by the
            // end of the span is left to the byte-by-byte matcher below.
            const std::string_view rest(p, static_cast<std::size_t>(end - p));
            const std::size_t nl = rest.find('\n');
            const std::string_view line = rest.substr(0, nl);
            if (const std::size_t at = line.find(kRoundKey); at != std::string_view::npos) {
              p += at + kRoundKey.size();
              s.in_number = true;
              s.number = 0;
              break;
            }
            if (nl == std::string_view::npos) {
              if (rest.size() >= kRoundKey.size()) p = end - (kRoundKey.size() - 1);
            } else {
              p += nl;  // The '\n', handled below.
            }
            if (p == end) break;
          }
          const char c = *p++;
          if (c == '\n') {
            if (s.in_number) s.round = s.number;
            s.line = Line::kHead;
            s.head_len = 0;
          } else if (s.in_number) {
            if (c >= '0' && c <= '9') {
              if (s.number > 100000000) fail("a round number out of range on " + describe(s));
              s.number = s.number * 10 + (c - '0');
            } else if (c != ' ' || s.number != 0) {
              s.round = s.number;
              s.in_number = false;
              s.line = Line::kSkip;
            }
          } else if (c == kRoundKey[s.matched]) {
            if (++s.matched == kRoundKey.size()) {
              s.in_number = true;
              s.number = 0;
            }
          } else {
            s.matched = c == '"' ? 1 : 0;  // '"' is the only repeated byte of kRoundKey.
          }
          break;
        }
        case Line::kSkip: {
          const char* nl =
              static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
          if (nl == nullptr) return;
          p = nl + 1;
          s.line = Line::kHead;
          s.head_len = 0;
          break;
        }
      }
    }
  }

  void end_head_line(Stream& s, Clock::time_point now) {
    std::string_view line(s.head, s.head_len);
    s.head_len = 0;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      dispatch(s, now);
      return;
    }
    if (line.starts_with("event:")) {
      line.remove_prefix(6);
      if (line.starts_with(' ')) line.remove_prefix(1);
      s.event = line == "change"  ? Event::kChange
                : line == "ready" ? Event::kReady
                : line == "reset" ? Event::kReset
                                  : Event::kOther;
    }
    // id:, retry:, ": comment" and anything else: nothing to do.
  }

  void dispatch(Stream& s, Clock::time_point now) {
    switch (s.event) {
      case Event::kChange:
        if (s.round >= 0) {
          deliver(s, s.round, now);
        } else {
          other_changes_.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case Event::kReady:
      case Event::kReset:
        if (!s.ready) first_event(s);
        break;
      default:  // progress, unknown types, a block of comments.
        break;
    }
    s.event = Event::kNone;
    s.round = -1;
  }

  void first_event(Stream& s) {
    s.ready = true;
    if (opening_.group != s.group) return;
    --opening_.in_flight;
    open_ready_.store(++opening_.ready);
    if (opening_.ready == opening_.target) {
      opening_.group = -1;
      {
        std::lock_guard lock(mu_);
        open_done_ = true;
      }
      cv_.notify_all();
    }
  }

  void deliver(Stream& s, int32_t round, Clock::time_point now) {
    if (round <= s.last_round) {
      fail(fmt::format("{} received round {} after round {}", describe(s), round, s.last_round));
    }
    s.last_round = round;
    if (s.group != expect_group_ || round != expect_round_.load()) {
      fail(fmt::format("{} received round {} while round {} of the {} streams was expected",
                       describe(s), round, expect_round_.load(),
                       expect_group_ == 0 ? "serve" : "fan-out"));
    }
    const int k = count_.load(std::memory_order_relaxed) + 1;
    count_.store(k, std::memory_order_relaxed);
    if (k == 1) first_ = now;
    if (k == median_rank_) median_ = now;
    if (k == target_) {
      {
        std::lock_guard lock(mu_);
        result_ = {first_, median_, now};
        round_done_ = true;
      }
      cv_.notify_all();
    }
  }

  // Client thread only.
  std::vector<Stream> streams_;
  Group groups_[kGroups];
  Opening opening_;
  std::vector<char> buffer_;
  int expect_group_ = -1;
  int target_ = 0;
  int median_rank_ = 0;
  Clock::time_point first_;
  Clock::time_point median_;

  // Read by the controller for progress messages.
  std::atomic<int> open_ready_{0};
  std::atomic<int> count_{0};
  std::atomic<int> expect_round_{-1};
  std::atomic<uint64_t> other_changes_{0};

  Fd epoll_;
  Fd wake_;
  std::atomic<bool> stop_{false};

  std::mutex mu_;  // Guards what follows.
  std::condition_variable cv_;
  std::deque<Command> commands_;
  bool exited_ = false;
  std::string error_;
  bool open_done_ = false;
  bool round_done_ = false;
  RoundTimes result_;

  std::thread thread_;  // Last: started once everything above exists.
};

// ---- GET /settings/{key} ------------------------------------------------------------------------

struct GetSeries {
  std::vector<double> micros;
  int reconnects = 0;  // The server closed the keep-alive connection (untimed reconnects).
};

// `count` GET requests (after `warmup` untimed ones) on one blocking keep-alive connection, each
// timed from before its send to its last body byte. A response with "Connection: close" (today's
// server closes every 5th) is followed by an untimed reconnect; a connection closed before any
// byte of a response is reconnected and the request sent again, that sample restarted.
GetSeries time_gets(int port, const std::string& key, int warmup, int count) {
  auto connect_to = [port] {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) fail_errno("GET client: socket");
    set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
    set_timeouts(fd.get(), 10s);
    sockaddr_in a = loopback(port);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      fail_errno("GET client: connect to 127.0.0.1:" + std::to_string(port));
    }
    return fd;
  };
  const std::string path = "/settings/" + key;
  const std::string request =
      fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", path, port);
  GetSeries series;
  series.micros.reserve(static_cast<std::size_t>(count));
  Fd fd = connect_to();
  std::string in;
  char buf[16384];
  for (int i = 0; i < warmup + count;) {
    Clock::time_point t0 = Clock::now();
    send_all(fd.get(), request, "GET client: send");
    std::size_t head_end = std::string::npos;
    std::size_t total = 0;
    bool closed_before_response = false;
    while (head_end == std::string::npos || in.size() < total) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_errno("GET " + path + ": reading the response");
      if (n == 0) {
        if (!in.empty()) fail("GET " + path + ": the connection closed within a response");
        closed_before_response = true;
        break;
      }
      in.append(buf, static_cast<std::size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        head_end += 4;
        std::optional<std::string> length =
            header_value(lowercase(in.substr(0, head_end)), "content-length");
        if (!length) fail("GET " + path + ": a response without Content-Length");
        total = head_end + std::strtoull(length->c_str(), nullptr, 10);
      }
    }
    if (closed_before_response) {
      fd = connect_to();
      ++series.reconnects;
      continue;
    }
    const Clock::time_point t1 = Clock::now();
    const std::string lower_head = lowercase(in.substr(0, head_end));
    if (lower_head.rfind("http/1.1 200 ", 0) != 0) {
      fail("GET " + path + " answered \"" + in.substr(0, in.find("\r\n")) +
           "\": " + in.substr(head_end, total - head_end));
    }
    in.erase(0, total);
    if (i >= warmup) series.micros.push_back(micros(t1 - t0));
    ++i;
    if (header_value(lower_head, "connection") == "close") {
      fd = connect_to();
      in.clear();
      ++series.reconnects;
    }
  }
  return series;
}

// ---- The figures --------------------------------------------------------------------------------

struct Side {
  std::vector<double> first, median, last;  // us
  std::vector<double> client_cpu;           // us of the client thread per round
  void add(Clock::time_point t0, const RoundTimes& t, double cpu_us) {
    first.push_back(micros(t.first - t0));
    median.push_back(micros(t.median - t0));
    last.push_back(micros(t.last - t0));
    client_cpu.push_back(cpu_us);
  }
};

std::string ms_pair(const Summary& s) {
  return fmt::format("{:.2f} / {:.2f} ms", s.p50 / 1000, s.p99 / 1000);
}

std::string streams_label(int n) {
  return n >= 1000 && n % 1000 == 0 ? std::to_string(n / 1000) + "k" : std::to_string(n);
}

void print_side(const char* name, const Side& s) {
  std::printf("   %-8s first / median / last stream, p50 / p99: %s, %s, %s\n", name,
              ms_pair(summarize(s.first)).c_str(), ms_pair(summarize(s.median)).c_str(),
              ms_pair(summarize(s.last)).c_str());
}

// The client thread's CPU time per round next to the round's latency: while it is well below the
// latency, the client is not the bottleneck.
void print_client_cost(const char* name, const Side& s, int streams) {
  const Summary cpu = summarize(s.client_cpu);
  const Summary last = summarize(s.last);
  std::printf(
      "   client thread CPU per %s round p50 / p99: %.2f / %.2f ms = %.2f us per event; "
      "busy %.0f%% of the round (p50 trigger -> last %.2f ms)\n",
      name, cpu.p50 / 1000, cpu.p99 / 1000, cpu.p50 / streams, 100 * cpu.p50 / last.p50,
      last.p50 / 1000);
}

void print_fanout_cost(double cpu_seconds_total, int rounds, int streams) {
  std::printf(
      "   fan-out server CPU in its write loops per round: %.2f ms = %.2f us per socket "
      "write\n",
      cpu_seconds_total * 1e3 / rounds, cpu_seconds_total * 1e6 / rounds / streams);
}

// One fan-out round: trigger -> every baseline stream has the chunk of `round`.
void baseline_round(WatchClient& client, FanoutServer& fanout, int round, int pad, Side* into) {
  const std::string bytes = change_chunk(round, pad);
  client.expect(1, round);
  const double cpu0 = cpu_seconds(client.cpu_clock());
  const Clock::time_point t0 = Clock::now();
  fanout.trigger(bytes);
  RoundTimes t;
  try {
    t = client.wait_round();
  } catch (const std::exception& e) {
    const std::string server = fanout.failure();
    fail(std::string(e.what()) + (server.empty() ? "" : " (" + server + ")"));
  }
  const double cpu_us = (cpu_seconds(client.cpu_clock()) - cpu0) * 1e6;
  if (into != nullptr) into->add(t0, t, cpu_us);
  std::this_thread::sleep_for(kRoundGap);
}

std::chrono::seconds open_timeout(int n) { return std::chrono::seconds(60 + n / 100); }

// --baseline-only: the fan-out through the client, without PostgreSQL or serve.
void run_baseline_only(const Config& cfg, WatchClient& client) {
  const int n = cfg.streams;
  FanoutServer fanout(n);
  const Clock::time_point o0 = Clock::now();
  client.open(1, fanout.port(), n, cfg.connect_batch, open_timeout(n));
  std::printf("opened %d fan-out streams in %.2f s\n", n,
              std::chrono::duration<double>(Clock::now() - o0).count());
  int round = kFirstRound;
  Side base;
  for (int i = 0; i < cfg.warmup; ++i) baseline_round(client, fanout, round++, cfg.pad, nullptr);
  for (int i = 0; i < cfg.rounds; ++i) baseline_round(client, fanout, round++, cfg.pad, &base);
  client.close_group(1);
  const double server_cpu = fanout.finish();
  std::printf("\n== fan-out baseline only: %d streams, an event of %zu bytes on the wire\n", n,
              change_chunk(kFirstRound, cfg.pad).size());
  print_side("fan-out", base);
  print_client_cost("fan-out", base, n);
  print_fanout_cost(server_cpu, cfg.rounds + cfg.warmup, n);
  std::printf("   client state per stream: %zu bytes (plus its socket and epoll entry)\n",
              WatchClient::state_bytes_per_stream());
  std::vector<Row> rows;
  rows.emplace_back("watch: fan-out -> last of " + streams_label(n) + " streams",
                    summarize(base.last), Summary{});
  rows.back().target = "(baseline only)";
  bench::print_table(rows);
}

// interleave: both sets of streams open at once; else `why_sequential` says why not.
void run_full(const Config& cfg, WatchClient& client, bool interleave,
              const std::string& why_sequential) {
  const int n = cfg.streams;
  // The temporary cluster runs with fsync=off unless --fsync asks for production's setting.
  syncconfig::EmbeddedPostgresOptions pg_options;
  if (cfg.fsync) pg_options.settings["fsync"] = "on";
  syncconfig::EmbeddedPostgres pg(pg_options);
  pg.start();
  const std::string dsn = pg.dsn();
  std::unique_ptr<ChildProcess> serve;
  // On die() (bench_util's helpers, possibly on another thread) no destructor runs: stop what
  // would outlive the process, and remove the cluster's temporary directory as ~EmbeddedPostgres
  // would. The children also have PR_SET_PDEATHSIG.
  bench::DieCleanup cleanup([&] {
    if (serve) serve->kill_now();
    try {
      pg.stop();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench: stopping PostgreSQL: %s\n", e.what());
    }
    std::error_code ec;
    std::filesystem::remove_all(pg.data_dir(), ec);
  });

  // The writer, on the table and channel serve uses (both its defaults). It only writes, so it
  // does not listen: one listening backend less for every NOTIFY to wake.
  syncconfig::Options options;
  options.enable_notification = false;
  auto store = syncconfig::Store::open(dsn, options);
  store->set(kGetKey, nlohmann::json{{"v", "a small value"}});  // Loaded by serve at its start.

  // The raw NOTIFY round trip: a prepared upsert + pg_notify on a plain table until a LISTEN
  // connection (its own thread in poll) has it, as syncconfig_latency's propagation baseline.
  bench::PgConn raw(dsn);
  raw.exec("DROP TABLE IF EXISTS bench_watch_raw");
  raw.exec("CREATE TABLE bench_watch_raw (key VARCHAR(255) PRIMARY KEY, value JSONB NOT NULL)");
  raw.prepare("raw_set",
              std::string("WITH u AS (INSERT INTO bench_watch_raw (key, value) VALUES ($1, "
                          "$2::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                          "RETURNING key) SELECT pg_notify('") +
                  kRawChannel + "', $1)",
              2);
  bench::FanIn notified(1);
  bench::RawListener listener(dsn, kRawChannel, [&notified] { notified.arrive(0); });

  serve = std::make_unique<ChildProcess>(
      "syncconfig serve",
      std::vector<std::string>{SYNCCONFIG_BIN, "serve", "--dsn", dsn, "--listen", "127.0.0.1:0",
                               "--log-level", "warn"},
      false);
  const pid_t pid = serve->pid();
  const std::string url = serve->read_line("listening on http://", 60s);
  const int port = std::atoi(url.c_str() + url.rfind(':') + 1);
  std::printf("serve: pid %d on http://%s; PostgreSQL %s (embedded)\n", pid, url.c_str(),
              raw.scalar("SHOW server_version").c_str());
  std::fflush(stdout);

  // 4a. GET with no stream open.
  const GetSeries get_idle = time_gets(port, kGetKey, cfg.get_warmup, cfg.gets);

  // 1. Memory per idle stream.
  const long rss0 = proc_status(pid, "VmRSS");
  const long threads0 = proc_status(pid, "Threads");
  const KernelSockets kernel0 = kernel_sockets();
  const Clock::time_point o0 = Clock::now();
  client.open(0, port, n, cfg.connect_batch, open_timeout(n));
  const double open_seconds = std::chrono::duration<double>(Clock::now() - o0).count();
  std::this_thread::sleep_for(200ms);  // Whatever the server does after a stream's first event.
  const long rss1 = proc_status(pid, "VmRSS");
  const long threads1 = proc_status(pid, "Threads");
  const KernelSockets kernel1 = kernel_sockets();
  const double rss_per_stream = static_cast<double>(rss1 - rss0) * 1024 / n;
  std::printf("opened %d /watch streams on serve in %.2f s (connects in batches of %d)\n", n,
              open_seconds, cfg.connect_batch);
  std::fflush(stdout);

  // 4b. GET with the streams open (idle).
  const GetSeries get_busy = time_gets(port, kGetKey, cfg.get_warmup, cfg.gets);

  // 2. set -> receipt. Warm-up rounds alone first: they also give the size of a real event on the
  // wire (stream 0's bytes per round; the smallest, in case a keepalive came along), which the
  // baseline's chunk is padded to.
  int round = kFirstRound;
  auto real_round = [&](Side* into) {
    const int r = round++;
    const nlohmann::json value = round_value(r, cfg.pad);
    client.expect(0, r);
    const double cpu0 = cpu_seconds(client.cpu_clock());
    const Clock::time_point t0 = Clock::now();
    store->set(kWatchKey, value);
    const RoundTimes t = client.wait_round();
    const double cpu_us = (cpu_seconds(client.cpu_clock()) - cpu0) * 1e6;
    if (into != nullptr) into->add(t0, t, cpu_us);
    std::this_thread::sleep_for(kRoundGap);
  };
  auto notify_round = [&](std::vector<double>* into) {
    const std::string value = round_value(round++, cfg.pad).dump();
    notified.expect();
    const Clock::time_point t0 = Clock::now();
    raw.exec_prepared("raw_set", {kWatchKey, value});
    const Clock::time_point t1 = notified.wait_last();
    if (into != nullptr) into->push_back(micros(t1 - t0));
    std::this_thread::sleep_for(kRoundGap);
  };
  uint64_t real_wire = ~uint64_t{0};
  for (int i = 0; i < std::max(1, cfg.warmup); ++i) {
    const uint64_t before = client.first_stream_bytes(0);
    real_round(nullptr);
    real_wire = std::min(real_wire, client.first_stream_bytes(0) - before);
    notify_round(nullptr);
  }
  const int base_pad = pad_for_wire_bytes(real_wire, cfg.pad);
  const std::size_t base_wire = change_chunk(kFirstRound, base_pad).size();

  // 3. The baseline. Interleaved: both sets of streams open, rounds alternate serve, fan-out, raw
  // NOTIFY. Sequential (when this process may not hold 2N sockets): serve's rounds with the raw
  // NOTIFY ones alternating, serve's streams closed, then the fan-out's rounds.
  Side real, base;
  std::vector<double> notify_rt;
  double serve_cpu = 0;
  std::unique_ptr<FanoutServer> fanout = std::make_unique<FanoutServer>(n);
  auto open_fanout = [&] {
    client.open(1, fanout->port(), n, cfg.connect_batch, open_timeout(n));
    for (int i = 0; i < cfg.warmup; ++i)
      baseline_round(client, *fanout, round++, base_pad, nullptr);
  };
  if (interleave) {
    open_fanout();
    const double serve_cpu0 = process_cpu_seconds(pid);
    for (int i = 0; i < cfg.rounds; ++i) {
      real_round(&real);
      baseline_round(client, *fanout, round++, base_pad, &base);
      notify_round(&notify_rt);
    }
    serve_cpu = process_cpu_seconds(pid) - serve_cpu0;
    client.close_group(0);
  } else {
    const double serve_cpu0 = process_cpu_seconds(pid);
    for (int i = 0; i < cfg.rounds; ++i) {
      real_round(&real);
      notify_round(&notify_rt);
    }
    serve_cpu = process_cpu_seconds(pid) - serve_cpu0;
    client.close_group(0);
    open_fanout();
    for (int i = 0; i < cfg.rounds; ++i) baseline_round(client, *fanout, round++, base_pad, &base);
  }
  client.close_group(1);
  const double fanout_cpu = fanout->finish();
  fanout.reset();
  if (int status = serve->stop(); status != 0) {
    fail("syncconfig serve exited with status " + std::to_string(status) + " after SIGTERM");
  }

  std::vector<double> base_plus_notify;
  for (std::size_t i = 0; i < base.last.size(); ++i) {
    base_plus_notify.push_back(base.last[i] + notify_rt[i]);
  }

  std::printf("\n== 1. memory per idle stream (%d streams)\n", n);
  std::printf("   serve VmRSS %.1f -> %.1f MiB: %.0f bytes per stream; threads %ld -> %ld\n",
              rss0 / 1024.0, rss1 / 1024.0, rss_per_stream, threads0, threads1);
  std::printf(
      "   kernel, whole machine, both ends of each connection: socket buffers (sockstat TCP "
      "mem) %+.0f bytes per stream",
      (kernel1.buffer_bytes - kernel0.buffer_bytes) / n);
  if (kernel0.object_bytes >= 0) {
    std::printf("; socket objects (TCP + sock_inode_cache slabs) %+.0f bytes per stream",
                (kernel1.object_bytes - kernel0.object_bytes) / n);
  }
  std::printf("\n   client state per stream: %zu bytes (plus its socket and epoll entry)\n",
              WatchClient::state_bytes_per_stream());
  const std::string order =
      interleave
          ? "interleaved (serve, fan-out, raw NOTIFY)"
          : "sequential: serve's rounds (alternating with raw NOTIFY), then the fan-out's (" +
                why_sequential + ")";
  std::printf("\n== 2./3. set -> receipt, %d rounds per side after %d warm-up, %s\n", cfg.rounds,
              cfg.warmup, order.c_str());
  std::printf(
      "   an event on the wire (chunk framing included): serve %llu bytes, fan-out %zu "
      "bytes\n",
      static_cast<unsigned long long>(real_wire), base_wire);
  print_side("serve", real);
  print_side("fan-out", base);
  std::printf("   raw upsert + NOTIFY round trip p50 / p99: %s\n",
              ms_pair(summarize(notify_rt)).c_str());
  print_client_cost("serve", real, n);
  print_client_cost("fan-out", base, n);
  print_fanout_cost(fanout_cpu, cfg.rounds + cfg.warmup, n);
  std::printf(
      "   serve CPU (utime + stime, 10 ms ticks) over its measured rounds: %.1f ms per round "
      "= %.2f us per stream%s\n",
      serve_cpu * 1e3 / cfg.rounds, serve_cpu * 1e6 / cfg.rounds / n,
      interleave ? " (includes the interleaved rounds, where it only keeps streams alive)" : "");
  if (client.other_changes() > 0) {
    std::printf("   (%llu change events of other keys were ignored)\n",
                static_cast<unsigned long long>(client.other_changes()));
  }
  std::printf("\n== 4. GET /settings/%s, %d requests on one keep-alive connection\n", kGetKey,
              cfg.gets);
  std::printf(
      "   no stream open: %s; %d streams open: %s; reconnects after serve closed the "
      "connection (untimed): %d, %d\n",
      ms_pair(summarize(get_idle.micros)).c_str(), n, ms_pair(summarize(get_busy.micros)).c_str(),
      get_idle.reconnects, get_busy.reconnects);

  const std::string label = streams_label(n);
  std::vector<Row> rows;
  rows.emplace_back("watch: serve RSS per idle stream, " + label, Summary{}, Summary{},
                    Unit::kBytes);
  rows.back().mine.p50 = rows.back().mine.p99 = rss_per_stream;
  Row last("watch: set -> last of " + label + " streams", summarize(real.last),
           summarize(base.last));
  last.target = "p99 <= 50 ms, <= 1.5x";
  last.met = bench::met_text(last.mine.p99 <= 50000 && last.mine.p50 <= 1.5 * last.base.p50 &&
                             last.mine.p99 <= 1.5 * last.base.p99);
  rows.push_back(last);
  rows.emplace_back("  set -> first stream", summarize(real.first), summarize(base.first));
  rows.emplace_back("  set -> median stream", summarize(real.median), summarize(base.median));
  rows.emplace_back("  last vs fan-out + raw NOTIFY round trip", summarize(real.last),
                    summarize(base_plus_notify));
  rows.emplace_back("GET /settings/{key}, " + label + " streams vs none",
                    summarize(get_busy.micros), summarize(get_idle.micros));
  bench::print_table(rows);
}

}  // namespace

int main(int argc, char** argv) {
  // The fan-out baseline's server: this program again, as a child (see run_fanout_server).
  if (argc == 3 && std::string_view(argv[1]) == "--fanout-server") {
    return run_fanout_server(std::atoi(argv[2]));
  }
  spdlog::set_level(spdlog::level::warn);
  // A write to a child that has died (the fan-out server's stdin) must fail with EPIPE and be
  // reported, not kill this process before it has stopped serve and PostgreSQL.
  ::signal(SIGPIPE, SIG_IGN);
  Config cfg;
  const char* smoke_env = std::getenv("BENCH_SMOKE");
  bool smoke = smoke_env != nullptr && std::string_view(smoke_env) == "1";
  bool baseline_only = false;
  bool sequential = false;
  bool fsync = false;
  int streams = 0;
  int rounds = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--smoke") {
      smoke = true;
    } else if (a == "--baseline-only") {
      baseline_only = true;
    } else if (a == "--sequential") {
      sequential = true;
    } else if (a == "--fsync") {
      fsync = true;
    } else if (a == "--streams" && i + 1 < argc) {
      streams = std::atoi(argv[++i]);
      if (streams <= 0) streams = -1;
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
      if (rounds <= 0) rounds = -1;
    } else {
      streams = rounds = -1;
      break;
    }
  }
  if (streams == 0 && std::getenv("BENCH_WATCH_STREAMS") != nullptr) {
    streams = std::atoi(std::getenv("BENCH_WATCH_STREAMS"));
    if (streams <= 0) streams = -1;
  }
  if (streams < 0 || rounds < 0) {
    std::fprintf(stderr,
                 "usage: %s [--streams N] [--rounds R] [--smoke] [--baseline-only] [--sequential] "
                 "[--fsync]\n"
                 "  N > 0 defaults to $BENCH_WATCH_STREAMS, else 10000 (100 with --smoke or "
                 "BENCH_SMOKE=1)\n",
                 argv[0]);
    return 2;
  }
  if (smoke) cfg.smoke();
  if (streams > 0) cfg.streams = streams;
  if (rounds > 0) cfg.rounds = rounds;
  cfg.fsync = fsync;
  const int n = cfg.streams;

  try {
    // This process holds the client's end of every stream (2N when both sets are open at once),
    // serve and the fan-out server (children: they inherit the limit) N each.
    const rlim_t both = 2 * static_cast<rlim_t>(n) + 64;
    const rlim_t one = static_cast<rlim_t>(n) + 64;
    const FdLimit limit = raise_fd_limit(both);
    if (limit.soft < one) {
      fail(
          fmt::format("the open files limit is {} and {} streams need at least {}: raise it "
                      "(ulimit -n){}",
                      limit.soft, n, one, limit.note));
    }
    const bool interleave = !sequential && limit.soft >= both;
    std::printf(
        "watch fan-out: %d streams, %d rounds per side after %d warm-up, values with %d "
        "pad bytes; open files limit %llu (children inherit it)%s%s\n",
        n, cfg.rounds, cfg.warmup, cfg.pad, static_cast<unsigned long long>(limit.soft),
        limit.note.c_str(), smoke ? "; SMOKE RUN (small sizes, the numbers mean nothing)" : "");
    std::fflush(stdout);

    WatchClient client;
    if (baseline_only) {
      run_baseline_only(cfg, client);
    } else {
      run_full(cfg, client, interleave,
               sequential ? "--sequential"
                          : "the open files limit does not allow both sets of streams at once");
    }
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
