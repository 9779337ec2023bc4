// The `syncconfig` program's subcommands. main.cc parses the command line into these argument
// structs and dispatches; each run_* returns the process exit code.
//
// Exit codes: 0 success, 1 key not found (get, delete), 2 usage or configuration error (bad
// arguments, bad JSON, invalid key or name, YAML mistakes, a revision older than the history kept
// or beyond the newest; over --server: the server refused the request with a 4xx status, 401
// included), 3 runtime failure (database or server unreachable or failing, timeout, a 5xx answer,
// embedded server or HTTP listener that would not start), 4 conflict (set/delete --if-revision,
// apply or rollback: the store was not in the state the command expected, a guard or If-Match
// failed; nothing was written, and stderr says which key and its current revision and value).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "syncconfig/error.h"

namespace syncconfig {
class Store;
}

namespace syncconfig::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,
  kExitUsage = 2,
  kExitFailure = 3,
  kExitConflict = 4,
};

// A mistake on the command line found after parsing (conflicting options, bad JSON, ...).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where an operator command's store lives: --dsn/SYNCCONFIG_DSN (with --table/--channel), a
// service-definitions file (with --store), or a syncconfig server (--server/SYNCCONFIG_SERVER,
// with --token and --store; found when nothing is named, see target.h).
struct ConnectionArgs {
  std::string dsn;
  std::string config;
  std::string store;
  std::string table;
  std::string channel;
  std::string server;
  std::string token;
  std::string ca_file;  // https servers: the CA file (default: env SYNCCONFIG_CA_FILE, else the
                        // system trust store).
};

struct ServeArgs {
  std::string config;
  std::string dsn;
  std::string data_dir = ".syncconfig";
  std::string listen = "127.0.0.1:8080";
  std::string token;
  // Relay: follow these servers (RemoteStore) instead of a database.
  std::vector<std::string> upstream;
  std::string upstream_token;    // Default: env SYNCCONFIG_UPSTREAM_TOKEN.
  std::string upstream_store;    // The upstream's store to follow ("": its default).
  std::string snapshot_file;     // Options::snapshot_file of the served store (--dsn, --upstream).
  std::string tls_cert;          // TLS: PEM certificate chain and key (both or neither); SIGHUP
  std::string tls_key;           // reloads them.
  std::string upstream_ca_file;  // https upstreams: their CA file (default: the system's).
  bool auth = false;             // Named tokens (docs/access-control.md).
  int64_t rate_limit = 0;        // HttpOptions::rate_limit (0: the config file's, else none).
  int64_t rate_limit_burst = 0;  // HttpOptions::rate_limit_burst (likewise).
  std::string ui_dir;            // HttpOptions::ui_dir ("": the console built in).
};

enum class TokenCommand { kCreate, kList, kRevoke };

// `syncconfig token create|list|revoke` (token_commands.cc): on the token table of --dsn (with
// --schema) or over --server with an admin token (--token).
struct TokenArgs {
  TokenCommand command = TokenCommand::kList;
  std::string name;                // create, revoke
  std::vector<std::string> allow;  // create: PREFIX=ACCESS
  std::string dsn;                 // Default: env SYNCCONFIG_DSN.
  std::string schema = "public";   // With --dsn: the schema of the first served store.
  std::string server;              // Instead of --dsn.
  std::string token;               // With --server: an admin token (default: env SYNCCONFIG_TOKEN).
};
int run_token(const TokenArgs& args);

enum class Operation { kGet, kSet, kDelete, kList, kWatch, kCrc };

struct OperatorArgs {
  Operation operation = Operation::kGet;
  ConnectionArgs connection;
  std::string key;
  std::string value;   // set: JSON text.
  std::string prefix;  // list, watch.
  // set, delete: recorded in the history; set: the lease to attach the key to (0: none).
  std::string comment;
  int64_t lease = 0;
  // set, delete: write only if the key is at this revision (set: 0 = only if it is absent);
  // otherwise exit 4.
  std::optional<int64_t> if_revision;
};

// The commands of safe changes beyond set/delete (safe_commands.cc), on either path.
enum class SafeCommand {
  kApply,
  kHistory,
  kDiff,
  kRollback,
  kLeaseGrant,
  kLeaseKeepAlive,
  kLeaseRevoke
};

struct SafeArgs {
  SafeCommand command = SafeCommand::kApply;
  ConnectionArgs connection;
  std::string file;           // apply
  std::string key;            // history, rollback (empty: --prefix)
  std::string prefix;         // apply, history, diff, rollback
  bool prefix_given = false;  // --prefix was on the command line (it may be "")
  bool prune = false;         // apply
  bool dry_run = false;       // apply
  std::string comment;        // apply, rollback
  int64_t limit = 100;        // history
  int64_t from = 0, to = 0;   // diff --from/--to; rollback --to
  int64_t ttl = 0;            // lease grant
  int64_t lease = 0;          // lease keepalive/revoke
};

int run_serve(const ServeArgs& args);
int run_operator(const OperatorArgs& args);
int run_demo();
int run_safe(const SafeArgs& args);

struct ServerTarget;
// The operator commands over HTTP (remote_commands.cc, remote_watch.cc).
int run_remote_operator(const OperatorArgs& args, const ServerTarget& server);
int watch_server(const OperatorArgs& args, const ServerTarget& server);

// The store of --dsn/--config (operator_commands.cc). Only `watch` asks for notifications.
std::unique_ptr<Store> open_store(const ConnectionArgs& args, bool notifications);

// ---- shared helpers (common.cc) ----

// Prints "syncconfig: <message>" on stderr.
void print_error(std::string_view message);
// The exit code for a library error: 2 for kInvalidArgument and kOutOfRange, else 3.
int exit_code_for(const Error& error);
// Throws UsageError unless `dsn` parses as a libpq connection string or URI. libpq's own parse
// errors may quote the whole string, password included, so they are never shown.
void check_dsn(const std::string& dsn);
// An environment variable, or nullopt when unset or empty.
std::optional<std::string> env(const char* name);
// A key quoted for a message, as JSON ("a\"b"); invalid UTF-8 replaced.
std::string show_key(std::string_view key);
// The JSON text of `set`; throws UsageError saying what is wrong with it.
nlohmann::json parse_value(const std::string& text);
// JSON text as the commands print it (invalid UTF-8 replaced, never thrown on); `indent` as
// nlohmann::json::dump's.
std::string json_text(const nlohmann::json& value, int indent = -1);
// The same, keeping the object's key order.
std::string json_text(const nlohmann::ordered_json& value, int indent = -1);
// Prints the conflict of a write that named a revision (`key` is at `revision` with `value`; 0 and
// nullopt: absent) and returns 4.
int conflict(std::string_view key, int64_t revision, const std::optional<nlohmann::json>& value);
// The exit code after printing a result: a failed write to stdout (e.g. a closed pipe) is an
// error (printed).
int printed();
// Writes `line` to stdout and flushes it; false (errno set) when that fails.
bool write_line(const std::string& line);

// Turns SIGINT/SIGTERM (and SIGHUP with `with_reload`) into an event that wait() returns on,
// through a self-pipe (the handler only writes a byte). One instance at a time per process; the
// destructor restores the default handlers.
class StopSignal {
 public:
  explicit StopSignal(bool with_reload = false);
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
