#include "http/safe_json.h"

#include <fmt/format.h>

#include <cstdio>
#include <ctime>

#include "syncconfig/error.h"

namespace syncconfig::http_json {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::kInvalidArgument, what); }

int64_t revision_field(const json& j, const char* name, const std::string& where) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    bad(fmt::format("{}: \"{}\" must be a revision (a non-negative integer)", where, name));
  }
  return it->get<int64_t>();
}

std::string string_field(const json& j, const char* name, const std::string& where) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) {
    bad(fmt::format("{}: \"{}\" must be a string", where, name));
  }
  return it->get<std::string>();
}

json optional_value(const std::optional<json>& v) { return v.value_or(json(nullptr)); }

}  // namespace

std::string format_time(std::chrono::system_clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s) {
  std::tm tm{};
  long frac = 0;
  char z = 0;
  const std::string text(s);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6ld%c", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac, &z) != 8 ||
      z != 'Z' || text.size() != 27) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const std::time_t secs = timegm(&tm);
  return std::chrono::system_clock::time_point(std::chrono::seconds(secs) +
                                               std::chrono::microseconds(frac));
}

json to_json(const Transaction& txn) {
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
  json ops = json::array();
  for (const Operation& op : txn.operations) {
    if (op.value) {
      ops.push_back({{"op", "set"}, {"key", op.key}, {"value", *op.value}});
    } else {
      ops.push_back({{"op", "delete"}, {"key", op.key}});
    }
  }
  json out = {{"guards", std::move(guards)}, {"operations", std::move(ops)}};
  if (!txn.comment.empty()) out["comment"] = txn.comment;
  return out;
}

Transaction transaction_from_json(const json& body) {
  if (!body.is_object()) bad("a transaction is a JSON object with \"guards\" and \"operations\"");
  Transaction txn;
  if (auto g = body.find("guards"); g != body.end()) {
    if (!g->is_array()) bad("\"guards\" must be an array");
    for (std::size_t i = 0; i < g->size(); ++i) {
      const json& guard = (*g)[i];
      const std::string where = fmt::format("guard {}", i);
      if (!guard.is_object()) bad(where + ": must be an object");
      if (guard.contains("prefix")) {
        txn.guards.push_back(Guard::unchanged_since(
            string_field(guard, "prefix", where), revision_field(guard, "unchanged_since", where)));
      } else if (guard.value("absent", false) == true) {
        txn.guards.push_back(Guard::absent(string_field(guard, "key", where)));
      } else {
        const int64_t r = revision_field(guard, "revision", where);
        if (r == 0) bad(where + ": \"revision\" must be >= 1 (use \"absent\": true)");
        txn.guards.push_back(Guard::at(string_field(guard, "key", where), r));
      }
    }
  }
  auto ops = body.find("operations");
  if (ops == body.end() || !ops->is_array()) bad("\"operations\" must be an array");
  for (std::size_t i = 0; i < ops->size(); ++i) {
    const json& op = (*ops)[i];
    const std::string where = fmt::format("operation {}", i);
    if (!op.is_object()) bad(where + ": must be an object");
    const std::string kind = string_field(op, "op", where);
    if (kind == "set") {
      auto v = op.find("value");
      if (v == op.end()) bad(where + ": a set needs \"value\"");
      txn.set(string_field(op, "key", where), *v);
    } else if (kind == "delete") {
      txn.remove(string_field(op, "key", where));
    } else {
      bad(where + ": \"op\" must be \"set\" or \"delete\"");
    }
  }
  if (auto c = body.find("comment"); c != body.end()) {
    if (!c->is_string()) bad("\"comment\" must be a string");
    txn.comment = c->get<std::string>();
  }
  return txn;
}

json to_json(const TxnResult& r) {
  if (r.committed) return {{"committed", true}, {"revision", r.revision}};
  json current = json::array();
  for (const KeyState& k : r.current) {
    current.push_back(
        {{"key", k.key}, {"revision", k.revision}, {"value", optional_value(k.value)}});
  }
  return {{"committed", false},
          {"error", r.reason},
          {"failed_guard", r.failed_guard ? json(*r.failed_guard) : json(nullptr)},
          {"current", std::move(current)}};
}

TxnResult txn_result_from_json(const json& body) {
  TxnResult r;
  r.committed = body.value("committed", false);
  r.revision = body.value("revision", int64_t{0});
  if (!r.committed) {
    r.reason = body.value("error", std::string());
    if (auto f = body.find("failed_guard"); f != body.end() && f->is_number_unsigned()) {
      r.failed_guard = f->get<std::size_t>();
    }
    for (const json& k : body.value("current", json::array())) {
      // A key set to JSON null is present: absence is revision 0.
      KeyState st{k.value("key", std::string()), k.value("revision", int64_t{0}), std::nullopt};
      if (st.revision != 0) st.value = k.value("value", json(nullptr));
      r.current.push_back(std::move(st));
    }
  }
  return r;
}

json to_json(const HistoryRecord& h) {
  return {{"revision", h.revision},
          {"key", h.key},
          {"op", h.op},
          {"value", optional_value(h.value)},
          {"previous_value", optional_value(h.previous_value)},
          {"previous_revision", h.previous_revision},
          {"changed_at", format_time(h.changed_at)},
          {"actor", h.actor},
          {"comment", h.comment}};
}

HistoryRecord history_record_from_json(const json& j) {
  HistoryRecord h;
  h.revision = j.value("revision", int64_t{0});
  h.key = j.value("key", std::string());
  h.op = j.value("op", std::string());
  // A value of JSON null is a value: present after a set, and before a change that had a
  // previous revision.
  if (h.op == "set") h.value = j.value("value", json(nullptr));
  h.previous_revision = j.value("previous_revision", int64_t{0});
  if (h.previous_revision != 0 || !j.value("previous_value", json(nullptr)).is_null()) {
    h.previous_value = j.value("previous_value", json(nullptr));
  }
  h.changed_at = parse_time(j.value("changed_at", std::string()))
                     .value_or(std::chrono::system_clock::time_point());
  h.actor = j.value("actor", std::string());
  h.comment = j.value("comment", std::string());
  return h;
}

json to_json(const Lease& lease) {
  return {
      {"id", lease.id}, {"ttl", lease.ttl.count()}, {"expires_at", format_time(lease.expires_at)}};
}

Lease lease_from_json(const json& j) {
  Lease l;
  l.id = j.value("id", int64_t{0});
  l.ttl = std::chrono::seconds(j.value("ttl", int64_t{0}));
  l.expires_at = parse_time(j.value("expires_at", std::string()))
                     .value_or(std::chrono::system_clock::time_point());
  return l;
}

json to_json(const std::string& key, const KeyEntry& e) {
  return {{"key", key},
          {"value", e.value},
          {"revision", e.revision},
          {"updated_at", format_time(e.updated_at)},
          {"lease", e.lease}};
}

KeyEntry key_entry_from_json(const json& j) {
  KeyEntry e;
  e.value = j.value("value", json(nullptr));
  e.revision = j.value("revision", int64_t{0});
  e.updated_at = parse_time(j.value("updated_at", std::string()))
                     .value_or(std::chrono::system_clock::time_point());
  e.lease = j.value("lease", int64_t{0});
  return e;
}

}  // namespace syncconfig::http_json
