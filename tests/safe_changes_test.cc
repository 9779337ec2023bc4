// Safe changes against a real PostgreSQL: compare-and-set, atomic transactions, the change log
// (history, state at a past revision, rollback, retention) and leases.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// --- compare-and-set ---

TEST(SafeChanges, set_returns_the_new_revision_and_get_entry_shows_it) {
  auto store = Store::open(dsn(), test_options(unique_name("t_cas")));
  const int64_t r1 = store->set("a", 1);
  const int64_t r2 = store->set("a", 2);
  EXPECT_GT(r2, r1);
  std::optional<KeyEntry> e = store->get_entry("a");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, 2);
  EXPECT_EQ(e->revision, r2);
  EXPECT_LT(std::chrono::system_clock::now() - e->updated_at, 60s);
  EXPECT_FALSE(store->get_entry("missing"));
  EXPECT_EQ(store->get_versioned("a")->revision, r2);
}

TEST(SafeChanges, set_if_applies_only_at_the_expected_revision) {
  auto store = Store::open(dsn(), test_options(unique_name("t_cas")));
  CasResult created = store->set_if("k", "v1", 0);
  ASSERT_TRUE(created);
  EXPECT_EQ(created.value, "v1");

  CasResult again = store->set_if("k", "other", 0);  // Must not exist: it does.
  EXPECT_FALSE(again);
  EXPECT_EQ(again.revision, created.revision);
  EXPECT_EQ(again.value, "v1");

  CasResult stale = store->set_if("k", "v2", created.revision + 1000);
  EXPECT_FALSE(stale);
  EXPECT_EQ(stale.revision, created.revision);
  EXPECT_EQ(store->get("k"), "v1");

  CasResult next = store->set_if("k", "v2", created.revision);
  ASSERT_TRUE(next);
  EXPECT_GT(next.revision, created.revision);
  EXPECT_EQ(store->get("k"), "v2");

  CasResult wrong_delete = store->remove_if("k", created.revision);
  EXPECT_FALSE(wrong_delete);
  EXPECT_EQ(wrong_delete.value, "v2");
  EXPECT_TRUE(store->remove_if("k", next.revision));
  EXPECT_FALSE(store->get("k"));
  CasResult absent = store->remove_if("k", next.revision);
  EXPECT_FALSE(absent);
  EXPECT_EQ(absent.revision, 0);
  EXPECT_FALSE(absent.value);
}

TEST(SafeChanges, two_writers_racing_set_if_never_lose_an_update) {
  const std::string table = unique_name("t_cas_race");
  auto a = Store::open(dsn(), test_options(table));
  auto b = Store::open(dsn(), test_options(table));
  a->set("n", 0);
  std::atomic<int> successes{0}, conflicts{0};
  auto writer = [&](Store& s) {
    for (int i = 0; i < 500; ++i) {
      std::optional<KeyEntry> e = s.get_entry("n");
      CasResult r = s.set_if("n", e->value.get<int>() + 1, e->revision);
      if (r) {
        successes++;
      } else {
        conflicts++;
        EXPECT_GT(r.revision, e->revision);  // The conflict names the newer revision.
      }
    }
  };
  std::thread t1(writer, std::ref(*a)), t2(writer, std::ref(*b));
  t1.join();
  t2.join();
  EXPECT_EQ(successes + conflicts, 1000);
  EXPECT_EQ(a->get_entry("n")->value, successes.load());  // Every success counted once.
}

// A write that skips the triggers (session_replication_role = replica) takes no writer lock. A
// set racing one, on the same key, must still store its value and report what it stored: a set
// racing such a DELETE once reported success with nothing stored (and a null value: a crash), one
// racing such an INSERT failed on the primary key.
TEST(SafeChanges, a_set_racing_a_trigger_less_write_of_its_key_stores_its_value) {
  const std::string table = unique_name("t_race_triggerless");
  auto store = Store::open(dsn(), test_options(table));
  store->set("deleted", 1);
  for (const std::string& statement :
       {"DELETE FROM " + table + " WHERE key = 'deleted'",
        "INSERT INTO " + table + " (key, value) VALUES ('inserted', '\"raw\"')"}) {
    const std::string key = statement.starts_with("DELETE") ? "deleted" : "inserted";
    SCOPED_TRACE(statement);
    Sql raw(dsn());
    raw.exec("BEGIN; SET LOCAL session_replication_role = replica; " + statement);
    int64_t revision = 0;
    std::string error;
    std::thread writer([&] {
      try {
        revision = store->set(key, 2);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    // The set waits for the uncommitted trigger-less change's row; then that change commits.
    Sql watch(dsn());
    const bool waited = wait_until(
        [&] { return watch.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted") != "0"; });
    raw.exec("COMMIT");
    writer.join();
    ASSERT_TRUE(waited) << "the set never waited for the trigger-less change";
    ASSERT_EQ(error, "");
    EXPECT_EQ(table_content(dsn(), table).at(key), json(2));
    EXPECT_EQ(store->get_int(key), 2);
    ASSERT_TRUE(store->get_entry(key));
    EXPECT_EQ(store->get_entry(key)->revision, revision);
  }
}

TEST(SafeChanges, a_counter_incremented_by_cas_from_four_threads_on_two_instances_is_exact) {
  const std::string table = unique_name("t_cas_counter");
  auto a = Store::open(dsn(), test_options(table));
  auto b = Store::open(dsn(), test_options(table));
  a->set("counter", 0);
  constexpr int kPerThread = 100;
  auto worker = [&](Store& s) {
    for (int done = 0; done < kPerThread;) {
      std::optional<KeyEntry> e = s.get_entry("counter");
      if (s.set_if("counter", e->value.get<int>() + 1, e->revision)) ++done;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(worker, std::ref(i % 2 ? *a : *b));
  for (auto& t : threads) t.join();
  EXPECT_EQ(a->get_entry("counter")->value, 4 * kPerThread);
  EXPECT_TRUE(wait_until([&] { return b->get("counter") == 4 * kPerThread; }));
}

// --- transactions ---

TEST(SafeChanges, a_transaction_commits_all_or_nothing_and_names_the_failed_guard) {
  auto store = Store::open(dsn(), test_options(unique_name("t_txn")));
  const int64_t ra = store->set("a", 1);
  store->set("gone", true);

  Transaction ok;
  ok.require("a", ra).require_absent("b").set("a", 2).set("b", "x").remove("gone").remove("never");
  TxnResult r = store->commit(ok);
  ASSERT_TRUE(r) << r.reason;
  EXPECT_EQ(store->get("a"), 2);
  EXPECT_EQ(store->get("b"), "x");
  EXPECT_FALSE(store->get("gone"));
  // Consecutive revisions in operation order; the removal of an absent key draws none.
  const int64_t rev_a = store->get_entry("a")->revision;
  EXPECT_EQ(store->get_entry("b")->revision, rev_a + 1);
  EXPECT_EQ(r.revision, rev_a + 2);
  EXPECT_EQ(store->history("gone")[0].revision, r.revision);

  Transaction stale;
  stale.require_absent("c").require("a", ra).set("a", 3).set("c", 1);
  TxnResult failed = store->commit(stale);
  EXPECT_FALSE(failed);
  ASSERT_TRUE(failed.failed_guard);
  EXPECT_EQ(*failed.failed_guard, 1u);
  EXPECT_NE(failed.reason.find("\"a\""), std::string::npos) << failed.reason;
  ASSERT_EQ(failed.current.size(), 1u);
  EXPECT_EQ(failed.current[0].key, "a");
  EXPECT_EQ(failed.current[0].value, 2);
  EXPECT_EQ(store->get("a"), 2);  // Nothing written.
  EXPECT_FALSE(store->get("c"));
}

TEST(SafeChanges, a_prefix_guard_fails_when_any_key_under_it_changed_or_was_deleted) {
  auto store = Store::open(dsn(), test_options(unique_name("t_txn_prefix")));
  store->set("app:x", 1);
  const int64_t before = store->set("other", 1);
  Transaction t1;
  t1.require_unchanged("app:", before).set("app:y", 2);
  TxnResult r1 = store->commit(t1);
  ASSERT_TRUE(r1);

  const int64_t mark = r1.revision;
  store->remove("app:x");
  Transaction t2;
  t2.require_unchanged("app:", mark).set("app:z", 3);
  TxnResult r = store->commit(t2);
  EXPECT_FALSE(r);
  ASSERT_EQ(r.current.size(), 1u);
  EXPECT_EQ(r.current[0].key, "app:x");
  EXPECT_FALSE(r.current[0].value);
  EXPECT_FALSE(store->get("app:z"));
}

TEST(SafeChanges, another_instance_sees_a_transaction_whole_in_get_all_and_callbacks) {
  const std::string table = unique_name("t_txn_unit");
  auto writer = Store::open(dsn(), test_options(table));
  std::mutex mu;
  std::vector<Change> seen;
  auto reader = Store::open(dsn(), test_options(table));
  reader->subscribe([&](const Change& c) {
    std::lock_guard lock(mu);
    seen.push_back(c);
  });
  constexpr int kKeys = 20, kRounds = 50;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::thread watcher([&] {
    while (!done) {
      auto all = reader->get_all("k");
      if (all.empty()) continue;
      const json first = all.begin()->second;
      for (const auto& [k, v] : all) {
        if (v != first || all.size() != kKeys) torn++;
      }
    }
  });
  for (int round = 0; round < kRounds; ++round) {
    Transaction txn;
    for (int k = 0; k < kKeys; ++k) txn.set("k" + std::to_string(100 + k), round);
    ASSERT_TRUE(writer->commit(txn));
  }
  ASSERT_TRUE(wait_until([&] { return reader->get("k100") == kRounds - 1; }));
  done = true;
  watcher.join();
  EXPECT_EQ(torn.load(), 0);
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() == std::size_t(kKeys * kRounds);
  }));
  std::lock_guard lock(mu);
  // Consecutive, each unit of 20 ending with unit_end and only there.
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].unit_end, (i + 1) % kKeys == 0) << i;
    EXPECT_EQ(seen[i].value, json(int(i / kKeys)));
  }
}

TEST(SafeChanges, bad_transactions_are_refused_and_write_nothing) {
  auto store = Store::open(dsn(), test_options(unique_name("t_txn_bad")));
  store->set("a", 1);
  auto refused = [&](const Transaction& t, const std::string& needle) {
    try {
      store->commit(t);
      ADD_FAILURE() << "accepted; expected an error with " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  refused(Transaction{}, "at least one operation");
  refused(Transaction{}.set("a", 2).set("a", 3), "two operations");
  refused(Transaction{}.set("", 1), "operation 0");
  refused(Transaction{}.require("", 1).set("a", 2), "guard 0");
  refused(Transaction{}.require("a", -1).set("a", 2), "guard 0");
  EXPECT_EQ(store->get("a"), 1);
  EXPECT_EQ(store->history("a").size(), 1u);
}

TEST(SafeChanges, bad_safe_change_arguments_are_refused_and_write_nothing) {
  auto store = Store::open(dsn(), test_options(unique_name("t_safe_bad")));
  const int64_t r = store->set("k", 1);
  auto refused = [&](const std::function<void()>& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an error with " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  refused([&] { store->set_if("k", 2, -1); }, "invalid expected revision -1");
  refused([&] { store->remove_if("k", 0); }, "invalid expected revision 0");
  refused(
      [&] {
        store->set("k", 2, WriteOptions{std::string(1001, 'c'), "", 0});
      },
      "invalid comment: 1001 bytes");
  refused([&] { store->set("k", 2, WriteOptions{"bad\xff", "", 0}); }, "invalid comment");
  refused([&] { store->set("k", 2, WriteOptions{"", "", 424242}); }, "lease 424242 does not exist");
  refused([&] { store->grant_lease(std::chrono::seconds(0)); }, "invalid ttl 0 s");
  refused([&] { store->history(Config::HistoryQuery{"k", false, 0, 0}); }, "invalid limit 0");
  EXPECT_EQ(store->get_entry("k")->revision, r);  // Nothing written.
  EXPECT_EQ(store->history("k").size(), 1u);
}

// --- history, state at a revision, rollback ---

TEST(SafeChanges, history_records_every_change_with_both_values_actor_and_comment) {
  const std::string table = unique_name("t_hist");
  Options options = test_options(table);
  options.actor = "deployer";
  auto store = Store::open(dsn(), options);
  const int64_t r1 = store->set("k", 1, WriteOptions{"first", "", 0});
  const int64_t r2 = store->set("k", 2);
  Sql sql(dsn());
  sql.exec("SET application_name = 'psql'; SET syncconfig.comment = 'by hand'; UPDATE " + table +
           " SET value = '3' WHERE key = 'k'");
  sql.exec("DELETE FROM " + table + " WHERE key = 'k'");
  std::vector<HistoryRecord> h = store->history("k");
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[3].revision, r1);
  EXPECT_EQ(h[3].op, "set");
  EXPECT_EQ(h[3].value, 1);
  EXPECT_FALSE(h[3].previous_value);
  EXPECT_EQ(h[3].actor, "deployer");
  EXPECT_EQ(h[3].comment, "first");
  EXPECT_EQ(h[2].previous_value, 1);
  EXPECT_EQ(h[2].previous_revision, r1);
  EXPECT_EQ(h[1].op, "set");
  EXPECT_EQ(h[1].value, 3);
  EXPECT_EQ(h[1].previous_revision, r2);
  EXPECT_EQ(h[1].comment, "by hand");
  EXPECT_NE(h[1].actor.find("psql/"), std::string::npos) << h[1].actor;
  EXPECT_EQ(h[0].op, "delete");
  EXPECT_FALSE(h[0].value);
  EXPECT_EQ(h[0].previous_value, 3);
}

TEST(SafeChanges, truncate_is_recorded_per_key_and_can_be_rolled_back) {
  const std::string table = unique_name("t_hist_trunc");
  auto store = Store::open(dsn(), test_options(table));
  store->set("a", 1);
  const int64_t before = store->set("b", 2);
  Sql sql(dsn());
  sql.exec("TRUNCATE " + table);
  ASSERT_TRUE(wait_until([&] { return store->size() == 0; }));
  EXPECT_EQ(store->history("a")[0].op, "truncate");
  EXPECT_EQ(store->history("a")[0].previous_value, 1);
  ChangesSince since = store->changes_since(before);
  EXPECT_TRUE(since.complete) << since.reason;

  Snapshot past = store->snapshot_at(before);
  EXPECT_EQ(past.values, (std::map<std::string, json>{{"a", 1}, {"b", 2}}));
  TxnResult r = store->rollback("", /*prefix=*/true, before, "undo the truncate");
  ASSERT_TRUE(r) << r.reason;
  EXPECT_EQ(store->get_all(), past.values);
  EXPECT_EQ(store->history("b")[0].comment, "undo the truncate");
}

TEST(SafeChanges, state_at_a_past_revision_equals_what_a_client_recorded_then) {
  const std::string table = unique_name("t_at");
  auto store = Store::open(dsn(), test_options(table));
  std::vector<std::pair<int64_t, std::map<std::string, json>>> recorded;
  for (int i = 0; i < 30; ++i) {
    const std::string key = "p:" + std::to_string(i % 7);
    if (i % 5 == 4) {
      store->remove(key);
    } else {
      store->set(key, i);
    }
    store->set("q:other", i);  // Outside the prefix.
    recorded.emplace_back(store->stats().applied_revision, store->get_all("p:"));
  }
  for (const auto& [revision, state] : recorded) {
    EXPECT_EQ(store->snapshot_at(revision, "p:").values, state) << revision;
  }
}

TEST(SafeChanges, rollback_of_a_key_is_a_new_guarded_change) {
  auto store = Store::open(dsn(), test_options(unique_name("t_rollback")));
  const int64_t good = store->set("cfg", json{{"limit", 10}});
  store->set("cfg", json{{"limit", 0}});
  TxnResult r = store->rollback("cfg", false, good, "");
  ASSERT_TRUE(r) << r.reason;
  EXPECT_GT(r.revision, good);
  EXPECT_EQ(store->get("cfg"), (json{{"limit", 10}}));
  std::vector<HistoryRecord> h = store->history("cfg");
  ASSERT_EQ(h.size(), 3u);  // Nothing rewritten: a third record.
  EXPECT_EQ(h[0].comment, "rollback to revision " + std::to_string(good));

  // To a revision where the key did not exist: deleted.
  const int64_t before_new = store->set("other", 1);
  store->set("new", 1);
  ASSERT_TRUE(store->rollback("new", false, before_new, WriteOptions{"drop it", "ops:alice", 0}));
  EXPECT_FALSE(store->get("new"));
  EXPECT_EQ(store->history("new")[0].actor, "ops:alice");
  EXPECT_EQ(store->history("new")[0].comment, "drop it");
}

TEST(SafeChanges, pruned_history_is_refused_with_out_of_range) {
  const std::string table = unique_name("t_retention");
  Options options = test_options(table);
  options.history_retention = 1ms;
  options.history_min_versions = 1;
  options.heartbeat_interval = 100ms;
  auto store = Store::open(dsn(), options);
  const int64_t old = store->set("k", 1);
  store->set("k", 2);
  const int64_t newest = store->set("k", 3);
  Sql sql(dsn());
  ASSERT_TRUE(wait_until([&] {
    return sql.scalar("SELECT count(*) FROM " + table + "_changes WHERE key = 'k'") == "1";
  }));
  EXPECT_EQ(store->history("k").size(), 1u);  // The newest is kept (min versions).
  EXPECT_EQ(store->history("k")[0].revision, newest);
  try {
    store->snapshot_at(old);
    ADD_FAILURE() << "answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
    EXPECT_NE(e.message().find("pruned"), std::string::npos) << e.message();
  }
  EXPECT_THROW(store->rollback("k", false, old, ""), Error);
  EXPECT_EQ(store->get("k"), 3);
  EXPECT_EQ(store->snapshot_at(newest).values.at("k"), 3);
  try {
    store->snapshot_at(newest + 1000);
    ADD_FAILURE() << "answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
    EXPECT_NE(e.message().find("beyond"), std::string::npos) << e.message();
  }
}

// --- leases ---

TEST(SafeChanges, a_leased_key_is_deleted_after_its_ttl_and_not_before) {
  const std::string table = unique_name("t_lease");
  Options options = test_options(table);
  options.lease_sweep_interval = 100ms;
  auto store = Store::open(dsn(), options);
  Recorder rec;
  store->subscribe(rec.callback());
  Lease lease = store->grant_lease(2s);
  store->set("svc:a", "up", WriteOptions{"", "", lease.id});
  store->set("plain", 1);
  Sql sql(dsn());
  ASSERT_TRUE(wait_until([&] { return !store->get("svc:a"); }, 10s));
  // By the database's clock: the deletion came after the lease's expiry, and within the sweep
  // interval of it (plus slack for a loaded machine).
  const auto expiry_us =
      std::chrono::duration_cast<std::chrono::microseconds>(lease.expires_at.time_since_epoch())
          .count();
  const std::string bounds =
      sql.scalar("SELECT (changed_at >= to_timestamp(" + std::to_string(expiry_us) +
                 " / 1e6))::text || ' ' "
                 "|| (changed_at <= to_timestamp(" +
                 std::to_string(expiry_us) +
                 " / 1e6) + "
                 "interval '2 seconds')::text FROM " +
                 table + "_changes WHERE key = 'svc:a' AND op = 'expire'");
  EXPECT_EQ(bounds, "true true");
  EXPECT_EQ(store->get("plain"), 1);
  EXPECT_FALSE(store->keep_alive(lease.id));
  EXPECT_TRUE(wait_until([&] {
    for (const Change& c : rec.changes()) {
      if (c.key == "svc:a" && !c.value && c.expired) return true;
    }
    return false;
  }));
  EXPECT_THROW(store->set("x", 1, WriteOptions{"", "", lease.id}), Error);  // Gone.
}

TEST(SafeChanges, keep_alive_extends_a_lease_and_revoke_deletes_its_keys_at_once) {
  auto store = Store::open(dsn(), test_options(unique_name("t_lease_keep")));
  Lease lease = store->grant_lease(1s);
  store->set("held", 1, WriteOptions{"", "", lease.id});
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(400ms);  // Longer in all than the ttl: only keep-alives save it.
    ASSERT_TRUE(store->keep_alive(lease.id));
  }
  EXPECT_EQ(store->get("held"), 1);
  EXPECT_TRUE(store->revoke_lease(lease.id));
  EXPECT_FALSE(store->get("held"));
  EXPECT_EQ(store->history("held")[0].op, "expire");
  EXPECT_FALSE(store->revoke_lease(lease.id));
}

TEST(SafeChanges, after_an_outage_leases_get_a_grace_period_instead_of_expiring_at_once) {
  const std::string table = unique_name("t_lease_grace");
  Options options = test_options(table);
  options.lease_sweep_interval = 100ms;
  options.lease_grace = 3s;
  int64_t lease_id = 0;
  {
    auto before = Store::open(dsn(), options);
    Lease lease = before->grant_lease(60s);
    lease_id = lease.id;
    before->set("svc", 1, WriteOptions{"", "", lease.id});
  }
  // An outage of a minute: nobody swept, and the lease ran out meanwhile.
  Sql sql(dsn());
  sql.exec("UPDATE " + table + "_lease_sweeps SET swept_at = now() - interval '1 minute'; UPDATE " +
           table + "_leases SET expires_at = now() - interval '30 seconds'");
  auto after = Store::open(dsn(), options);
  ASSERT_TRUE(wait_until([&] {
    return sql.scalar("SELECT (swept_at > now() - interval '1 second')::text FROM " + table +
                      "_lease_sweeps") == "true";
  }));
  EXPECT_EQ(after->get("svc"), 1);           // Not expired at once...
  EXPECT_TRUE(after->keep_alive(lease_id));  // ...so its owner can keep it alive.
  EXPECT_EQ(after->get("svc"), 1);
}

TEST(SafeChanges, another_instance_takes_over_sweeping_when_the_sweeper_dies) {
  const std::string table = unique_name("t_lease_failover");
  Options options = test_options(table);
  options.lease_sweep_interval = 100ms;
  auto first = Store::open(dsn(), options);
  {
    // Only `first` exists: it is the sweeper.
    Lease lease = first->grant_lease(1s);
    first->set("early", 1, WriteOptions{"", "", lease.id});
    ASSERT_TRUE(wait_until([&] { return !first->get("early"); }, 15s));
  }
  auto second = Store::open(dsn(), options);
  first->shutdown();  // Its session lock goes with its connection.
  Lease lease = second->grant_lease(1s);
  second->set("k", 1, WriteOptions{"", "", lease.id});
  EXPECT_TRUE(wait_until([&] { return !second->get("k"); }, 15s));
}

}  // namespace
}  // namespace syncconfig::testing
