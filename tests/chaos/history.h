// The chaos test's checker: what was committed (the audit table), what every instance observed
// (its JSON-lines log) and what the table held at the end of each round, checked against the
// guarantees of docs/protocol.md. See docs/reliability.md for each check.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace chaos {

// One committed row change, recorded by an ALWAYS-enabled audit trigger in the writing
// transaction (so exactly the committed ones exist).
struct AuditOp {
  std::string key;                  // Empty for a truncation.
  std::string wid;                  // Write id of the new value ('u'); empty otherwise.
  char op = 'u';                    // 'u' upsert, 'd' delete, 't' truncate.
  std::optional<int64_t> revision;  // Normal writes; empty for replica-mode (no revision drawn).
  bool replica = false;  // Made with session_replication_role = replica: no notification.
  int64_t hint = 0;      // Replica-mode: the revision sequence's value when it ran.
};

// One incarnation of an instance process (a restart after SIGKILL is a new incarnation).
struct InstanceLog {
  std::string name;  // "i2.1"
  std::vector<nlohmann::json> lines;
  bool killed = false;  // Ended by SIGKILL (its last line may be missing).
};

// key -> write id, as the table held it when a round's faults had stopped.
using TableState = std::map<std::string, std::string>;

struct Figures {
  uint64_t sets_ok = 0, sets_failed = 0, removes_ok = 0, removes_failed = 0;
  uint64_t ambiguous = 0, ambiguous_committed = 0;
  uint64_t callbacks = 0, observations_checked = 0, pairs_exempt = 0;
  uint64_t replica_ops = 0, committed_ops = 0;
  // Heartbeats that found the cache different from the table (Stats::crc_mismatches), in the
  // rounds that had a replica-mode write (expected) and in the others (each one a violation).
  uint64_t heartbeat_diffs_excused = 0, heartbeat_diffs_unexcused = 0;
  uint64_t heartbeat_rounds_checked = 0;  // Instance-rounds with no replica-mode write.
  // Stats::history_resets: a store found the table's history different from the one it
  // followed. No commit is ever lost here (synchronous replication), so each is a violation.
  uint64_t history_resets = 0;
  // Callbacks with origin "resync" at the revision of a change made while every listener was
  // cut off (instance incarnation, revision): the catch-up, not a notification, applied it.
  uint64_t away_changes_caught_up = 0;
};

class Checker {
 public:
  explicit Checker(std::vector<AuditOp> audit);

  // Every check over one incarnation's log. `tables` holds each round's table state (by round
  // number), for the dumps.
  void check_instance(const InstanceLog& log, const std::map<int, TableState>& tables);
  // Acknowledged writes (set, and remove with its revision) committed and not lost, against the
  // table's final state.
  void check_acks(const std::vector<InstanceLog>& logs, const TableState& final_table);
  // The heartbeat finds nothing to repair in a round without a replica-mode write: every other
  // change is notified, or read by a catch-up. A round's count is the growth of crc_mismatches
  // from the incarnation's previous dump (or its start) to the round's dump, which is taken
  // after every instance converged. `trigger_less_rounds`: the rounds that had one. Also: the
  // store never reset its history (Stats::history_resets stays 0).
  void check_heartbeats(const InstanceLog& log, const std::set<int>& trigger_less_rounds);
  // Counts (into figures) the callbacks with origin "resync" at one of `revisions`.
  void count_caught_up(const InstanceLog& log, const std::set<int64_t>& revisions);

  void violation(std::string text) { violations_.push_back(std::move(text)); }
  const std::vector<std::string>& violations() const { return violations_; }
  const Figures& figures() const { return figures_; }

 private:
  // Where a state sits in a key's commit order.
  struct Position {
    bool exempt = false;  // A replica-mode state: its place in commit order is unknown.
    int64_t revision = 0;
  };
  // The committed write of `wid` to `key`, or nullptr.
  const AuditOp* find_write(const std::string& key, const std::string& wid) const;
  // Position of "key absent as of revision r"; nullopt if the commits say it was present.
  std::optional<Position> absence(const std::string& key, int64_t r) const;
  // Position of a state (wid, or nullopt: absent, as of revision r); nullopt + violation text.
  std::optional<Position> position(const std::string& key, const std::optional<std::string>& wid,
                                   int64_t r, std::string* why) const;

  std::vector<AuditOp> audit_;
  std::map<std::pair<std::string, std::string>, std::size_t> writes_;  // (key, wid) -> audit_
  std::map<std::string, std::vector<std::size_t>> normal_by_key_;  // revision order, + truncates
  std::map<std::string, std::vector<std::size_t>> replica_by_key_;
  std::vector<std::size_t> truncates_;
  std::vector<std::string> violations_;
  Figures figures_;
};

// Runs the checker on small hand-made histories with planted violations; returns the number of
// self-test failures (a planted violation not caught, or a clean history flagged), printing each.
int self_test();

}  // namespace chaos
