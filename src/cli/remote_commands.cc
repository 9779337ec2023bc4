// get, set, delete, list and crc through a syncconfig server (--server, SYNCCONFIG_SERVER, or
// the server found in the working directory): the same output and exit codes as on the database.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/remote_session.h"
#include "util/validation.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

json body_of(const RemoteSession& session, const http::Response& r) { return session.body_of(r); }

// The headers of a write: its comment (percent-encoded UTF-8) and the revision it expects.
http::Headers write_headers(const OperatorArgs& args) {
  http::Headers headers;
  if (!args.comment.empty()) {
    headers.emplace_back("X-Syncconfig-Comment", http::percent_encode(args.comment));
  }
  if (args.if_revision == 0) {
    headers.emplace_back("If-None-Match", "*");
  } else if (args.if_revision) {
    headers.emplace_back("If-Match", "\"" + std::to_string(*args.if_revision) + "\"");
  }
  return headers;
}

std::string key_target(const RemoteSession& session, const std::string& key) {
  return session.scope() + "/settings/" + http::percent_encode(key);
}

// get/delete: 404 with the server's JSON error is "not found" (exit 1), as on the database.
int not_found(const RemoteSession& session, const http::Response& r, const std::string& key) {
  if (r.status != 404 || !RemoteSession::error_message(r)) return session.refused(r);
  // The server's message names the key, or an unknown --store.
  std::string message = *RemoteSession::error_message(r);
  print_error(message.empty() ? "key " + show_key(key) + " not found" : message);
  return kExitNotFound;
}

int get(RemoteSession& session, const std::string& key) {
  // GET answers 404 for a key that cannot be stored; the database path says why it is invalid.
  internal::validate_key(key);
  http::Response r = session.request("GET", key_target(session, key));
  if (r.status != 200) return not_found(session, r, key);
  std::cout << json_text(body_of(session, r)) << '\n';
  return printed();
}

int set(RemoteSession& session, const OperatorArgs& args) {
  const std::string& key = args.key;
  // The server checks the key (400 names the problem); an empty one has no route to go to.
  if (key.empty()) internal::validate_key(key);
  const json value = parse_value(args.value);
  std::string target = key_target(session, key);
  if (args.lease != 0) target += "?lease=" + std::to_string(args.lease);
  http::Response r = session.request("PUT", target, json_text(value), write_headers(args));
  if (r.status == 412) return session.precondition_failed(r, key);
  return r.status == 200 ? kExitOk : session.refused(r);
}

int remove(RemoteSession& session, const OperatorArgs& args) {
  const std::string& key = args.key;
  if (key.empty()) internal::validate_key(key);
  http::Response r = session.request("DELETE", key_target(session, key), {}, write_headers(args));
  if (r.status == 412) return session.precondition_failed(r, key);
  return r.status == 200 ? kExitOk : not_found(session, r, key);
}

int list(RemoteSession& session, const std::string& prefix) {
  std::string target = session.scope() + "/settings";
  if (!prefix.empty()) target += "?prefix=" + http::percent_encode(prefix);
  http::Response r = session.request("GET", target);
  if (r.status != 200) return session.refused(r);
  json all = body_of(session, r);
  if (!all.is_object()) {
    throw Error(ErrorCode::kUnavailable,
                "the answer from " + session.url() + " to GET /settings is not a JSON object");
  }
  std::cout << json_text(all, 2) << '\n';
  return printed();
}

// The checksum from /health: the default store's, or that of --store under "stores".
int crc(RemoteSession& session) {
  http::Response r = session.request("GET", "/health");
  if (r.status == 503 && RemoteSession::error_message(r) == std::nullopt) {
    print_error("the server at " + session.url() +
                " is degraded (a store has no database connection): its checksum may be stale");
    return kExitFailure;
  }
  if (r.status != 200) return session.refused(r);
  json health = body_of(session, r);
  const json* fields = &health;
  const std::string& store = session.target().store;
  if (!store.empty()) {
    if (!health.contains("stores") || !health["stores"].contains(store)) {
      print_error("the server at " + session.url() + " serves no store " + show_key(store));
      return kExitUsage;
    }
    fields = &health["stores"][store];
  }
  if (!fields->contains("crc") || !(*fields)["crc"].is_number_unsigned()) {
    throw Error(ErrorCode::kUnavailable,
                "the answer from " + session.url() + " to GET /health has no \"crc\" number");
  }
  std::cout << (*fields)["crc"].get<uint64_t>() << '\n';
  return printed();
}

}  // namespace

int run_remote_operator(const OperatorArgs& args, const ServerTarget& server) {
  RemoteSession session(server);
  switch (args.operation) {
    case Operation::kGet:
      return get(session, args.key);
    case Operation::kSet:
      return set(session, args);
    case Operation::kDelete:
      return remove(session, args);
    case Operation::kList:
      return list(session, args.prefix);
    case Operation::kCrc:
      return crc(session);
    case Operation::kWatch:
      return watch_server(args, server);
  }
  return kExitUsage;
}

}  // namespace syncconfig::cli
