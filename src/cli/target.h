// Where an operator command goes: a database (--dsn, --config, SYNCCONFIG_DSN), or a syncconfig
// server over HTTP, which needs no database credentials.
//
// In order: --server URL; --dsn or --config; SYNCCONFIG_DSN or SYNCCONFIG_SERVER (both set is a
// usage error: choose with a flag); else the server found in the working directory:
// ./.syncconfig/server.json (written by `serve` on its embedded PostgreSQL) when the process it
// names is running, otherwise the default local server http://127.0.0.1:8080.
#pragma once

#include <optional>
#include <string>

#include "cli/commands.h"
#include "http/url.h"

namespace syncconfig::cli {

inline constexpr const char* kDefaultServerUrl = "http://127.0.0.1:8080";

struct ServerTarget {
  http::Url url;
  std::string token;    // --token or SYNCCONFIG_TOKEN; "" for none. Never printed.
  std::string ca_file;  // --ca-file or SYNCCONFIG_CA_FILE: https only; "" for the system's.
  std::string store;    // --store: a store served under /stores/NAME; "" for the default one.
  // How the server was chosen, for messages: "--server", "SYNCCONFIG_SERVER",
  // "./.syncconfig/server.json, pid 123", "the default local server; ...".
  std::string origin;
  // Neither named nor configured: when it does not answer, the message says how to name one.
  bool discovered = false;
};

// The server the command goes to, or nullopt for the database. Throws UsageError for options
// that conflict (--server with --dsn/--config, --table/--channel with a server, --token with a
// database) and for a server URL that does not parse (naming where it came from).
std::optional<ServerTarget> choose_server(const ConnectionArgs& args);

}  // namespace syncconfig::cli
