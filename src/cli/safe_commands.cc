// The commands of safe changes, on either path (safe_target.h): apply, history, diff, rollback
// and lease. set/delete --if-revision/--comment/--lease are in operator_commands.cc and
// remote_commands.cc with the rest of set and delete.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/safe_target.h"
#include "cli/settings_file.h"
#include "http/safe_json.h"
#include "util/validation.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

std::string shown(const std::optional<json>& value) {
  return value ? json_text(*value) : std::string("(absent)");
}

// The lines of the difference from `from` to `to`: "+ key value", "- key", "~ key old -> new".
std::vector<std::string> diff_lines(const std::map<std::string, json>& from,
                                    const std::map<std::string, json>& to) {
  std::vector<std::string> lines;
  std::map<std::string, int> keys;
  for (const auto& [key, value] : from) keys[key] |= 1;
  for (const auto& [key, value] : to) keys[key] |= 2;
  for (const auto& [key, where] : keys) {
    if (where == 2) {
      lines.push_back("+ " + key + " " + json_text(to.at(key)));
    } else if (where == 1) {
      lines.push_back("- " + key);
    } else if (from.at(key) != to.at(key)) {
      lines.push_back("~ " + key + " " + json_text(from.at(key)) + " -> " + json_text(to.at(key)));
    }
  }
  return lines;
}

// A transaction (or rollback) whose guard failed: what it found, on stderr; exit 4.
int txn_conflict(const TxnResult& r, const std::string& what) {
  print_error("conflict: " + what + (r.reason.empty() ? "" : " (" + r.reason + ")") +
              "; nothing was written");
  for (const KeyState& s : r.current) {
    std::cerr << "  key " << show_key(s.key)
              << (s.revision == 0 ? std::string(" is absent")
                                  : " is at revision " + std::to_string(s.revision) +
                                        " with value " + shown(s.value))
              << '\n';
  }
  std::cerr.flush();
  return kExitConflict;
}

int apply(const SafeArgs& args) {
  std::map<std::string, json> wanted;
  for (auto& [key, value] : load_settings_file(args.file)) {
    std::string full = args.prefix + key;
    internal::validate_key(full);
    wanted[full] = std::move(value);
  }
  std::unique_ptr<SafeTarget> target = open_safe_target(args.connection);
  Snapshot state = target->read(args.prefix);
  std::map<std::string, json> current = state.values;
  if (!args.prune) {
    // Keys the file does not name are left alone: no "-" lines.
    for (auto it = current.begin(); it != current.end();) {
      it = wanted.contains(it->first) ? std::next(it) : current.erase(it);
    }
  }
  std::vector<std::string> lines = diff_lines(current, wanted);
  if (lines.empty()) {
    std::cout << "no changes\n";
    return printed();
  }
  // Guarded by the state the diff was made from: each changed key at the revision of the value
  // it replaces, or absent; with --prune, no key under the prefix changed after the read (a key
  // created meanwhile would escape the pruning).
  Transaction txn;
  txn.comment = args.comment;
  for (const auto& [key, value] : wanted) {
    auto found = current.find(key);
    if (found != current.end() && found->second == value) continue;
    txn.set(key, value);
    if (found == current.end()) {
      txn.require_absent(key);
      continue;
    }
    std::optional<Config::Versioned> now = target->versioned(key);
    if (!now || now->value != found->second) {
      return txn_conflict(
          {false,
           0,
           std::nullopt,
           "changed since the diff was read",
           {{key, now ? now->revision : 0, now ? std::optional<json>(now->value) : std::nullopt}}},
          "key " + show_key(key) + " changed while apply read the store");
    }
    txn.require(key, now->revision);
  }
  for (const auto& [key, value] : current) {
    if (wanted.contains(key)) continue;
    std::optional<Config::Versioned> now = target->versioned(key);
    if (!now || now->value != value) {
      return txn_conflict(
          {false,
           0,
           std::nullopt,
           "changed since the diff was read",
           {{key, now ? now->revision : 0, now ? std::optional<json>(now->value) : std::nullopt}}},
          "key " + show_key(key) + " changed while apply read the store");
    }
    txn.remove(key);
    txn.require(key, now->revision);
  }
  if (args.prune) txn.require_unchanged(args.prefix, state.revision);

  for (const std::string& line : lines) std::cout << line << '\n';
  if (args.dry_run) {
    std::cerr << "syncconfig: dry run: nothing was written" << std::endl;
    return printed();
  }
  // The diff is out before the transaction goes: what it applies is what was shown.
  if (int code = printed(); code != kExitOk) return code;
  TxnResult r = target->commit(txn);
  if (!r) {
    std::string what = "the store changed after the diff was read";
    if (r.failed_guard && *r.failed_guard < txn.guards.size()) {
      const Guard& g = txn.guards[*r.failed_guard];
      what = g.kind == Guard::Kind::kUnchanged
                 ? "keys starting with " + show_key(g.key) + " changed after revision " +
                       std::to_string(g.revision)
                 : "key " + show_key(g.key) + " changed after the diff was read";
    }
    return txn_conflict(r, what);
  }
  std::cout << "applied " << txn.operations.size()
            << (txn.operations.size() == 1 ? " change" : " changes") << " at revision "
            << r.revision << '\n';
  return printed();
}

int history(const SafeArgs& args) {
  if (args.prefix_given == !args.key.empty()) {
    throw UsageError("history: give either KEY or --prefix P");
  }
  if (args.limit < 1 || args.limit > 10000) throw UsageError("--limit must be 1..10000");
  if (!args.prefix_given) internal::validate_key(args.key);
  Config::HistoryQuery query{args.prefix_given ? args.prefix : args.key, args.prefix_given,
                             static_cast<std::size_t>(args.limit), 0};
  std::unique_ptr<SafeTarget> target = open_safe_target(args.connection);
  for (const HistoryRecord& h : target->history(query)) {
    std::string line = std::to_string(h.revision) + "  " + http_json::format_time(h.changed_at) +
                       "  " + h.op + "  " + show_key(h.key) + "  " + shown(h.previous_value) +
                       " -> " + shown(h.value) + "  actor " + show_key(h.actor);
    if (!h.comment.empty()) line += "  comment " + show_key(h.comment);
    std::cout << line << '\n';
  }
  return printed();
}

void check_revision(const char* option, int64_t revision) {
  if (revision < 0) {
    throw UsageError(std::string(option) + " must be a revision (0 or more), not " +
                     std::to_string(revision));
  }
}

int diff(const SafeArgs& args) {
  check_revision("--from", args.from);
  check_revision("--to", args.to);
  std::unique_ptr<SafeTarget> target = open_safe_target(args.connection);
  Snapshot from = target->snapshot_at(args.from, args.prefix);
  Snapshot to = target->snapshot_at(args.to, args.prefix);
  std::vector<std::string> lines = diff_lines(from.values, to.values);
  if (lines.empty()) std::cout << "no differences\n";
  for (const std::string& line : lines) std::cout << line << '\n';
  return printed();
}

int rollback(const SafeArgs& args) {
  if (args.prefix_given == !args.key.empty()) {
    throw UsageError("rollback: give either KEY or --prefix P");
  }
  check_revision("--to", args.to);
  if (!args.prefix_given) internal::validate_key(args.key);
  const std::string& what = args.prefix_given ? args.prefix : args.key;
  std::unique_ptr<SafeTarget> target = open_safe_target(args.connection);
  TxnResult r = target->rollback(what, args.prefix_given, args.to, args.comment);
  if (!r) return txn_conflict(r, "the store changed while the rollback was computed");
  if (r.revision == 0) {
    std::cout << "no changes: already as at revision " << args.to << '\n';
  } else {
    std::cout << "rolled back to revision " << args.to << " at revision " << r.revision << '\n';
  }
  return printed();
}

int lease(const SafeArgs& args) {
  if (args.command == SafeCommand::kLeaseGrant) {
    if (args.ttl < 1) throw UsageError("TTL_SECONDS must be 1 or more");
    Lease lease = open_safe_target(args.connection)->grant_lease(std::chrono::seconds(args.ttl));
    std::cout << lease.id << '\n';
    return printed();
  }
  if (args.lease < 1) throw UsageError("ID must be a lease id (1 or more)");
  std::unique_ptr<SafeTarget> target = open_safe_target(args.connection);
  if (args.command == SafeCommand::kLeaseKeepAlive) {
    std::optional<Lease> lease = target->keep_alive(args.lease);
    if (!lease) {
      print_error("lease " + std::to_string(args.lease) + " not found (expired or revoked)");
      return kExitNotFound;
    }
    std::cout << "lease " << lease->id << " expires at "
              << http_json::format_time(lease->expires_at) << '\n';
    return printed();
  }
  if (!target->revoke_lease(args.lease)) {
    print_error("lease " + std::to_string(args.lease) + " not found (expired or revoked)");
    return kExitNotFound;
  }
  return kExitOk;
}

}  // namespace

int run_safe(const SafeArgs& args) {
  try {
    switch (args.command) {
      case SafeCommand::kApply:
        return apply(args);
      case SafeCommand::kHistory:
        return history(args);
      case SafeCommand::kDiff:
        return diff(args);
      case SafeCommand::kRollback:
        return rollback(args);
      case SafeCommand::kLeaseGrant:
      case SafeCommand::kLeaseKeepAlive:
      case SafeCommand::kLeaseRevoke:
        return lease(args);
    }
  } catch (const Refused& refused) {
    return refused.exit_code;
  }
  return kExitUsage;
}

}  // namespace syncconfig::cli
