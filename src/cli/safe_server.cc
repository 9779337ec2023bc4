// The commands of safe changes through a syncconfig server: the routes of
// docs/safe-changes-http.md. A refusal is printed as for the other commands (remote_session.h)
// and ends the command (Refused); 409 is a transaction's failed guard (an outcome), 410 a
// revision the server has no state for (Error kOutOfRange, as the library throws).
#include <nlohmann/json.hpp>

#include "cli/remote_session.h"
#include "cli/safe_target.h"
#include "http/safe_json.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

// A revision in a header; -1 when it is not one.
int64_t parse_revision(const std::string& text) {
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(text);
}

class ServerSafeTarget final : public SafeTarget {
 public:
  explicit ServerSafeTarget(const ServerTarget& server) : session_(server) {}

  Snapshot read(const std::string& prefix) override {
    std::string target = session_.scope() + "/settings";
    if (!prefix.empty()) target += "?prefix=" + http::percent_encode(prefix);
    return settings(target);
  }

  // GET /settings/{key}: the value from the same cache as read()'s, its revision in the ETag.
  std::optional<Config::Versioned> versioned(const std::string& key) override {
    http::Response r =
        session_.request("GET", session_.scope() + "/settings/" + http::percent_encode(key));
    if (r.status == 404 && RemoteSession::error_message(r)) return std::nullopt;
    json value = expect(r, 200);
    std::optional<std::string> etag = r.header("ETag");
    int64_t revision = 0;
    if (etag && etag->size() > 2 && etag->front() == '"' && etag->back() == '"') {
      revision = parse_revision(etag->substr(1, etag->size() - 2));
    }
    if (revision <= 0) {
      throw Error(ErrorCode::kUnavailable, "the answer from " + session_.url() + " to GET " +
                                               "/settings/{key} has no ETag with the revision");
    }
    return Config::Versioned{std::move(value), revision};
  }

  TxnResult commit(const Transaction& txn) override {
    return txn_result(
        session_.request("POST", session_.scope() + "/txn", http_json::to_json(txn).dump()));
  }

  std::vector<HistoryRecord> history(const Config::HistoryQuery& query) override {
    std::string target = session_.scope() + "/history";
    target += query.prefix ? "?prefix=" + http::percent_encode(query.key) + "&"
                           : "/" + http::percent_encode(query.key) + "?";
    target += "limit=" + std::to_string(query.limit);
    if (query.before != 0) target += "&before=" + std::to_string(query.before);
    json body = expect(session_.request("GET", target), 200);
    std::vector<HistoryRecord> out;
    if (!body.contains("history") || !body["history"].is_array()) return out;
    for (const json& h : body["history"]) {
      out.push_back(http_json::history_record_from_json(h));
      // The wire format writes an absent value as null: a set wrote one, null or not.
      if (out.back().op == "set" && !out.back().value) out.back().value = json(nullptr);
      if (out.back().previous_revision != 0 && !out.back().previous_value) {
        out.back().previous_value = json(nullptr);
      }
    }
    return out;
  }

  Snapshot snapshot_at(int64_t revision, const std::string& prefix) override {
    std::string target = session_.scope() + "/settings?at=" + std::to_string(revision);
    if (!prefix.empty()) target += "&prefix=" + http::percent_encode(prefix);
    Snapshot snapshot = settings(target);
    // A server without ?at= answers the current settings: never show those as the past.
    if (snapshot.revision != revision) {
      throw Error(ErrorCode::kUnavailable,
                  "the server at " + session_.url() +
                      " answered GET /settings?at=" + std::to_string(revision) + " with revision " +
                      std::to_string(snapshot.revision) +
                      ": it does not serve past states (an older syncconfig server?)");
    }
    return snapshot;
  }

  TxnResult rollback(const std::string& target, bool prefix, int64_t revision,
                     const std::string& comment) override {
    json body = {{prefix ? "prefix" : "key", target}, {"to", revision}, {"comment", comment}};
    return txn_result(session_.request("POST", session_.scope() + "/rollback", body.dump()));
  }

  Lease grant_lease(std::chrono::seconds ttl) override {
    json body = {{"ttl", ttl.count()}};
    return http_json::lease_from_json(
        expect(session_.request("POST", session_.scope() + "/leases", body.dump()), 200));
  }

  std::optional<Lease> keep_alive(int64_t lease) override {
    http::Response r = session_.request(
        "POST", session_.scope() + "/leases/" + std::to_string(lease) + "/keepalive");
    if (r.status == 404 && RemoteSession::error_message(r)) return std::nullopt;
    return http_json::lease_from_json(expect(r, 200));
  }

  bool revoke_lease(int64_t lease) override {
    http::Response r =
        session_.request("DELETE", session_.scope() + "/leases/" + std::to_string(lease));
    if (r.status == 404 && RemoteSession::error_message(r)) return false;
    expect(r, 200);
    return true;
  }

 private:
  // The body of an answer with status `status`. Otherwise: 410 throws kOutOfRange with the
  // server's message; anything else is printed and ends the command.
  json expect(const http::Response& r, int status) {
    if (r.status == status) return session_.body_of(r);
    if (r.status == 410 && RemoteSession::error_message(r)) {
      throw Error(ErrorCode::kOutOfRange, *RemoteSession::error_message(r));
    }
    throw Refused{session_.refused(r)};
  }

  Snapshot settings(const std::string& target) {
    http::Response r = session_.request("GET", target);
    json body = expect(r, 200);
    if (!body.is_object()) {
      throw Error(ErrorCode::kUnavailable,
                  "the answer from " + session_.url() + " to GET /settings is not a JSON object");
    }
    Snapshot snapshot;
    for (auto& [key, value] : body.items()) snapshot.values[key] = value;
    std::optional<std::string> revision = r.header("X-Syncconfig-Revision");
    snapshot.revision = revision ? parse_revision(*revision) : -1;
    if (snapshot.revision < 0) {
      throw Error(ErrorCode::kUnavailable, "the answer from " + session_.url() +
                                               " to GET /settings has no X-Syncconfig-Revision");
    }
    return snapshot;
  }

  // 200 committed, 409 a failed guard (with the state found), else refused.
  TxnResult txn_result(const http::Response& r) {
    if (r.status != 409) expect(r, 200);
    TxnResult result = http_json::txn_result_from_json(session_.body_of(r));
    // A key holding null is at a revision: only revision 0 is absent.
    for (KeyState& k : result.current) {
      if (k.revision != 0 && !k.value) k.value = json(nullptr);
    }
    return result;
  }

  RemoteSession session_;
};

}  // namespace

std::unique_ptr<SafeTarget> server_target(const ServerTarget& server) {
  return std::make_unique<ServerSafeTarget>(server);
}

}  // namespace syncconfig::cli
