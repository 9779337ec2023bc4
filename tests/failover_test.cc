// Failover on a real primary + streaming standby (tests/replica_set.h): stores opened with a
// multi-host DSN (target_session_attrs=read-write) follow the primary through a promotion and
// back, lose no acknowledged write under synchronous replication, reconnect about as fast as the
// promotion, and converge to the new primary when asynchronous replication lost writes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "replica_set.h"
#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// What every store must reach after a failover (the catch-up after reconnecting, or a heartbeat).
constexpr auto kConvergeTimeout = 30s;

// Every change and every reset a store delivers, in delivery order.
class EventLog {
 public:
  void attach(Store& store) {
    store.subscribe(
        [this](const Change& c) {
          std::lock_guard lock(mu_);
          events_.push_back({c, false});
        },
        [this](const Progress& p) {
          if (!p.reset) return;
          std::lock_guard lock(mu_);
          events_.push_back({Change{}, true});
        });
  }
  // Per key, the revisions delivered never go backwards, except across a reported reset: the
  // repairs of a reset reload are the unit delivered right before its reset (the store reports
  // the reset once the cache equals the new history). Returns the first violation, or "".
  std::string revisions_going_backwards() const {
    std::lock_guard lock(mu_);
    std::vector<bool> in_reset_unit(events_.size(), false);
    for (std::size_t j = 0; j < events_.size(); ++j) {
      if (!events_[j].reset) continue;
      for (std::size_t i = j; i-- > 0;) {
        if (events_[i].reset || (i + 1 < j && events_[i].change.unit_end)) break;
        in_reset_unit[i] = true;
      }
    }
    std::map<std::string, int64_t> last;
    for (std::size_t i = 0; i < events_.size(); ++i) {
      const auto& [change, reset] = events_[i];
      if (reset) {
        last.clear();
        continue;
      }
      if (in_reset_unit[i]) continue;
      auto [it, fresh] = last.emplace(change.key, change.revision);
      if (!fresh && change.revision < it->second) {
        return "key " + change.key + ": revision " + std::to_string(change.revision) + " after " +
               std::to_string(it->second) + " (origin " + std::string(to_string(change.origin)) +
               ")";
      }
      it->second = change.revision;
    }
    return "";
  }
  bool saw_reset() const {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) {
      if (e.reset) return true;
    }
    return false;
  }
  // Whether `key` was delivered as deleted after it had been delivered as set.
  bool saw_set_then_deleted(const std::string& key) const {
    std::lock_guard lock(mu_);
    bool set = false;
    for (const auto& [change, reset] : events_) {
      if (reset || change.key != key) continue;
      if (change.value) {
        set = true;
      } else if (set) {
        return true;
      }
    }
    return false;
  }
  // The state the delivered changes add up to (a reset starts over from nothing: the changes
  // delivered right before it hold the whole new state).
  std::map<std::string, json> state() const {
    std::lock_guard lock(mu_);
    std::map<std::string, json> out;
    for (const auto& [change, reset] : events_) {
      if (reset) continue;
      if (change.value) {
        out[change.key] = *change.value;
      } else {
        out.erase(change.key);
      }
    }
    return out;
  }

 private:
  struct Event {
    Change change;
    bool reset;
  };
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

// An acknowledged write: set() returned this revision.
struct Ack {
  std::string key;
  json value;
  int64_t revision;
};

// One thread per store, each writing its own keys and a few keys shared by all, recording every
// acknowledged write; failed writes (expected while there is no primary) are retried with the
// next key. The destructor stops and joins them, also when an assertion ends the test early.
class Writers {
 public:
  explicit Writers(const std::vector<Store*>& stores, const std::string& tag) {
    for (std::size_t i = 0; i < stores.size(); ++i) per_writer_[tag + std::to_string(i)] = 0;
    for (std::size_t i = 0; i < stores.size(); ++i) {
      threads_.emplace_back(
          [this, store = stores[i], id = tag + std::to_string(i)] { run(*store, id); });
    }
  }
  ~Writers() { stop(); }
  Writers(const Writers&) = delete;
  Writers& operator=(const Writers&) = delete;

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<Ack> acks() const {
    std::lock_guard lock(mu_);
    return acks_;
  }
  std::size_t acked() const {
    std::lock_guard lock(mu_);
    return acks_.size();
  }
  // Acknowledged writes per writer thread.
  std::map<std::string, std::size_t> acked_by_writer() const {
    std::lock_guard lock(mu_);
    return per_writer_;
  }
  std::size_t failures() const { return failures_.load(); }
  // The error codes of the failed writes, e.g. "unavailable timeout".
  std::string failure_codes() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& c : codes_) out += (out.empty() ? "" : " ") + c;
    return out;
  }
  // Errors that did not say retrying helps (kept: the first few messages).
  std::vector<std::string> non_retryable() const {
    std::lock_guard lock(mu_);
    return non_retryable_;
  }

 private:
  void run(Store& store, const std::string& id) {
    for (int n = 0; !stop_.load(); ++n) {
      const std::string key =
          n % 2 == 0 ? "own_" + id + "_" + std::to_string(n) : "shared_" + std::to_string(n % 6);
      const json value = id + ":" + std::to_string(n);  // Unique per write.
      try {
        const int64_t revision = store.set(key, value);
        std::lock_guard lock(mu_);
        acks_.push_back({key, value, revision});
        ++per_writer_[id];
      } catch (const Error& e) {
        failures_.fetch_add(1);
        std::lock_guard lock(mu_);
        codes_.insert(std::string(to_string(e.code())));
        if (!e.retryable() && non_retryable_.size() < 5) non_retryable_.push_back(e.what());
        // Pace the retries while there is no primary.
        std::this_thread::sleep_for(20ms);
      }
      // A steady load rather than a flood: the machine is shared.
      std::this_thread::sleep_for(2ms);
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> failures_{0};
  mutable std::mutex mu_;
  std::vector<Ack> acks_;
  std::map<std::string, std::size_t> per_writer_;
  std::vector<std::string> non_retryable_;
  std::set<std::string> codes_;
  std::vector<std::thread> threads_;
};

// Every acknowledged write is in the primary's change log under its revision, and the table
// holds it or a later write of the same key. Returns the number of violations (each reported).
int lost_acknowledged_writes(const std::string& primary_dsn, const std::string& table,
                             const std::vector<Ack>& acks) {
  Sql sql(primary_dsn);
  json log = json::parse(sql.scalar(
      "SELECT coalesce(jsonb_object_agg(revision::text, jsonb_build_array(key, value)), '{}') "
      "FROM " +
      table + "_changes WHERE op = 'set'"));
  json rows = json::parse(
      sql.scalar("SELECT coalesce(jsonb_object_agg(key, jsonb_build_array(revision, value)), "
                 "'{}') FROM " +
                 table));
  int lost = 0;
  for (const Ack& ack : acks) {
    const std::string revision = std::to_string(ack.revision);
    const bool logged =
        log.contains(revision) && log[revision][0] == ack.key && log[revision][1] == ack.value;
    const bool held =
        rows.contains(ack.key) &&
        (rows[ack.key][0].get<int64_t>() > ack.revision ||
         (rows[ack.key][0].get<int64_t>() == ack.revision && rows[ack.key][1] == ack.value));
    if (!logged || !held) {
      if (++lost <= 10) {
        ADD_FAILURE() << "acknowledged write lost: " << ack.key << " = " << ack.value.dump()
                      << " at revision " << ack.revision << " (in the change log: " << logged
                      << ", held by the table: " << held << ")";
      }
    }
  }
  return lost;
}

std::vector<Store*> pointers(const std::vector<std::unique_ptr<Store>>& stores) {
  std::vector<Store*> out;
  for (const auto& s : stores) out.push_back(s.get());
  return out;
}

bool all_equal_to_table(const std::vector<std::unique_ptr<Store>>& stores,
                        const std::string& primary_dsn, const std::string& table) {
  const auto expected = table_content(primary_dsn, table);
  for (const auto& s : stores) {
    if (s->get_all() != expected) return false;
  }
  return true;
}

// The failover under a write load: writers run through the gap, every store ends equal to the
// new primary, and nothing acknowledged is lost.
void fail_over_under_load(ReplicaSet& replicas, Shutdown how,
                          const std::vector<std::unique_ptr<Store>>& stores,
                          const std::vector<EventLog>& logs, const std::string& table,
                          std::vector<Ack>& all_acks, const std::string& tag) {
  SCOPED_TRACE(how == Shutdown::kFast ? "fast shutdown of the primary"
                                      : "immediate shutdown of the primary");
  Writers writers(pointers(stores), tag);
  ASSERT_TRUE(wait_until([&] { return writers.acked() >= 60; }, 20s)) << "writers never wrote";

  const auto before = writers.acked_by_writer();
  const milliseconds promotion = replicas.fail_over(how);
  std::printf("[failover] %s: promotion took %lld ms\n",
              how == Shutdown::kFast ? "fast" : "immediate",
              static_cast<long long>(promotion.count()));
  // Every writer gets writes through on the new primary (its pool reconnected there).
  ASSERT_TRUE(wait_until(
      [&] {
        auto now = writers.acked_by_writer();
        for (const auto& [id, n] : before) {
          if (now[id] < n + 20) return false;
        }
        return true;
      },
      kConvergeTimeout))
      << "the writers did not get through to the new primary";
  writers.stop();
  EXPECT_TRUE(writers.non_retryable().empty())
      << "a write failed with a non-retryable error during the failover: "
      << writers.non_retryable().front();
  std::printf("[failover] %zu writes acknowledged, %zu failed (%s) and retried\n", writers.acked(),
              writers.failures(), writers.failure_codes().c_str());

  const std::vector<Ack> acks = writers.acks();
  all_acks.insert(all_acks.end(), acks.begin(), acks.end());
  // Synchronous replication: whatever was acknowledged on the old primary is on the new one.
  EXPECT_EQ(lost_acknowledged_writes(replicas.primary_dsn(), table, all_acks), 0);
  EXPECT_TRUE(wait_until([&] { return all_equal_to_table(stores, replicas.primary_dsn(), table); },
                         kConvergeTimeout))
      << "a store did not converge to the new primary's table";
  // Subscribers were told everything: the changes they received add up to the table.
  const auto expected = table_content(replicas.primary_dsn(), table);
  for (std::size_t i = 0; i < logs.size(); ++i) {
    EXPECT_TRUE(wait_until([&] { return logs[i].state() == expected; }))
        << "store " << i << "'s subscriber missed changes";
    EXPECT_EQ(logs[i].revisions_going_backwards(), "") << "store " << i;
  }
  for (std::size_t i = 0; i < stores.size(); ++i) {
    EXPECT_TRUE(stores[i]->stats().connected) << "store " << i;
    // Nothing was lost, so nothing diverged: no store may take the promotion for a lossy one.
    EXPECT_EQ(stores[i]->stats().history_resets, 0u) << "store " << i;
  }
}

TEST(Failover, a_store_follows_the_primary_through_a_failover_and_back) {
  ReplicaSet replicas(/*synchronous=*/true);
  const std::string table = unique_name("t_failover");
  std::vector<EventLog> logs(3);
  std::vector<std::unique_ptr<Store>> stores;
  for (auto& log : logs) {
    stores.push_back(Store::open(replicas.dsn(), test_options(table)));
    log.attach(*stores.back());
  }
  std::vector<Ack> acks;

  const int first_primary = replicas.primary().port();
  // There: the standby (node 1) takes over after a clean shutdown of node 0.
  fail_over_under_load(replicas, Shutdown::kFast, stores, logs, table, acks, "a");
  if (HasFatalFailure()) return;
  ASSERT_NE(replicas.primary().port(), first_primary);
  // And back: node 0, rebuilt as a standby of node 1 on its old port, takes over after node 1
  // crashes.
  replicas.rebuild_standby();
  fail_over_under_load(replicas, Shutdown::kImmediate, stores, logs, table, acks, "b");
  if (HasFatalFailure()) return;
  EXPECT_EQ(replicas.primary().port(), first_primary);
}

TEST(Failover, reconnection_takes_about_as_long_as_the_promotion) {
  ReplicaSet replicas(/*synchronous=*/true);
  const std::string table = unique_name("t_reconnect");
  Options options = test_options(table);
  options.reconnect_interval = 10s;  // The default.
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < 3; ++i) stores.push_back(Store::open(replicas.dsn(), options));

  uint64_t reconnects = 0;
  for (Shutdown how : {Shutdown::kFast, Shutdown::kImmediate}) {
    const std::string mode = how == Shutdown::kFast ? "fast" : "immediate";
    SCOPED_TRACE(mode + " shutdown of the primary");
    ++reconnects;
    ASSERT_TRUE(wait_until([&] {
      for (auto& s : stores) {
        if (!s->stats().connected) return false;
      }
      return true;
    }));
    const int64_t revision_before = stores[0]->set("before_" + mode, 1);
    const auto failing = steady_clock::now();
    const milliseconds promotion = replicas.fail_over(how);
    const auto promoted = steady_clock::now();
    const auto stop_and_promote = duration_cast<milliseconds>(promoted - failing);
    const std::string marker = "promoted_" + mode;
    Sql new_primary(replicas.primary_dsn());
    new_primary.exec("INSERT INTO " + table + " (key, value) VALUES ('" + marker + "', '1')");
    // Sequences are WAL-logged up to 32 values ahead: the new primary's first revision jumps.
    const int64_t revision_after = std::stoll(
        new_primary.scalar("SELECT revision FROM " + table + " WHERE key = '" + marker + "'"));
    EXPECT_GT(revision_after, revision_before);
    std::printf("[failover] %s: last revision before %lld, first after %lld\n", mode.c_str(),
                static_cast<long long>(revision_before), static_cast<long long>(revision_after));
    // Per store: from `pg_ctl promote -w` returning until it listens again and has the write
    // made on the new primary.
    std::vector<std::optional<milliseconds>> reconnected(stores.size());
    wait_until(
        [&] {
          bool all = true;
          for (std::size_t i = 0; i < stores.size(); ++i) {
            if (reconnected[i]) continue;
            if (stores[i]->stats().connected && stores[i]->contains(marker)) {
              reconnected[i] = duration_cast<milliseconds>(steady_clock::now() - promoted);
            } else {
              all = false;
            }
          }
          return all;
        },
        30s);
    std::printf("[failover] %s: stop + promotion %lld ms, promotion %lld ms; reconnected after",
                mode.c_str(), static_cast<long long>(stop_and_promote.count()),
                static_cast<long long>(promotion.count()));
    RecordProperty(mode + "_stop_and_promotion_ms", std::to_string(stop_and_promote.count()));
    RecordProperty(mode + "_promotion_ms", std::to_string(promotion.count()));
    for (std::size_t i = 0; i < stores.size(); ++i) {
      const std::string figure =
          reconnected[i] ? std::to_string(reconnected[i]->count()) + " ms" : "never (30 s)";
      std::printf(" %s", figure.c_str());
      RecordProperty(mode + "_reconnect_ms_store" + std::to_string(i), figure);
    }
    std::printf(" (reconnect_interval %lld ms)\n",
                static_cast<long long>(options.reconnect_interval.count()));
    for (std::size_t i = 0; i < stores.size(); ++i) {
      ASSERT_TRUE(reconnected[i]) << "store " << i << " never reconnected";
      // Well below reconnect_interval: the listener retries soon after losing the primary, not
      // only once the interval has passed.
      EXPECT_LT(*reconnected[i], 5s) << "store " << i << " waited for its reconnect_interval";
      EXPECT_EQ(stores[i]->stats().reconnects, reconnects) << "store " << i;
    }
    if (how == Shutdown::kFast) replicas.rebuild_standby();
  }
}

// With asynchronous replication a commit is acknowledged before the standby has it. Here the
// standby is stopped, so what it lacks is known exactly:
//   - kept: base_0..base_9, written and replayed by the standby before it stopped;
//   - lost: lost_0..lost_<lost-1>, acknowledged by set() on the primary and applied by every
//     store, then the primary crashes (immediate shutdown) and the stopped standby is started
//     and promoted without them.
// The new primary's sequence continues from what the standby replayed, which PostgreSQL
// WAL-logs up to 32 values ahead (SEQ_LOG_VALS). So with more than 32 lost writes the stores'
// revision is beyond the new primary's newest, and the new primary then reuses revision numbers
// the stores applied for other changes; with fewer, its revisions jump past the lost ones and
// the new primary merely lacks commits the stores applied.
// Either way the stores must drop the lost keys (telling their subscribers) and follow the new
// primary.
void lose_writes_in_an_asynchronous_failover(int lost, milliseconds heartbeat) {
  ReplicaSet replicas(/*synchronous=*/false);
  const std::string table = unique_name("t_async");
  const std::string tag = "async, " + std::to_string(lost) + " lost";
  Options options = test_options(table);
  options.heartbeat_interval = heartbeat;
  std::vector<EventLog> logs(2);
  std::vector<std::unique_ptr<Store>> stores;
  for (auto& log : logs) {
    stores.push_back(Store::open(replicas.dsn(), options));
    log.attach(*stores.back());
  }
  Store& a = *stores[0];
  for (int i = 0; i < 10; ++i) a.set("base_" + std::to_string(i), i);
  replicas.wait_replayed();

  replicas.standby().stop();
  int64_t last_lost = 0;  // The revision of the last acknowledged write.
  for (int i = 0; i < lost; ++i) last_lost = a.set("lost_" + std::to_string(i), i);
  ASSERT_TRUE(wait_until([&] {
    for (auto& s : stores) {
      if (!s->contains("lost_" + std::to_string(lost - 1))) return false;
    }
    return true;
  }));

  replicas.primary().kill();
  replicas.standby().start();
  const milliseconds promotion = replicas.promote_standby();
  std::printf("[failover] %s: promotion took %lld ms\n", tag.c_str(),
              static_cast<long long>(promotion.count()));
  Sql new_primary(replicas.primary_dsn());
  ASSERT_EQ(new_primary.scalar("SELECT count(*) FROM " + table + " WHERE key LIKE 'lost%'"), "0")
      << "the test means nothing unless the new primary lacks the last writes";
  const int64_t sequence =
      std::stoll(new_primary.scalar("SELECT last_value FROM " + table + "_revision_seq"));
  if (lost > 32) {
    EXPECT_LT(sequence, last_lost) << "the new primary should reuse applied revisions";
  } else {
    EXPECT_GT(sequence, last_lost) << "the new primary's revisions should jump past";
  }

  // Writes go through on the new primary once the store finds it.
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          a.set("after_failover", "x");
          return true;
        } catch (const Error&) {
          return false;
        }
      },
      kConvergeTimeout));
  new_primary.exec("INSERT INTO " + table + " (key, value) VALUES ('by_sql', '2')");

  const auto written = steady_clock::now();
  EXPECT_TRUE(wait_until([&] { return all_equal_to_table(stores, replicas.primary_dsn(), table); },
                         kConvergeTimeout))
      << "a store did not converge to the new primary's table";
  std::printf(
      "[failover] %s: converged %lld ms after the first write on the new primary\n", tag.c_str(),
      static_cast<long long>(duration_cast<milliseconds>(steady_clock::now() - written).count()));
  for (std::size_t i = 0; i < stores.size(); ++i) {
    SCOPED_TRACE("store " + std::to_string(i));
    Store& s = *stores[i];
    const Stats st = s.stats();
    std::printf(
        "[failover] %s: store %zu: resyncs %llu, catch-ups %llu, crc mismatches %llu; "
        "revisions going backwards without a reset: %s\n",
        tag.c_str(), i, static_cast<unsigned long long>(st.resyncs),
        static_cast<unsigned long long>(st.catch_ups),
        static_cast<unsigned long long>(st.crc_mismatches),
        logs[i].revisions_going_backwards().empty() ? "none"
                                                    : logs[i].revisions_going_backwards().c_str());
    EXPECT_FALSE(s.contains("lost_0"));
    EXPECT_EQ(s.get_int("base_9"), 9);
    EXPECT_EQ(s.get_string("after_failover"), "x");
    EXPECT_EQ(s.get_int("by_sql"), 2);
    // Subscribers are told the lost writes are gone: what they received adds up to the table.
    const auto expected = table_content(replicas.primary_dsn(), table);
    EXPECT_TRUE(wait_until([&] { return logs[i].state() == expected; }));
    EXPECT_TRUE(logs[i].saw_set_then_deleted("lost_0"));
    EXPECT_TRUE(logs[i].saw_set_then_deleted("lost_" + std::to_string(lost - 1)));
    EXPECT_TRUE(s.stats().connected);
    // The store noticed that its history diverged, reset, and told its subscribers so: within
    // one history no key's revision goes backwards.
    EXPECT_TRUE(wait_until([&] { return s.stats().history_resets >= 1; }));  // Counted last.
    EXPECT_TRUE(logs[i].saw_reset());
    EXPECT_EQ(logs[i].revisions_going_backwards(), "");
  }
  // After the divergence, writes keep propagating between the stores.
  stores[1]->set("later", 3);
  EXPECT_TRUE(wait_until([&] { return a.get_int("later") == 3; }));
}

// 50 lost writes: the stores' revision is beyond the new primary's newest. Without a heartbeat
// (it never runs here): the reconnect's catch-up must find that out by itself.
TEST(Failover,
     asynchronous_replication_can_lose_acknowledged_writes_and_stores_converge_to_the_new_primary) {
  lose_writes_in_an_asynchronous_failover(50, std::chrono::hours(1));
}

// 3 lost writes: the new primary's revisions jump past them, so a catch-up "after my revision"
// finds nothing amiss. The reconnect's check of the store's last applied changes against the new
// primary's change log must (the heartbeat never runs here).
TEST(Failover, writes_lost_below_the_new_primarys_revision_jump_are_dropped_too) {
  lose_writes_in_an_asynchronous_failover(3, std::chrono::hours(1));
}

}  // namespace
}  // namespace syncconfig::testing
