// syncconfig: command line parsing and dispatch. See commands.h for the exit codes.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "cli/commands.h"
#include "cli/target.h"
#include "config/service_config.h"

namespace {

using namespace syncconfig::cli;

const std::map<std::string, spdlog::level::level_enum> kLevels = {
    {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},   {"error", spdlog::level::err},   {"off", spdlog::level::off}};

void add_log_level(CLI::App* command, std::string& level, const char* default_level) {
  command
      ->add_option("--log-level", level,
                   std::string("Log level on stderr: trace, debug, info, warn, error or off "
                               "(default ") +
                       default_level + ")")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
}

void add_connection(CLI::App* command, ConnectionArgs& c) {
  command->add_option("--dsn", c.dsn,
                      "PostgreSQL connection string or URI (default: env SYNCCONFIG_DSN)");
  command->add_option("--config", c.config, "Service-definitions YAML file (instead of --dsn)");
  command->add_option("--server", c.server,
                      "URL of a running 'syncconfig serve', e.g. http://127.0.0.1:8080: no "
                      "database credentials needed (default: env SYNCCONFIG_SERVER; with no "
                      "--dsn, --config or --server: the server of ./.syncconfig/server.json, "
                      "else " +
                          std::string(kDefaultServerUrl) + ")");
  command->add_option("--token", c.token,
                      "With a server: sent as 'Authorization: Bearer TOKEN' (default: env "
                      "SYNCCONFIG_TOKEN)");
  command->add_option("--ca-file", c.ca_file,
                      "With an https:// server: PEM file of the CA certificate(s) its certificate "
                      "must lead to (default: env SYNCCONFIG_CA_FILE, else the system trust "
                      "store); the host name is always verified");
  command->add_option("--store", c.store,
                      "With --config: the sync_config_pg service to use (default: the first); "
                      "with a server: the store it serves under /stores/NAME");
  command->add_option("--table", c.table, "With --dsn: table name (default sync_config)");
  command->add_option("--channel", c.channel,
                      "With --dsn: NOTIFY channel (default config_changes)");
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that went away must surface as a write error, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{
      "syncconfig: a JSON key/value configuration store kept in sync across instances through "
      "PostgreSQL LISTEN/NOTIFY.\n"
      "Exit codes: 0 success, 1 key not found, 2 usage or configuration error (over a server: "
      "a 4xx answer, 401 included), 3 database, server or runtime error, 4 conflict (the store "
      "was not in the state --if-revision, apply or rollback expected; nothing written).",
      "syncconfig"};
  app.require_subcommand(1);

  std::string log_level;
  ServeArgs serve;
  OperatorArgs op;

  CLI::App* serve_cmd =
      app.add_subcommand("serve", "Serve the stores over HTTP until SIGINT/SIGTERM");
  serve_cmd->add_option("--config", serve.config,
                        "Service-definitions YAML file: serve each sync_config_pg service");
  serve_cmd->add_option("--dsn", serve.dsn,
                        "Serve one store on this database (default: env SYNCCONFIG_DSN; "
                        "neither: an embedded PostgreSQL)");
  serve_cmd
      ->add_option("--data-dir", serve.data_dir,
                   "Embedded PostgreSQL's data directory, created on first use and reused")
      ->capture_default_str();
  serve_cmd->add_option("--listen", serve.listen, "HOST:PORT to listen on (port 0: any free)")
      ->capture_default_str();
  serve_cmd->add_option("--token", serve.token,
                        "Require 'Authorization: Bearer TOKEN' (default: env SYNCCONFIG_TOKEN)");
  serve_cmd->add_option("--tls-cert", serve.tls_cert,
                        "Serve HTTPS: PEM file of the certificate chain (with --tls-key; default: "
                        "env SYNCCONFIG_TLS_CERT); SIGHUP reloads both for new connections");
  serve_cmd->add_option("--tls-key", serve.tls_key,
                        "PEM file of the private key of --tls-cert (keep it mode 0600; default: "
                        "env SYNCCONFIG_TLS_KEY)");
  serve_cmd->add_option("--upstream", serve.upstream,
                        "Relay: follow this syncconfig server (repeat for failover, in order) "
                        "instead of a database, and serve the same API downstream");
  serve_cmd->add_option("--upstream-token", serve.upstream_token,
                        "Token for the upstream servers (default: env SYNCCONFIG_UPSTREAM_TOKEN)");
  serve_cmd->add_option("--upstream-ca-file", serve.upstream_ca_file,
                        "https upstreams: PEM file of their CA certificate(s) (default: env "
                        "SYNCCONFIG_CA_FILE, else the system trust store)");
  serve_cmd->add_option("--upstream-store", serve.upstream_store,
                        "The upstream's store to follow (default: its default store)");
  serve_cmd->add_option("--snapshot-file", serve.snapshot_file,
                        "Keep a snapshot of the store in this file and start from it, stale, "
                        "when the database (or every upstream) is unreachable");
  serve_cmd->add_flag("--auth", serve.auth,
                      "Enforce named tokens ('syncconfig token create'): each request's token "
                      "and its rules per key prefix decide what it may read and write "
                      "(docs/access-control.md); not with --token");
  serve_cmd
      ->add_option("--rate-limit", serve.rate_limit,
                   "Requests per second each token (or, without --auth, each client address) "
                   "may make; more get 429 with Retry-After; GET /health is never limited "
                   "(default: none)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  serve_cmd
      ->add_option("--rate-limit-burst", serve.rate_limit_burst,
                   "Requests a client may make at once under --rate-limit (default: one "
                   "second's worth)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  serve_cmd
      ->add_option("--ui-dir", serve.ui_dir,
                   "Serve the web console (/ui) from this directory's index.html, app.js and "
                   "app.css, read at each request, instead of the files built in (for working "
                   "on the console)")
      ->check(CLI::ExistingDirectory);
  add_log_level(serve_cmd, log_level, "info");

  struct OperatorCommand {
    const char* name;
    const char* help;
    Operation operation;
  };
  const OperatorCommand commands[] = {
      {"get", "Print a key's value as JSON (exit 1 if absent)", Operation::kGet},
      {"set", "Set a key to a JSON value", Operation::kSet},
      {"delete", "Delete a key (exit 1 if absent)", Operation::kDelete},
      {"list", "Print every key and value as one JSON object", Operation::kList},
      {"watch", "Print one JSON line per change until SIGINT/SIGTERM", Operation::kWatch},
      {"crc", "Print the store's checksum (equal on instances in sync)", Operation::kCrc},
  };
  std::map<CLI::App*, Operation> operations;
  for (const OperatorCommand& c : commands) {
    CLI::App* cmd = app.add_subcommand(c.name, c.help);
    operations[cmd] = c.operation;
    if (c.operation == Operation::kGet || c.operation == Operation::kSet ||
        c.operation == Operation::kDelete) {
      cmd->add_option("KEY", op.key, "The key")->required();
    }
    if (c.operation == Operation::kSet) {
      cmd->add_option("JSON", op.value,
                      "The value as JSON text: '\"text\"', 42, -5, true, '{\"a\":1}'")
          ->required();
      cmd->add_option("--lease", op.lease,
                      "Attach the key to this lease ('syncconfig lease grant'): it is deleted "
                      "when the lease expires or is revoked");
    }
    if (c.operation == Operation::kSet || c.operation == Operation::kDelete) {
      cmd->add_option("--comment", op.comment, "Recorded with the change in the key's history");
      cmd->add_option("--if-revision", op.if_revision,
                      c.operation == Operation::kSet
                          ? "Write only if the key is at this revision (0: only if it is absent); "
                            "otherwise exit 4 and print its current revision and value"
                          : "Delete only if the key is at this revision; otherwise exit 4 and "
                            "print its current revision and value");
    }
    if (c.operation == Operation::kList || c.operation == Operation::kWatch) {
      cmd->add_option("--prefix", op.prefix, "Only keys starting with this");
    }
    add_connection(cmd, op.connection);
    add_log_level(cmd, log_level, "warn");
  }
  SafeArgs safe;
  std::map<CLI::App*, SafeCommand> safe_commands;
  auto add_safe = [&](CLI::App* parent, const char* name, const char* help, SafeCommand command) {
    CLI::App* cmd = parent->add_subcommand(name, help);
    safe_commands[cmd] = command;
    add_connection(cmd, safe.connection);
    add_log_level(cmd, log_level, "warn");
    return cmd;
  };
  CLI::App* apply_cmd =
      add_safe(&app, "apply",
               "Make the store match a JSON or YAML file of keys and values, as one transaction "
               "(prints the diff; exit 4 if the store changed meanwhile)",
               SafeCommand::kApply);
  apply_cmd
      ->add_option("FILE", safe.file, "A .json, .yaml or .yml file: an object of keys to values")
      ->required();
  apply_cmd->add_option("--prefix", safe.prefix, "Put the file's keys under this prefix");
  apply_cmd->add_flag("--prune", safe.prune,
                      "Also delete the keys under --prefix (all keys without it) that the file "
                      "does not have");
  apply_cmd->add_flag("--dry-run", safe.dry_run, "Only print the diff");
  apply_cmd->add_option("--comment", safe.comment, "Recorded with every change in the history");
  CLI::App* history_cmd =
      add_safe(&app, "history", "Print a key's changes (or those under --prefix), newest first",
               SafeCommand::kHistory);
  history_cmd->add_option("KEY", safe.key, "The key");
  history_cmd->add_option("--prefix", safe.prefix, "Every key starting with this instead of KEY");
  history_cmd->add_option("--limit", safe.limit, "At most this many changes (1..10000)")
      ->capture_default_str();
  CLI::App* diff_cmd = add_safe(
      &app, "diff", "Print the keys whose values differ between two revisions", SafeCommand::kDiff);
  diff_cmd->add_option("--from", safe.from, "The older revision")->required();
  diff_cmd->add_option("--to", safe.to, "The newer revision")->required();
  diff_cmd->add_option("--prefix", safe.prefix, "Only keys starting with this");
  CLI::App* rollback_cmd =
      add_safe(&app, "rollback",
               "Restore a key (or the keys under --prefix) to its state at a revision, as a new "
               "change",
               SafeCommand::kRollback);
  rollback_cmd->add_option("KEY", safe.key, "The key");
  rollback_cmd->add_option("--prefix", safe.prefix, "Every key starting with this instead of KEY");
  rollback_cmd->add_option("--to", safe.to, "The revision whose state to restore")->required();
  rollback_cmd->add_option("--comment", safe.comment, "Recorded with the changes in the history");
  CLI::App* lease_cmd = app.add_subcommand(
      "lease", "Leases: keys attached to one are deleted when it is not kept alive");
  lease_cmd->require_subcommand(1);
  add_safe(lease_cmd, "grant", "Grant a lease; prints its id", SafeCommand::kLeaseGrant)
      ->add_option("TTL_SECONDS", safe.ttl, "Its time to live (1 s .. 1 year)")
      ->required();
  add_safe(lease_cmd, "keepalive", "Renew a lease for another TTL (exit 1 if expired or unknown)",
           SafeCommand::kLeaseKeepAlive)
      ->add_option("ID", safe.lease, "The lease id")
      ->required();
  add_safe(lease_cmd, "revoke", "Revoke a lease and delete its keys (exit 1 if unknown)",
           SafeCommand::kLeaseRevoke)
      ->add_option("ID", safe.lease, "The lease id")
      ->required();

  TokenArgs token_args;
  CLI::App* token_cmd =
      app.add_subcommand("token", "Named tokens with access rules per key prefix (serve --auth)");
  token_cmd->require_subcommand(1);
  std::map<CLI::App*, TokenCommand> token_commands;
  auto add_token = [&](const char* name, const char* help, TokenCommand command) {
    CLI::App* cmd = token_cmd->add_subcommand(name, help);
    token_commands[cmd] = command;
    cmd->add_option("--dsn", token_args.dsn,
                    "The database of the served stores (default: env SYNCCONFIG_DSN): tokens "
                    "live in its table syncconfig_tokens");
    cmd->add_option("--schema", token_args.schema,
                    "With --dsn: the schema of the first served store")
        ->capture_default_str();
    cmd->add_option("--server", token_args.server,
                    "Instead of --dsn: a 'syncconfig serve --auth', with an admin token");
    cmd->add_option("--token", token_args.token,
                    "With --server: a token with admin on every key (default: env "
                    "SYNCCONFIG_TOKEN)");
    add_log_level(cmd, log_level, "warn");
    return cmd;
  };
  CLI::App* token_create =
      add_token("create", "Create a token; prints its secret once, alone on the last line",
                TokenCommand::kCreate);
  token_create->add_option("NAME", token_args.name, "Its name (recorded as the actor of writes)")
      ->required();
  token_create
      ->add_option("--allow", token_args.allow,
                   "PREFIX=ACCESS, repeatable: ACCESS deny, read, write or admin; an empty "
                   "PREFIX means every key; the longest matching prefix decides")
      ->required();
  add_token("list", "Print the tokens, one JSON line each (never their secrets)",
            TokenCommand::kList);
  add_token("revoke", "Revoke a token (exit 1 if no active token has that name)",
            TokenCommand::kRevoke)
      ->add_option("NAME", token_args.name, "Its name")
      ->required();

  CLI::App* demo_cmd = app.add_subcommand(
      "demo", "Show three instances syncing on an embedded PostgreSQL (about 5 seconds)");
  add_log_level(demo_cmd, log_level, "warn");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::string first = argc > 1 ? argv[1] : "";
    auto subcommands =
        app.get_subcommands([&](const CLI::App* c) { return c->get_name() == first; });
    if (!first.empty() && first[0] != '-' && subcommands.empty()) {
      print_error("unknown command '" + first +
                  "' (commands: serve, get, set, delete, list, watch, crc, apply, history, diff, "
                  "rollback, lease, token, demo)");
    } else {
      print_error(e.what());
    }
    std::cerr << "Run 'syncconfig --help' or 'syncconfig COMMAND --help' for usage." << std::endl;
    return kExitUsage;
  }

  CLI::App* chosen = app.get_subcommands().front();
  if (chosen == lease_cmd) chosen = lease_cmd->get_subcommands().front();
  if (chosen == token_cmd) chosen = token_cmd->get_subcommands().front();
  // Logs go to stderr: stdout carries the commands' JSON output.
  auto logger = spdlog::stderr_color_mt("syncconfig");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  if (log_level.empty()) log_level = chosen == serve_cmd ? "info" : "warn";
  spdlog::set_level(kLevels.at(log_level));

  try {
    if (chosen == serve_cmd) return run_serve(serve);
    if (chosen == demo_cmd) return run_demo();
    if (auto it = token_commands.find(chosen); it != token_commands.end()) {
      token_args.command = it->second;
      return run_token(token_args);
    }
    if (auto it = safe_commands.find(chosen); it != safe_commands.end()) {
      safe.command = it->second;
      const CLI::Option* prefix = chosen->get_option_no_throw("--prefix");
      safe.prefix_given = prefix != nullptr && prefix->count() > 0;
      return run_safe(safe);
    }
    op.operation = operations.at(chosen);
    if (op.if_revision && *op.if_revision < 0) {
      throw UsageError("--if-revision must be a revision (0 or more)");
    }
    if (op.if_revision == 0 && op.operation == Operation::kDelete) {
      throw UsageError("--if-revision 0 on delete: a key cannot be deleted only if it is absent");
    }
    if (op.lease < 0) throw UsageError("--lease must be a lease id (1 or more)");
    return run_operator(op);
  } catch (const UsageError& e) {
    print_error(e.what());
    return kExitUsage;
  } catch (const syncconfig::service::ConfigError& e) {
    print_error(e.what());
    return kExitUsage;
  } catch (const syncconfig::Error& e) {
    print_error(e.what());
    return exit_code_for(e);
  } catch (const std::exception& e) {
    print_error(e.what());
    return kExitFailure;
  }
}
