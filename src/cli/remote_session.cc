#include "cli/remote_session.h"

#include <nlohmann/json.hpp>

namespace syncconfig::cli {
namespace {

http::ClientOptions client_options(const ServerTarget& target) {
  http::ClientOptions options;
  options.token = target.token;
  options.ca_file = target.ca_file;
  options.connect_timeout = std::chrono::seconds(5);
  // The server bounds its own database calls (db_timeout, 5 s by default) and answers 503.
  options.request_timeout = std::chrono::seconds(30);
  // Four missed keepalives of our server (one every 15 s).
  options.watch_idle_timeout = std::chrono::seconds(60);
  return options;
}

}  // namespace

RemoteSession::RemoteSession(const ServerTarget& target)
    : target_(target), client_(target.url, client_options(target)) {}

std::string RemoteSession::scope() const {
  return target_.store.empty() ? "" : "/stores/" + http::percent_encode(target_.store);
}

http::Response RemoteSession::request(std::string_view method, const std::string& target,
                                      std::string_view body, const http::Headers& headers) {
  try {
    return client_.request(method, target, body, headers);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kUnavailable || e.code() == ErrorCode::kTimeout) {
      throw unreachable(e);
    }
    throw;
  }
}

Error RemoteSession::unreachable(const Error& e) const {
  if (!target_.discovered) return e;
  return Error(e.code(),
               "no syncconfig server answered at " + url() + " (" + target_.origin +
                   "): " + e.message() +
                   ". Start one here with 'syncconfig serve' (scripts/run.sh), or say where to "
                   "go: --server URL (or SYNCCONFIG_SERVER) for a running server, --dsn DSN (or "
                   "SYNCCONFIG_DSN) for the database");
}

std::optional<std::string> RemoteSession::error_message(const http::Response& r) {
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("error") || !body["error"].is_string()) {
    return std::nullopt;
  }
  return body["error"].get<std::string>();
}

nlohmann::json RemoteSession::body_of(const http::Response& r) const {
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    throw Error(ErrorCode::kUnavailable, "the answer from " + url() + " (HTTP " +
                                             std::to_string(r.status) +
                                             ") is not JSON: is it a syncconfig server?");
  }
  return body;
}

int RemoteSession::precondition_failed(const http::Response& r, const std::string& key) const {
  nlohmann::json body = body_of(r);
  if (!body.is_object() || !body.contains("revision") || !body["revision"].is_number_integer()) {
    return refused(r);
  }
  std::optional<nlohmann::json> value;
  if (body.contains("value") && !body["value"].is_null()) value = body["value"];
  return conflict(key, body["revision"].get<int64_t>(), value);
}

int RemoteSession::refused(const http::Response& r) const {
  const std::string status = "HTTP " + std::to_string(r.status) + " from " + url();
  if (r.status == 401) {
    print_error(target_.token.empty()
                    ? "the server at " + url() +
                          " requires a token: pass --token TOKEN or set SYNCCONFIG_TOKEN"
                    : "the server at " + url() +
                          " refused the token given (--token or SYNCCONFIG_TOKEN)");
    return kExitUsage;
  }
  std::optional<std::string> message = error_message(r);
  if (!message) {
    print_error("unexpected answer (" + status +
                ", without a JSON error): is it a syncconfig server?");
    return kExitFailure;
  }
  if (r.status == 409 || r.status == 412) {
    print_error("conflict: " + *message + "; nothing was written");
    return kExitConflict;
  }
  if (r.status >= 400 && r.status < 500) {
    print_error(*message);
    return kExitUsage;
  }
  print_error(*message + " (" + status + ")");
  return kExitFailure;
}

}  // namespace syncconfig::cli
