#include "history.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <set>

namespace chaos {

using nlohmann::json;

namespace {

// Calls report(key, value in a or nullptr, value in b or nullptr) for every key whose values
// differ: first the keys of a (in order), then the keys only b has.
template <class F>
void for_each_difference(const TableState& a, const TableState& b, F report) {
  for (const auto& [k, w] : a) {
    auto it = b.find(k);
    if (it == b.end() || it->second != w) report(k, &w, it == b.end() ? nullptr : &it->second);
  }
  for (const auto& [k, w] : b) {
    if (!a.contains(k)) report(k, nullptr, &w);
  }
}

std::string show(const std::optional<std::string>& wid) { return wid ? *wid : "<absent>"; }

std::optional<std::string> wid_of(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  return std::nullopt;
}

}  // namespace

Checker::Checker(std::vector<AuditOp> audit) : audit_(std::move(audit)) {
  for (std::size_t i = 0; i < audit_.size(); ++i) {
    const AuditOp& a = audit_[i];
    if (a.replica) {
      ++figures_.replica_ops;
      if (!a.key.empty()) replica_by_key_[a.key].push_back(i);
    } else {
      ++figures_.committed_ops;
      if (a.op == 't') {
        truncates_.push_back(i);
      } else {
        normal_by_key_[a.key].push_back(i);
      }
    }
    if (a.op == 'u' && !writes_.emplace(std::make_pair(a.key, a.wid), i).second) {
      violation(fmt::format("audit: write id {} committed twice to key {}", a.wid, a.key));
    }
  }
  auto by_revision = [&](std::size_t a, std::size_t b) {
    return *audit_[a].revision < *audit_[b].revision;
  };
  std::sort(truncates_.begin(), truncates_.end(), by_revision);
  for (auto& [key, ops] : normal_by_key_) {
    ops.insert(ops.end(), truncates_.begin(), truncates_.end());
    std::sort(ops.begin(), ops.end(), [&](std::size_t a, std::size_t b) {
      return *audit_[a].revision < *audit_[b].revision;
    });
  }
}

const AuditOp* Checker::find_write(const std::string& key, const std::string& wid) const {
  auto it = writes_.find({key, wid});
  return it == writes_.end() ? nullptr : &audit_[it->second];
}

std::optional<Checker::Position> Checker::absence(const std::string& key, int64_t r) const {
  // The last normal commit on the key at or before r (binary search: they are in revision order).
  const AuditOp* last = nullptr;
  const std::vector<std::size_t>* ops = &truncates_;
  if (auto it = normal_by_key_.find(key); it != normal_by_key_.end()) ops = &it->second;
  auto after = std::upper_bound(ops->begin(), ops->end(), r, [&](int64_t rev, std::size_t i) {
    return rev < *audit_[i].revision;
  });
  if (after != ops->begin()) last = &audit_[*std::prev(after)];
  if (!last) return Position{false, 0};
  if (last->op != 'u') return Position{false, *last->revision};
  // Present by the normal commits; a replica-mode deletion after that commit and before r
  // (see docs/reliability.md) makes it absent at an unknown place in commit order.
  if (auto it = replica_by_key_.find(key); it != replica_by_key_.end()) {
    for (std::size_t i : it->second) {
      const AuditOp& a = audit_[i];
      if (a.op == 'd' && a.hint >= *last->revision && a.hint <= r) return Position{true, 0};
    }
  }
  return std::nullopt;
}

std::optional<Checker::Position> Checker::position(const std::string& key,
                                                   const std::optional<std::string>& wid, int64_t r,
                                                   std::string* why) const {
  if (!wid) {
    auto p = absence(key, r);
    if (!p) *why = fmt::format("absent as of revision {}, but the table held a value then", r);
    return p;
  }
  const AuditOp* w = find_write(key, *wid);
  if (!w) {
    *why = fmt::format("value {} was never committed to this key", *wid);
    return std::nullopt;
  }
  if (w->replica) return Position{true, 0};
  return Position{false, *w->revision};
}

void Checker::check_instance(const InstanceLog& log, const std::map<int, TableState>& tables) {
  struct KeyState {
    std::optional<Position> pos;  // Empty: unknown (start, or after a violation).
    std::optional<std::string> wid;
    int64_t revision = 0;
    bool any = false;
    std::set<std::string> seen;
  };
  std::map<std::string, KeyState> keys;
  std::map<std::string, std::string> replay;  // base + callbacks
  for (std::size_t n = 0; n < log.lines.size(); ++n) {
    const json& line = log.lines[n];
    const std::string type = line.value("t", "");
    auto where = [&] { return fmt::format("{} line {}", log.name, n + 1); };
    if (type == "base") {
      for (auto& [k, w] : line["cache"].items())
        replay[k] = w.is_string() ? w.get<std::string>() : "?";
    } else if (type == "cb") {
      ++figures_.callbacks;
      const std::string key = line["k"];
      const std::optional<std::string> wid = wid_of(line["w"]);
      const int64_t r = line["r"];
      if (wid) {
        replay[key] = *wid;
      } else {
        replay.erase(key);
      }
      KeyState& ks = keys[key];
      std::string why;
      std::optional<Position> pos = position(key, wid, r, &why);
      if (!pos) {
        violation(fmt::format("{}: key {}: observed {} (revision {}, {}): {}", where(), key,
                              show(wid), r, line.value("o", ""), why));
      }
      if (pos && !pos->exempt && wid) {
        const AuditOp* w = find_write(key, *wid);
        if (*w->revision != r) {
          violation(
              fmt::format("{}: key {}: callback for {} reports revision {}, it committed at {}",
                          where(), key, *wid, r, *w->revision));
        }
      }
      if (wid && ks.seen.contains(*wid)) {
        violation(
            fmt::format("{}: key {}: value {} observed again (previous: {}) — a rollback or "
                        "a duplicate callback",
                        where(), key, *wid, show(ks.wid)));
      }
      if (ks.any && !wid && !ks.wid) {
        violation(fmt::format("{}: key {}: deletion reported twice in a row (revision {})", where(),
                              key, r));
      }
      ++figures_.observations_checked;
      if (ks.any && ks.pos && pos) {
        if (ks.pos->exempt || pos->exempt) {
          ++figures_.pairs_exempt;
        } else {
          if (pos->revision <= ks.pos->revision) {
            violation(fmt::format(
                "{}: key {}: went back in commit order: {} (commit revision {}) "
                "after {} (commit revision {})",
                where(), key, show(wid), pos->revision, show(ks.wid), ks.pos->revision));
          }
          if (r <= ks.revision) {
            violation(fmt::format("{}: key {}: callback revisions not increasing: {} after {}",
                                  where(), key, r, ks.revision));
          }
        }
      }
      if (wid) ks.seen.insert(*wid);
      ks.any = true;
      ks.pos = pos;
      ks.wid = wid;
      ks.revision = r;
    } else if (type == "dump") {
      const int round = line["round"];
      std::map<std::string, std::string> cache;
      for (auto& [k, w] : line["cache"].items())
        cache[k] = w.is_string() ? w.get<std::string>() : "?";
      if (!line.value("drained", false) || cache != replay) {
        for_each_difference(
            cache, replay, [&](const std::string& k, const std::string* c, const std::string* r) {
              violation(
                  c ? fmt::format("{}: round {}: key {}: cache holds {}, callbacks replay to {}",
                                  where(), round, k, *c, r ? *r : "<absent>")
                    : fmt::format("{}: round {}: key {}: cache has none, callbacks replay to {}",
                                  where(), round, k, *r));
            });
        if (cache == replay) {
          violation(fmt::format("{}: round {}: callbacks did not catch up with the cache in time",
                                where(), round));
        }
      }
      auto t = tables.find(round);
      if (t != tables.end() && t->second != cache) {
        for_each_difference(
            t->second, cache,
            [&](const std::string& k, const std::string* table, const std::string* c) {
              violation(fmt::format("{}: round {}: not converged: key {}: table {}, cache {}",
                                    where(), round, k, table ? *table : "<absent>",
                                    c ? *c : "<absent>"));
            });
      }
    }
  }
}

void Checker::check_acks(const std::vector<InstanceLog>& logs, const TableState& final_table) {
  // A later commit on `key` than revision r: a normal one with a higher revision, or a
  // replica-mode one that ran after r was drawn.
  auto overwritten_after = [&](const std::string& key, int64_t r, bool deletions_only) {
    const std::vector<std::size_t>* ops = &truncates_;
    if (auto it = normal_by_key_.find(key); it != normal_by_key_.end()) ops = &it->second;
    // Scanned from the newest down to revision r.
    for (auto i = ops->rbegin(); i != ops->rend() && *audit_[*i].revision > r; ++i) {
      if (!deletions_only || audit_[*i].op != 'u') return true;
    }
    if (auto it = replica_by_key_.find(key); it != replica_by_key_.end()) {
      for (std::size_t i : it->second) {
        if (audit_[i].hint >= r && (!deletions_only || audit_[i].op != 'u')) return true;
      }
    }
    return false;
  };
  for (const InstanceLog& log : logs) {
    for (std::size_t n = 0; n < log.lines.size(); ++n) {
      const json& line = log.lines[n];
      const std::string type = line.value("t", "");
      auto where = [&] { return fmt::format("{} line {}", log.name, n + 1); };
      if (type == "rm") {
        const bool ok = line.value("ok", false);
        (ok ? figures_.removes_ok : figures_.removes_failed)++;
        const int64_t r = line.value("r", int64_t{0});
        if (!ok || r == 0) continue;  // Failed, or found no key: nothing to look for.
        // An acknowledged deletion: a normal deletion of the key at its revision committed, and
        // the key is absent from the final table unless something later was committed to it.
        const std::string key = line["k"];
        const std::vector<std::size_t>* ops = &truncates_;
        if (auto it = normal_by_key_.find(key); it != normal_by_key_.end()) ops = &it->second;
        const bool committed = std::any_of(ops->begin(), ops->end(), [&](std::size_t i) {
          return audit_[i].op == 'd' && *audit_[i].revision == r;
        });
        if (!committed) {
          violation(fmt::format("{}: acknowledged remove of {} (revision {}) never committed",
                                where(), key, r));
        } else if (auto t = final_table.find(key);
                   t != final_table.end() && !overwritten_after(key, r, /*deletions_only=*/false)) {
          violation(
              fmt::format("{}: acknowledged remove of {} (revision {}) lost: the table holds {} "
                          "and nothing later was committed to the key",
                          where(), key, r, t->second));
        }
        continue;
      }
      if (type != "set") continue;
      const std::string key = line["k"];
      const std::string wid = line["w"];
      const AuditOp* w = find_write(key, wid);
      if (!line.value("ok", false)) {
        ++figures_.sets_failed;
        const std::string code = line.value("code", "");
        if (code == "unavailable" || code == "timeout") {
          ++figures_.ambiguous;
          if (w) ++figures_.ambiguous_committed;
        } else if (w) {
          violation(
              fmt::format("{}: set {}={} failed with '{}' (not an unknown outcome) but "
                          "committed",
                          where(), key, wid, code));
        }
        continue;
      }
      ++figures_.sets_ok;
      if (!w) {
        violation(fmt::format("{}: acknowledged set {}={} never committed", where(), key, wid));
        continue;
      }
      const int64_t r = *w->revision;
      // Read-your-writes: get() right after set() returns this value or a newer one.
      const std::optional<std::string> after = wid_of(line["after"]);
      if (after != wid) {
        bool ok;
        if (!after) {
          ok = overwritten_after(key, r, /*deletions_only=*/true);
        } else {
          const AuditOp* a = find_write(key, *after);
          ok = a && (a->replica || *a->revision > r);
        }
        if (!ok) {
          violation(fmt::format("{}: get({}) right after set {} returned {}, not that or newer",
                                where(), key, wid, show(after)));
        }
      }
      auto t = final_table.find(key);
      bool present = t != final_table.end() && t->second == wid;
      if (!present && !overwritten_after(key, r, /*deletions_only=*/false)) {
        violation(
            fmt::format("{}: acknowledged set {}={} (revision {}) lost: the table holds {} "
                        "and nothing later was committed to the key",
                        where(), key, wid, r, t == final_table.end() ? "<absent>" : t->second));
      }
    }
  }
}

void Checker::check_heartbeats(const InstanceLog& log, const std::set<int>& trigger_less_rounds) {
  uint64_t previous = 0, previous_resets = 0;  // A new incarnation's counters start at 0.
  for (std::size_t n = 0; n < log.lines.size(); ++n) {
    const json& line = log.lines[n];
    if (line.value("t", "") != "dump") continue;
    const int round = line["round"];
    const json stats = line.value("stats", json::object());
    const uint64_t resets = stats.value("history_resets", uint64_t{0});
    if (resets > previous_resets) {
      figures_.history_resets += resets - previous_resets;
      violation(fmt::format(
          "{} line {}: round {}: the store reset its history {} time(s) (history_resets {} -> "
          "{}), though no commit was lost: a failover under synchronous replication keeps them all",
          log.name, n + 1, round, resets - previous_resets, previous_resets, resets));
    }
    previous_resets = resets;
    const uint64_t now = stats.value("crc_mismatches", uint64_t{0});
    const uint64_t found = now >= previous ? now - previous : 0;
    previous = now;
    if (trigger_less_rounds.contains(round)) {
      figures_.heartbeat_diffs_excused += found;
      continue;
    }
    ++figures_.heartbeat_rounds_checked;
    if (found == 0) continue;
    figures_.heartbeat_diffs_unexcused += found;
    violation(fmt::format(
        "{} line {}: round {}: the heartbeat found the cache different from the table {} time(s) "
        "(crc_mismatches {} -> {}) in a round with no replica-mode write: a change was missed by "
        "both the notifications and the catch-up",
        log.name, n + 1, round, found, now - found, now));
  }
}

void Checker::count_caught_up(const InstanceLog& log, const std::set<int64_t>& revisions) {
  std::set<int64_t> seen;  // A truncation has one callback per key: count it once.
  for (const json& line : log.lines) {
    if (line.value("t", "") != "cb" || line.value("o", "") != "resync") continue;
    const int64_t r = line["r"];
    if (revisions.contains(r) && seen.insert(r).second) ++figures_.away_changes_caught_up;
  }
}

// ---------------------------------------------------------------------------------------------
// Self-test: each planted violation must be found; the clean history must pass.

namespace {

AuditOp put(const std::string& k, const std::string& w, int64_t r) {
  return AuditOp{k, w, 'u', r, false, 0};
}
AuditOp del(const std::string& k, int64_t r) { return AuditOp{k, "", 'd', r, false, 0}; }
AuditOp trunc(int64_t r) { return AuditOp{"", "", 't', r, false, 0}; }
AuditOp replica_put(const std::string& k, const std::string& w, int64_t hint) {
  return AuditOp{k, w, 'u', std::nullopt, true, hint};
}
AuditOp replica_del(const std::string& k, int64_t hint) {
  return AuditOp{k, "", 'd', std::nullopt, true, hint};
}
json cb(const std::string& k, std::optional<std::string> w, int64_t r) {
  return {{"t", "cb"}, {"k", k}, {"w", w ? json(*w) : json(nullptr)}, {"r", r}, {"o", "remote"}};
}
json set_ok(const std::string& k, const std::string& w, std::optional<std::string> after) {
  return {{"t", "set"}, {"k", k}, {"w", w}, {"ok", true}, {"after", after ? json(*after) : json()}};
}
json rm_ok(const std::string& k, int64_t r) {
  return {{"t", "rm"}, {"k", k}, {"ok", true}, {"existed", r != 0}, {"r", r}};
}
json dump(int round, json cache, uint64_t crc_mismatches = 0, uint64_t history_resets = 0) {
  return {{"t", "dump"},
          {"round", round},
          {"drained", true},
          {"cache", cache},
          {"stats", {{"crc_mismatches", crc_mismatches}, {"history_resets", history_resets}}}};
}

std::vector<AuditOp> history() {
  return {put("a", "w1", 1), put("b", "w2", 2),         put("a", "w3", 3),
          del("b", 4),       replica_put("a", "r1", 4), put("a", "w5", 5),
          put("b", "w6", 6), replica_del("b", 6),       trunc(7),
          put("a", "w8", 8), put("c", "w9", 9),         del("c", 10)};
}

struct Case {
  const char* name;
  std::vector<json> lines;
  TableState final_table;
  bool expect_violation;
  const char* must_mention;
};

}  // namespace

int self_test() {
  const TableState final_table = {{"a", "w8"}};
  std::vector<Case> cases = {
      {"clean history (replica-mode values and deletions exempt from ordering)",
       {{{"t", "base"}, {"cache", json::object()}},
        cb("a", "w1", 1),
        cb("b", "w2", 2),
        cb("a", "w3", 3),
        cb("b", std::nullopt, 4),
        cb("a", "r1", 3),
        cb("a", "w5", 5),
        cb("b", "w6", 6),
        cb("b", std::nullopt, 6),
        cb("a", std::nullopt, 7),
        cb("a", "w8", 8),
        set_ok("a", "w8", "w8"),
        rm_ok("b", 4),
        rm_ok("c", 10),
        rm_ok("c", 0),  // Found nothing to delete.
        // Heartbeat differences in round 1, which had a replica-mode write, are expected; round
        // 2 found none.
        dump(1, {{"a", "w8"}}, 2),
        dump(2, {{"a", "w8"}}, 2)},
       final_table,
       false,
       ""},
      {"rollback to an older value",
       {cb("a", "w3", 3), cb("a", "w1", 1)},
       final_table,
       true,
       "went back"},
      {"a value that never committed", {cb("a", "w99", 9)}, final_table, true, "never committed"},
      {"a value seen again after a newer one",
       {cb("a", "w1", 1), cb("a", "w3", 3), cb("a", "w1", 1)},
       final_table,
       true,
       "again"},
      {"callback revision that is not the commit's",
       {cb("a", "w3", 2)},
       final_table,
       true,
       "reports revision"},
      {"an absence the commits do not explain",
       {cb("a", "w1", 1), cb("a", std::nullopt, 2)},
       final_table,
       true,
       "absent as of"},
      {"an acknowledged write that never committed",
       {set_ok("a", "w42", "w42")},
       final_table,
       true,
       "never committed"},
      {"an acknowledged write lost from the table",
       {set_ok("a", "w8", "w8")},
       TableState{{"a", "w5"}},
       true,
       "lost"},
      {"an acknowledged remove that never committed",
       {rm_ok("a", 8)},
       final_table,
       true,
       "remove of a (revision 8) never committed"},
      {"an acknowledged remove lost from the table",
       {rm_ok("c", 10)},
       TableState{{"a", "w8"}, {"c", "w9"}},
       true,
       "remove of c (revision 10) lost"},
      {"a history reset (nothing was lost)",
       {{{"t", "base"}, {"cache", json::object()}}, cb("a", "w8", 8), dump(1, {{"a", "w8"}}, 0, 1)},
       final_table,
       true,
       "reset its history"},
      {"get() after set() returning an older value",
       {set_ok("a", "w5", "w3")},
       final_table,
       true,
       "right after set"},
      {"a missing callback (cache and replay differ)",
       {{{"t", "base"}, {"cache", json::object()}}, cb("a", "w5", 5), dump(1, {{"a", "w8"}})},
       final_table,
       true,
       "callbacks replay"},
      {"a heartbeat difference in a round without a replica-mode write",
       {{{"t", "base"}, {"cache", json::object()}},
        cb("a", "w8", 8),
        dump(1, {{"a", "w8"}}, 1),
        dump(2, {{"a", "w8"}}, 2)},
       final_table,
       true,
       "round 2: the heartbeat found"},
      {"an instance that did not converge",
       {{{"t", "base"}, {"cache", json::object()}}, cb("a", "w5", 5), dump(1, {{"a", "w5"}})},
       final_table,
       true,
       "not converged"},
  };
  int failures = 0;
  for (const Case& c : cases) {
    Checker checker(history());
    InstanceLog log{"selftest", c.lines, false};
    checker.check_instance(log, {{1, TableState{{"a", "w8"}}}});
    checker.check_acks({log}, c.final_table);
    checker.check_heartbeats(log, /*trigger_less_rounds=*/{1});
    bool found = !checker.violations().empty();
    bool mentioned = !c.expect_violation;
    for (const auto& v : checker.violations()) {
      if (v.find(c.must_mention) != std::string::npos) mentioned = true;
    }
    bool pass = found == c.expect_violation && mentioned;
    std::cout << (pass ? "  ok    " : "  FAIL  ") << c.name << "\n";
    for (const auto& v : checker.violations()) std::cout << "          " << v << "\n";
    if (!pass) ++failures;
  }
  return failures;
}

}  // namespace chaos
