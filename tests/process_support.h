// Running the `syncconfig` program (or another program of this build, e.g. an example) as a child
// process of a test: its environment, a temporary directory, stdout read line by line with
// deadlines, exit codes, and `serve` on a table of the test cluster. Shared by cli_test and
// fleet_test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "test_support.h"

namespace syncconfig::testing {

// Environment changes for a child: a value sets the variable, nullopt removes it. SYNCCONFIG_DSN,
// SYNCCONFIG_SERVER and SYNCCONFIG_TOKEN are always removed first, so that the caller's
// environment cannot leak in.
using EnvChanges = std::map<std::string, std::optional<std::string>>;

// This process's environment with `changes` applied, as "NAME=value" entries.
std::vector<std::string> child_environment(const EnvChanges& changes);

// A temporary directory, removed with everything in it. World-traversable: the embedded
// PostgreSQL runs as the postgres user when the tests run as root.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // Writes `text` to a file in the directory; returns its path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

// A program to run: the `syncconfig` program of this build unless another path is given.
struct Program {
  std::string path;
};
Program syncconfig_program();

// A program running as a child: stdout through a pipe (read line by line with deadlines),
// stderr into a file. The destructor stops a child still running (SIGTERM, then SIGKILL), so a
// failed test leaves no process behind. `cwd`: its working directory (empty: ours).
class Child {
 public:
  // `program` (default: the `syncconfig` program) with `args`.
  explicit Child(const std::vector<std::string>& args, const EnvChanges& env = {},
                 const std::filesystem::path& cwd = {},
                 const Program& program = syncconfig_program());
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo);

  // The next line of stdout (without '\n'), or nullopt at EOF or when `timeout` passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Everything left on stdout until EOF (or `timeout`).
  std::string read_rest(std::chrono::milliseconds timeout);
  // The exit status (128 + N when killed by signal N), or nullopt if still running at timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Everything it wrote to stderr so far.
  std::string err() const;

 private:
  // Reads what is available before `deadline`; false on timeout.
  bool fill(std::chrono::steady_clock::time_point deadline);

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

std::ostream& operator<<(std::ostream& os, const RunResult& r);

// Runs `program` (default: the `syncconfig` program) to completion (killed after `timeout`), in
// `cwd` (empty: ours).
RunResult run(const std::vector<std::string>& args, const EnvChanges& env = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60),
              const std::filesystem::path& cwd = {}, const Program& program = syncconfig_program());

// Connection arguments for a fresh table of the test cluster.
std::vector<std::string> on_table(const std::string& table);

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b);

// Waits for serve's "listening on http://127.0.0.1:PORT" (or https://) line; returns the port (0
// and a test failure otherwise).
int listening_port(Child& serve, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// `syncconfig serve` of one fresh table of the test cluster (through a service-definitions file,
// since --dsn serves the default table), on 127.0.0.1 and a free port, or `port`.
// `extra_params`: more `params:` of the store entry, as YAML flow-mapping items (", pool_size: 1");
// `serve_section`: a `serve:` section put before the definitions ("serve:\n  tls_cert: ...\n").
class TableServer {
 public:
  explicit TableServer(const std::string& table, int port = 0, EnvChanges env = {},
                       const std::string& extra_params = {}, const std::string& serve_section = {});
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  Child& child() { return *child_; }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
};

}  // namespace syncconfig::testing
