// `syncconfig serve`: the stores of a service-definitions file, of one DSN, or of an embedded
// PostgreSQL, served over HTTP until SIGINT/SIGTERM.
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <charconv>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <optional>
#include <utility>
#include <vector>

#include "auth/tokens.h"
#include "cli/commands.h"
#include "cli/server_file.h"
#include "config/service_config.h"
#include "db/connection.h"
#include "http/http_server.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

namespace syncconfig::cli {
namespace {

struct ListenAddress {
  std::string host;
  int port = 0;
};

// "HOST:PORT" or "[IPV6]:PORT"; PORT 0 picks a free port.
ListenAddress parse_listen(const std::string& text) {
  auto bad = [&] {
    return UsageError("--listen " + text + ": expected HOST:PORT (e.g. 127.0.0.1:8080, [::1]:0)");
  };
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) throw bad();
  ListenAddress address;
  address.host = text.substr(0, colon);
  if (address.host.front() == '[') {
    if (address.host.size() < 3 || address.host.back() != ']') throw bad();
    address.host = address.host.substr(1, address.host.size() - 2);
  } else if (address.host.find(':') != std::string::npos) {
    throw bad();  // An IPv6 address needs brackets.
  }
  std::string port = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (ec != std::errc() || end != port.data() + port.size() || address.port < 0 ||
      address.port > 65535) {
    throw bad();
  }
  return address;
}

// The URL a client on this machine reaches the server at: a wildcard address becomes loopback.
std::string local_url(const std::string& host, int port, bool tls) {
  std::string h = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return (tls ? "https://" : "http://") + h + ":" + std::to_string(port);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

const char* signal_name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a stop request";
  }
}

// The token table's store. Beside a store's snapshot file, the tokens get one of their own
// (FILE.tokens: hashes and rules, mode 0600), so that a server with --auth can start, and
// authenticate, while the database is down, as the store it serves can.
Options token_options(const std::string& schema, const std::string& store_snapshot_file) {
  Options o = auth::token_store_options(schema);
  if (!store_snapshot_file.empty()) o.snapshot_file = store_snapshot_file + ".tokens";
  return o;
}

}  // namespace

// Every /watch stream is a socket: take the file descriptors the system allows (the soft limit
// is often 1024).
void raise_open_files_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      spdlog::warn("could not raise the open files limit to {}", limit.rlim_max);
    }
  }
}

int run_serve(const ServeArgs& args) {
  // The environment stands in for each flag (the systemd unit's /etc/default/syncconfig); the
  // config file's serve: {tls_cert, tls_key} come last (read below, with the file).
  std::string tls_cert =
      !args.tls_cert.empty() ? args.tls_cert : env("SYNCCONFIG_TLS_CERT").value_or("");
  std::string tls_key =
      !args.tls_key.empty() ? args.tls_key : env("SYNCCONFIG_TLS_KEY").value_or("");
  if (tls_cert.empty() != tls_key.empty()) {
    throw UsageError(tls_cert.empty() ? "--tls-key (SYNCCONFIG_TLS_KEY) needs --tls-cert"
                                      : "--tls-cert (SYNCCONFIG_TLS_CERT) needs --tls-key");
  }
  // First, so that a signal arriving during startup shuts down cleanly after it. SIGHUP
  // reloads the TLS certificate (on this thread, below); it never stops the server.
  StopSignal stop(/*with_reload=*/true);
  raise_open_files_limit();
  ListenAddress address = parse_listen(args.listen);
  std::string token = args.token.empty() ? env("SYNCCONFIG_TOKEN").value_or("") : args.token;
  int64_t rate_limit = args.rate_limit;  // The config file's when not given.
  int64_t rate_limit_burst = args.rate_limit_burst;

  // Declaration order is teardown order, reversed: server, then stores, then the database.
  std::unique_ptr<EmbeddedPostgres> embedded;
  std::vector<std::pair<std::string, std::unique_ptr<Config>>> stores;
  // --auth: the named tokens, in the table syncconfig_tokens beside the first store.
  std::unique_ptr<Store> token_store;
  if (args.auth && !token.empty()) {
    throw UsageError(
        "--auth (named tokens) and --token/SYNCCONFIG_TOKEN (one shared token) cannot be used "
        "together: create an admin token instead ('syncconfig token create NAME --allow "
        "=admin')");
  }
  if (!args.upstream.empty()) {
    if (!args.dsn.empty() || !args.config.empty()) {
      throw UsageError("--upstream cannot be used with --dsn or --config");
    }
    if (args.auth) {
      throw UsageError("--auth needs the database (--dsn or --config): a relay has no tokens");
    }
    RemoteOptions options;
    options.store = args.upstream_store;
    options.token = args.upstream_token.empty() ? env("SYNCCONFIG_UPSTREAM_TOKEN").value_or("")
                                                : args.upstream_token;
    options.snapshot_file = args.snapshot_file;
    options.ca_file = !args.upstream_ca_file.empty() ? args.upstream_ca_file
                                                     : env("SYNCCONFIG_CA_FILE").value_or("");
    spdlog::info("relaying store '{}' of {} (the first that answers)",
                 args.upstream_store.empty() ? "default" : args.upstream_store,
                 fmt::join(args.upstream, ", "));
    stores.emplace_back("default", RemoteStore::open(args.upstream, std::move(options)));
  } else if (!args.config.empty()) {
    if (!args.snapshot_file.empty()) {
      throw UsageError(
          "--snapshot-file goes with --dsn or --upstream (with --config, set "
          "snapshot_file per store in the file)");
    }
    if (!args.dsn.empty()) throw UsageError("--dsn and --config cannot be used together");
    service::ServiceConfig config = service::load_service_config(args.config);
    PoolManager pools;
    for (const service::PoolEntry& p : config.pools) {
      pools.register_named(p.name, p.dsn, p.schema);
      spdlog::info("pool '{}': {} (schema {})", p.name, internal::redact_dsn(p.dsn), p.schema);
    }
    for (const service::StoreEntry& s : config.stores) {
      spdlog::info("opening store '{}': table {}.{} on pool '{}', channel {}", s.name,
                   s.options.schema, s.options.table_name, s.pool, s.options.channel);
      stores.emplace_back(s.name, Store::open(pools, s.pool, s.options));
    }
    if (config.auth && !args.auth) spdlog::info("serve: auth: true in {}", args.config);
    if (rate_limit == 0) rate_limit = config.rate_limit;
    if (rate_limit_burst == 0) rate_limit_burst = config.rate_limit_burst;
    if (tls_cert.empty() && !config.tls_cert.empty()) {
      spdlog::info("serve: TLS certificate {} and key {} from {}", config.tls_cert, config.tls_key,
                   args.config);
      tls_cert = config.tls_cert;
      tls_key = config.tls_key;
    }
    if (args.auth || config.auth) {
      if (!token.empty()) {
        throw UsageError(
            "auth: true in " + args.config +
            " and --token/SYNCCONFIG_TOKEN cannot be used together: create an admin token "
            "instead");
      }
      const service::StoreEntry& first = config.stores.front();
      spdlog::info("--auth: named tokens in {}.{} on pool '{}'", first.options.schema,
                   auth::kTokenTable, first.pool);
      token_store = Store::open(pools, first.pool,
                                token_options(first.options.schema, first.options.snapshot_file));
    }
  } else {
    std::string dsn = args.dsn.empty() ? env("SYNCCONFIG_DSN").value_or("") : args.dsn;
    if (dsn.empty()) {
      EmbeddedPostgresOptions options;
      options.data_dir = std::filesystem::absolute(
          args.data_dir.empty() ? std::string(".syncconfig") : args.data_dir);
      spdlog::info("no --dsn, --config or SYNCCONFIG_DSN: using an embedded PostgreSQL in {}",
                   options.data_dir.string());
      embedded = std::make_unique<EmbeddedPostgres>(options);
      embedded->start();
      dsn = embedded->dsn();
      spdlog::info("embedded PostgreSQL ready at {}", internal::redact_dsn(dsn));
    }
    check_dsn(dsn);
    spdlog::info("opening store 'default' at {}", internal::redact_dsn(dsn));
    Options options;
    options.snapshot_file = args.snapshot_file;
    stores.emplace_back("default", Store::open(dsn, std::move(options)));
    if (args.auth) {
      spdlog::info("--auth: named tokens in public.{}", auth::kTokenTable);
      token_store = Store::open(dsn, token_options("public", args.snapshot_file));
    }
  }
  const bool tls = !tls_cert.empty();
  std::shared_ptr<auth::TokenRegistry> registry;
  if (token_store) registry = std::make_shared<auth::TokenRegistry>(*token_store);

  std::vector<service::ServedStore> served;
  for (auto& [name, store] : stores) served.push_back({name, store.get()});
  service::HttpOptions http;
  http.host = address.host;
  http.port = address.port;
  http.token = token;
  http.tls_cert_file = tls_cert;
  http.tls_key_file = tls_key;
  http.tokens = registry;
  http.ui_dir = args.ui_dir;
  http.rate_limit = static_cast<double>(rate_limit);
  http.rate_limit_burst = static_cast<double>(rate_limit_burst);
  if (rate_limit > 0) {
    spdlog::info("rate limit: {} requests per second per {} (bursts of {})", rate_limit,
                 registry ? "token" : "client address",
                 rate_limit_burst > 0 ? rate_limit_burst : rate_limit);
  }
  if (token.empty() && !registry && !is_loopback(address.host)) {
    spdlog::warn(
        "listening on {} without a token (--token or SYNCCONFIG_TOKEN): anyone who can "
        "reach it can change the configuration",
        address.host);
  }
  service::HttpServer server(std::move(served), http);
  server.start();
  // On the embedded PostgreSQL, say where we listen for `syncconfig get` & co. run in the same
  // directory (cli/target.h). Before "listening on", so that whoever waits for that line finds
  // the file too.
  std::optional<PublishedServerFile> published;
  if (embedded) {
    try {
      published.emplace(embedded->data_dir(), local_url(address.host, server.port(), tls));
      spdlog::info("wrote {} for the operator commands", published->path().string());
    } catch (const Error& e) {
      spdlog::warn("{}: operator commands run here will not find this server without --server",
                   e.what());
    }
  }
  std::string url_host =
      address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host;
  std::cout << "listening on " << (tls ? "https://" : "http://") << url_host << ":" << server.port()
            << std::endl;

  int signo = stop.wait();
  while (signo == SIGHUP) {
    // On this (the main) thread, never in the handler. The server logs the outcome; a bad file
    // leaves the previous certificate in use.
    if (!tls) {
      spdlog::info("SIGHUP received: nothing to reload (no --tls-cert)");
    } else {
      spdlog::info("SIGHUP received: reloading the TLS certificate and key");
      try {
        server.reload_tls();
      } catch (const Error&) {
        // Logged by reload_tls(), naming the file.
      }
    }
    signo = stop.wait();
  }
  spdlog::info("{} received: finishing requests in flight and shutting down", signal_name(signo));
  published.reset();  // First: no new client should find a server that is going away.
  server.stop();
  for (auto it = stores.rbegin(); it != stores.rend(); ++it) it->second->shutdown();
  stores.clear();
  if (embedded) embedded->stop();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace syncconfig::cli
