// The `syncconfig` program's subcommands. main.cc parses the command line into these argument
// structs and dispatches; each run_* returns the process exit code.
//
// Exit codes: 0 success, 1 key not found (get, delete), 2 usage or configuration error (bad
// arguments, bad JSON, invalid key or name, YAML mistakes), 3 runtime failure (database
// unreachable or failing, timeout, embedded server or HTTP listener that would not start).
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "syncconfig/error.h"

namespace syncconfig::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,
  kExitUsage = 2,
  kExitFailure = 3,
};

// A mistake on the command line found after parsing (conflicting options, bad JSON, ...).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a one-shot command's store lives: --dsn/SYNCCONFIG_DSN (with --table/--channel), or a
// service-definitions file (with --store).
struct ConnectionArgs {
  std::string dsn;
  std::string config;
  std::string store;
  std::string table;
  std::string channel;
};

struct ServeArgs {
  std::string config;
  std::string dsn;
  std::string data_dir = ".syncconfig";
  std::string listen = "127.0.0.1:8080";
  std::string token;
};

enum class Operation { kGet, kSet, kDelete, kList, kWatch, kCrc };

struct OperatorArgs {
  Operation operation = Operation::kGet;
  ConnectionArgs connection;
  std::string key;
  std::string value;   // set: JSON text.
  std::string prefix;  // list, watch.
};

int run_serve(const ServeArgs& args);
int run_operator(const OperatorArgs& args);
int run_demo();

// ---- shared helpers (common.cc) ----

// Prints "syncconfig: <message>" on stderr.
void print_error(std::string_view message);
// The exit code for a library error: 2 for kInvalidArgument, else 3.
int exit_code_for(const Error& error);
// Throws UsageError unless `dsn` parses as a libpq connection string or URI. libpq's own parse
// errors may quote the whole string, password included, so they are never shown.
void check_dsn(const std::string& dsn);
// An environment variable, or nullopt when unset or empty.
std::optional<std::string> env(const char* name);

// Turns SIGINT/SIGTERM into an event that wait() returns on, through a self-pipe (the handler
// only writes a byte). One instance at a time per process; the destructor restores the default
// handlers.
class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // Blocks until a signal arrives or request_stop() is called. Returns the signal number, or 0
  // for request_stop().
  int wait();
  // Makes wait() return. Safe from any thread.
  static void request_stop();
};

}  // namespace syncconfig::cli
