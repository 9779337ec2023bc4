// The commands of safe changes through a syncconfig server: the routes of
// docs/safe-changes-http.md. A refusal is printed as for the other commands (remote_session.h)
// and ends the command (Refused); 409 is a transaction's failed guard (an outcome), 410 a
// revision the server has no state for (Error kOutOfRange, as the library throws).
#include <nlohmann/json.hpp>

#include "cli/remote_session.h"
#include "cli/safe_target.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

int64_t int_field(const json& object, const char* field) {
  if (!object.is_object() || !object.contains(field) || !object[field].is_number_integer()) {
    return 0;
  }
  return object[field].get<int64_t>();
}

std::string string_field(const json& object, const char* field) {
  if (!object.is_object() || !object.contains(field) || !object[field].is_string()) return {};
  return object[field].get<std::string>();
}

// A revision in a header; -1 when it is not one.
int64_t parse_revision(const std::string& text) {
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(text);
}

json txn_body(const Transaction& txn) {
  json guards = json::array();
  for (const Guard& g : txn.guards) {
    if (g.kind == Guard::Kind::kUnchanged) {
      guards.push_back({{"prefix", g.key}, {"unchanged_since", g.revision}});
    } else if (g.revision == 0) {
      guards.push_back({{"key", g.key}, {"absent", true}});
    } else {
      guards.push_back({{"key", g.key}, {"revision", g.revision}});
    }
  }
  json operations = json::array();
  for (const syncconfig::Operation& o : txn.operations) {
    if (o.value) {
      operations.push_back({{"op", "set"}, {"key", o.key}, {"value", *o.value}});
    } else {
      operations.push_back({{"op", "delete"}, {"key", o.key}});
    }
  }
  return {{"guards", guards}, {"operations", operations}, {"comment", txn.comment}};
}

Lease lease_of(const json& body) {
  Lease lease;
  lease.id = int_field(body, "id");
  lease.ttl = std::chrono::seconds(int_field(body, "ttl"));
  lease.expires_at = parse_time(string_field(body, "expires_at"));
  return lease;
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
    return txn_result(session_.request("POST", session_.scope() + "/txn", txn_body(txn).dump()));
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
      HistoryRecord record;
      record.revision = int_field(h, "revision");
      record.key = string_field(h, "key");
      record.op = string_field(h, "op");
      // A key may be set to null: "op" says whether there is a value after the change.
      if (record.op == "set" && h.contains("value")) record.value = h["value"];
      record.previous_revision = int_field(h, "previous_revision");
      if (record.previous_revision != 0 && h.contains("previous_value")) {
        record.previous_value = h["previous_value"];
      }
      record.changed_at = parse_time(string_field(h, "changed_at"));
      record.actor = string_field(h, "actor");
      record.comment = string_field(h, "comment");
      out.push_back(std::move(record));
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
    return lease_of(
        expect(session_.request("POST", session_.scope() + "/leases", body.dump()), 200));
  }

  std::optional<Lease> keep_alive(int64_t lease) override {
    http::Response r = session_.request(
        "POST", session_.scope() + "/leases/" + std::to_string(lease) + "/keepalive");
    if (r.status == 404 && RemoteSession::error_message(r)) return std::nullopt;
    return lease_of(expect(r, 200));
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
    TxnResult result;
    if (r.status == 409) {
      json body = session_.body_of(r);
      result.reason = string_field(body, "error");
      if (body.contains("failed_guard") && body["failed_guard"].is_number_unsigned()) {
        result.failed_guard = body["failed_guard"].get<std::size_t>();
      }
      if (body.contains("current") && body["current"].is_array()) {
        for (const json& c : body["current"]) {
          KeyState state{string_field(c, "key"), int_field(c, "revision"), std::nullopt};
          // A key may hold null: the revision says whether it is there.
          if (state.revision != 0 && c.contains("value")) state.value = c["value"];
          result.current.push_back(std::move(state));
        }
      }
      return result;
    }
    json body = expect(r, 200);
    result.committed = true;
    result.revision = int_field(body, "revision");
    return result;
  }

  RemoteSession session_;
};

}  // namespace

std::unique_ptr<SafeTarget> server_target(const ServerTarget& server) {
  return std::make_unique<ServerSafeTarget>(server);
}

}  // namespace syncconfig::cli
