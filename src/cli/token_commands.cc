// `syncconfig token create|list|revoke`: named tokens (docs/access-control.md), on the token
// table of the database (--dsn: the database is the root of trust) or through a server's /tokens
// routes (--server with an admin token). create prints the secret once, alone on the last line
// of its output; list never prints secrets (they are not stored).
#include <iostream>
#include <nlohmann/json.hpp>

#include "auth/tokens.h"
#include "cli/commands.h"
#include "cli/remote_session.h"
#include "cli/target.h"
#include "syncconfig/syncconfig.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

std::string rules_text(const json& rules) {
  std::string out;
  for (const auto& r : rules) {
    if (!out.empty()) out += " ";
    out += r.at("prefix").get<std::string>() + "=" + r.at("access").get<std::string>();
  }
  return out;
}

// One line per token: its name, state, creation time and rules, as JSON.
void print_token(const std::string& name, const json& record) {
  json line = json::object();
  line["name"] = name;
  line["rules"] = rules_text(record.at("rules"));
  line["created_at"] = record.value("created_at", "");
  const bool revoked = record.contains("revoked_at") && record["revoked_at"].is_string();
  line["state"] = revoked ? "revoked" : "active";
  if (revoked) line["revoked_at"] = record["revoked_at"];
  std::cout << json_text(line) << "\n";
}

void print_created(const std::string& name, const std::vector<auth::Rule>& rules,
                   const std::string& secret) {
  std::cout << "created token '" << name
            << "' with rules: " << rules_text(auth::rules_to_json(rules)) << "\n"
            << "its secret follows, shown this once (send it as 'Authorization: Bearer "
               "SECRET'):\n"
            << secret << std::endl;
}

int run_on_database(const TokenArgs& a, const std::vector<auth::Rule>& rules) {
  std::string dsn = a.dsn.empty() ? env("SYNCCONFIG_DSN").value_or("") : a.dsn;
  if (dsn.empty())
    throw UsageError("no database given: use --dsn DSN (or SYNCCONFIG_DSN) or --server URL");
  check_dsn(dsn);
  Options options = auth::token_store_options(a.schema);
  options.enable_notification = false;  // Writes still notify the servers.
  options.pool_size = 1;
  std::unique_ptr<Store> store = Store::open(dsn, options);
  switch (a.command) {
    case TokenCommand::kCreate:
      print_created(a.name, rules, auth::create_token(*store, a.name, rules));
      return kExitOk;
    case TokenCommand::kList:
      for (const auth::TokenRecord& r : auth::list_tokens(*store))
        print_token(r.name, auth::to_json(r));
      return printed();
    case TokenCommand::kRevoke:
      if (!auth::revoke_token(*store, a.name)) {
        print_error("no active token named '" + a.name + "'");
        return kExitNotFound;
      }
      std::cout << "revoked token '" << a.name << "'" << std::endl;
      return kExitOk;
  }
  return kExitUsage;
}

int run_on_server(const TokenArgs& a, const std::vector<auth::Rule>& rules) {
  ServerTarget target;
  target.url = http::parse_url(a.server);
  target.token = a.token.empty() ? env("SYNCCONFIG_TOKEN").value_or("") : a.token;
  target.origin = "--server";
  if (target.token.empty()) {
    throw UsageError("--server needs an admin token: --token SECRET or SYNCCONFIG_TOKEN");
  }
  RemoteSession session(target);
  switch (a.command) {
    case TokenCommand::kCreate: {
      http::Response r = session.request(
          "POST", "/tokens", json{{"name", a.name}, {"rules", auth::rules_to_json(rules)}}.dump());
      if (r.status != 200) return session.refused(r);
      print_created(a.name, rules, session.body_of(r).at("secret").get<std::string>());
      return kExitOk;
    }
    case TokenCommand::kList: {
      http::Response r = session.request("GET", "/tokens");
      if (r.status != 200) return session.refused(r);
      const json body = session.body_of(r);  // Not a temporary in the loop: it must outlive it.
      for (const auto& t : body.at("tokens")) print_token(t.at("name"), t);
      return printed();
    }
    case TokenCommand::kRevoke: {
      http::Response r = session.request("DELETE", "/tokens/" + http::percent_encode(a.name));
      if (r.status == 404 && RemoteSession::error_message(r)) {
        print_error("no active token named '" + a.name + "'");
        return kExitNotFound;
      }
      if (r.status != 200) return session.refused(r);
      std::cout << "revoked token '" << a.name << "'" << std::endl;
      return kExitOk;
    }
  }
  return kExitUsage;
}

}  // namespace

int run_token(const TokenArgs& a) {
  std::vector<auth::Rule> rules;
  try {
    if (a.command != TokenCommand::kList) auth::validate_token_name(a.name);
    for (const std::string& text : a.allow) rules.push_back(auth::parse_rule(text));
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  if (a.command == TokenCommand::kCreate && rules.empty()) {
    throw UsageError("token create needs at least one --allow PREFIX=ACCESS");
  }
  if (!a.server.empty()) {
    if (!a.dsn.empty()) throw UsageError("--server and --dsn cannot be used together");
    return run_on_server(a, rules);
  }
  if (!a.token.empty())
    throw UsageError("--token goes with --server (with --dsn, the database is the authority)");
  return run_on_database(a, rules);
}

}  // namespace syncconfig::cli
