// A syncconfig server as the operator commands use it over --server: the HTTP client, the path
// of the chosen store, and what the server's answers mean as exit codes and messages.
//
// Statuses: 2xx success; 404 from a key route "not found" (exit 1, get and delete); 401 exit 2
// (the token is missing or wrong: a configuration mistake that retrying cannot fix); any other
// 4xx exit 2 with the server's message (a bad key or value, an unknown store); 5xx exit 3 with
// the server's message; 412 (If-Match failed) and 409 (a transaction's guard failed) exit 4; an
// answer without a JSON {"error": ...} body, where one was due, exit 3
// (probably not a syncconfig server). Transport failures (unreachable, timeout) exit 3.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "cli/target.h"
#include "http/http_client.h"
#include "syncconfig/error.h"

namespace syncconfig::cli {

class RemoteSession {
 public:
  explicit RemoteSession(const ServerTarget& target);

  http::HttpClient& client() { return client_; }
  const ServerTarget& target() const { return target_; }
  // The URL as messages show it.
  std::string url() const { return target_.url.to_string(); }
  // "" for the default store, "/stores/NAME" (percent-encoded) for --store NAME.
  std::string scope() const;

  // client().request(); a failure to reach the server is rethrown through unreachable().
  http::Response request(std::string_view method, const std::string& target,
                         std::string_view body = {}, const http::Headers& headers = {});
  // The JSON body of a successful answer; throws Error(kUnavailable) when it is not JSON.
  nlohmann::json body_of(const http::Response& r) const;
  // A 412 answer (If-Match failed): prints the key's current state from its body and returns 4.
  int precondition_failed(const http::Response& r, const std::string& key) const;
  // The error to report for `e`, a failure to reach the server: for a server that was neither
  // named nor configured, one that says what was tried and how to name a server or a database.
  Error unreachable(const Error& e) const;
  // Prints the message for an answer that is not the success a command wanted and returns its
  // exit code (see the top of this file).
  int refused(const http::Response& r) const;

  // The "error" string of a JSON error body, or nullopt.
  static std::optional<std::string> error_message(const http::Response& r);

 private:
  ServerTarget target_;
  http::HttpClient client_;
};

}  // namespace syncconfig::cli
