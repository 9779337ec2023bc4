// Several instances on one table: propagation, ordering, large values, plain SQL, callbacks.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

struct Pair {
  std::string table = unique_name("t_sync");
  std::unique_ptr<Store> a = Store::open(dsn(), test_options(table));
  std::unique_ptr<Store> b = Store::open(dsn(), test_options(table));
};

TEST(Sync, a_write_on_one_instance_reaches_get_and_callbacks_of_another) {
  Recorder seen;
  Pair p;
  p.b->subscribe(seen.callback());
  p.a->set("feature:new_ui", true);
  // The heartbeat is 30 s away: only the notification can deliver this in time.
  ASSERT_TRUE(wait_until([&] { return p.b->get_bool("feature:new_ui", false); }, 5s));
  ASSERT_TRUE(wait_until([&] { return seen.has("feature:new_ui", json(true)); }, 5s));
  Change arrived = seen.changes().back();
  EXPECT_EQ(arrived.origin, ChangeOrigin::kRemote);
  // The notification carries when the change was made, for lag metrics.
  ASSERT_TRUE(arrived.written_at.has_value());
  auto lag = std::chrono::system_clock::now() - *arrived.written_at;
  EXPECT_GE(lag, -1s);  // Same machine, same clock; allow for rounding.
  EXPECT_LT(lag, 5s);

  EXPECT_TRUE(p.a->remove("feature:new_ui"));
  ASSERT_TRUE(wait_until([&] { return !p.b->contains("feature:new_ui"); }, 5s));
  ASSERT_TRUE(wait_until([&] { return seen.has("feature:new_ui", std::nullopt); }, 5s));
  EXPECT_EQ(p.b->stats().resyncs, 0u);
}

TEST(Sync, crc_is_equal_on_instances_in_sync_and_differs_when_data_differs) {
  Pair p;
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
  p.a->set("x", json{{"deep", {1, 2, 3}}});
  p.a->set("y", "text");
  ASSERT_TRUE(wait_until([&] { return p.b->size() == 2; }));
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
  uint32_t before = p.a->get_crc();
  p.a->set("y", "other");
  EXPECT_NE(p.a->get_crc(), before);
  ASSERT_TRUE(wait_until([&] { return p.b->get_string("y") == "other"; }));
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
  // A store opened later, from the table alone, agrees too.
  auto c = Store::open(dsn(), test_options(p.table));
  EXPECT_EQ(c->get_crc(), p.a->get_crc());
}

TEST(Sync, large_values_sync_beyond_the_notify_payload_limit) {
  Pair p;
  std::string kb100(100 * 1024, 'a');
  json mb1 = json::array();
  for (int i = 0; i < 20000; ++i) mb1.push_back(json{{"index", i}, {"pad", std::string(30, 'p')}});
  ASSERT_GT(mb1.dump().size(), 1000000u);
  p.a->set("k100", kb100);
  p.a->set("k1m", mb1);
  ASSERT_TRUE(wait_until([&] { return p.b->get_string("k100") == kb100; }, 10s));
  ASSERT_TRUE(wait_until([&] { return p.b->get("k1m") == mb1; }, 10s));
  // Multi-byte characters: 4000 x 'é' is 8000 bytes, over the limit though only 4000 chars.
  std::string accents;
  for (int i = 0; i < 4000; ++i) accents += "\xc3\xa9";
  p.a->set("accents", accents);
  ASSERT_TRUE(wait_until([&] { return p.b->get_string("accents") == accents; }, 10s));
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
}

TEST(Sync, writes_made_with_plain_sql_reach_every_instance) {
  Pair p;
  Sql sql(dsn());
  sql.exec("INSERT INTO " + p.table + " (key, value) VALUES ('plain', '\"inserted\"')");
  ASSERT_TRUE(wait_until([&] {
    return p.a->get_string("plain") == "inserted" && p.b->get_string("plain") == "inserted";
  }));
  sql.exec("UPDATE " + p.table + " SET value = '\"updated\"' WHERE key = 'plain'");
  ASSERT_TRUE(wait_until([&] {
    return p.a->get_string("plain") == "updated" && p.b->get_string("plain") == "updated";
  }));
  sql.exec("INSERT INTO " + p.table +
           " (key, value) SELECT 'bulk' || i, to_jsonb(i) FROM generate_series(1, 100) i");
  ASSERT_TRUE(wait_until([&] { return p.a->size() == 101 && p.b->size() == 101; }));
  sql.exec("DELETE FROM " + p.table + " WHERE key LIKE 'bulk%' AND (value::int % 2) = 0");
  ASSERT_TRUE(wait_until([&] { return p.a->size() == 51 && p.b->size() == 51; }));
  EXPECT_FALSE(p.b->contains("bulk2"));
  EXPECT_EQ(p.b->get_int("bulk3"), 3);
  // Renaming a key is a deletion of the old key and a write of the new one.
  sql.exec("UPDATE " + p.table + " SET key = 'renamed' WHERE key = 'plain'");
  ASSERT_TRUE(wait_until(
      [&] { return !p.b->contains("plain") && p.b->get_string("renamed") == "updated"; }));
  // Several statements in one transaction arrive as one.
  sql.exec("BEGIN; INSERT INTO " + p.table + " (key, value) VALUES ('tx1', '1'); UPDATE " +
           p.table + " SET value = '2' WHERE key = 'tx1'; DELETE FROM " + p.table +
           " WHERE key = 'bulk1'; COMMIT;");
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("tx1") == 2 && !p.b->contains("bulk1"); }));
  // A rolled-back write never shows.
  sql.exec("BEGIN; UPDATE " + p.table + " SET value = '99' WHERE key = 'tx1'; ROLLBACK;");
  sql.exec("INSERT INTO " + p.table + " (key, value) VALUES ('marker', '1')");
  ASSERT_TRUE(wait_until([&] { return p.b->contains("marker"); }));
  EXPECT_EQ(p.b->get_int("tx1"), 2);
  // ON CONFLICT DO NOTHING changes nothing.
  sql.exec("INSERT INTO " + p.table + " (key, value) VALUES ('tx1', '5') ON CONFLICT DO NOTHING");
  // TRUNCATE fires no row trigger, yet reaches every instance.
  sql.exec("TRUNCATE " + p.table);
  ASSERT_TRUE(wait_until([&] { return p.a->size() == 0 && p.b->size() == 0; }));
  sql.exec("BEGIN; INSERT INTO " + p.table + " (key, value) VALUES ('before', '1'); TRUNCATE " +
           p.table + "; INSERT INTO " + p.table + " (key, value) VALUES ('after', '1'); COMMIT;");
  ASSERT_TRUE(wait_until([&] { return p.b->contains("after"); }));
  EXPECT_FALSE(p.b->contains("before"));
  auto expected = table_content(dsn(), p.table);
  ASSERT_TRUE(wait_until([&] { return p.a->get_all() == expected && p.b->get_all() == expected; }));
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
}

TEST(Sync, concurrent_writers_on_overlapping_keys_never_roll_an_instance_back) {
  std::string table = unique_name("t_race");
  constexpr int kInstances = 4;
  constexpr int kKeys = 8;
  constexpr int kWritesPerInstance = 150;
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kInstances; ++i) stores.push_back(Store::open(dsn(), test_options(table)));

  // Per instance and key, the revisions its callbacks reported, in order.
  std::vector<std::map<std::string, std::vector<int64_t>>> observed(kInstances);
  std::vector<std::mutex> observed_mu(kInstances);
  for (int i = 0; i < kInstances; ++i) {
    stores[i]->subscribe([&, i](const Change& c) {
      std::lock_guard lock(observed_mu[i]);
      observed[i][c.key].push_back(c.revision);
    });
  }
  // Readers: per instance and key, the "n" counters of values written by writer 0 must never
  // go back, since writer 0 writes increasing counters one at a time.
  std::atomic<bool> stop{false};
  std::atomic<int> rollbacks{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < kInstances; ++i) {
    readers.emplace_back([&, i] {
      std::map<std::string, int64_t> last;
      while (!stop.load()) {
        for (int k = 0; k < kKeys; ++k) {
          std::string key = "k" + std::to_string(k);
          auto v = stores[i]->get(key);
          if (!v || !v->is_object() || (*v)["w"] != 0) continue;
          int64_t n = (*v)["n"];
          auto it = last.find(key);
          if (it != last.end() && n < it->second) {
            // Another writer may have written in between; writer 0's older value can only
            // reappear through a rollback.
            rollbacks.fetch_add(1);
          }
          last[key] = n;
        }
      }
    });
  }
  std::vector<std::thread> writers;
  for (int i = 0; i < kInstances; ++i) {
    writers.emplace_back([&, i] {
      std::mt19937 rng(i);
      for (int n = 0; n < kWritesPerInstance; ++n) {
        std::string key = "k" + std::to_string(rng() % kKeys);
        if (rng() % 10 == 0) {
          stores[i]->remove(key);
        } else {
          stores[i]->set(key, json{{"w", i}, {"n", n}});
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  auto expected = table_content(dsn(), table);
  for (int i = 0; i < kInstances; ++i) {
    ASSERT_TRUE(wait_until([&] { return stores[i]->get_all() == expected; }, 10s))
        << "instance " << i << " did not converge";
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(rollbacks.load(), 0);
  for (auto& s : stores) s->shutdown();  // Callbacks use `observed`.
  for (int i = 0; i < kInstances; ++i) {
    EXPECT_EQ(stores[i]->get_crc(), stores[0]->get_crc());
    std::lock_guard lock(observed_mu[i]);
    for (const auto& [key, revisions] : observed[i]) {
      for (size_t r = 1; r < revisions.size(); ++r) {
        EXPECT_LT(revisions[r - 1], revisions[r])
            << "instance " << i << " key " << key << " went back in revision";
      }
    }
  }
}

TEST(Sync, callbacks_see_local_writes_in_order_and_may_call_the_store) {
  std::string table = unique_name("t_cb");
  auto store = Store::open(dsn(), test_options(table));
  std::vector<int64_t> values;
  std::mutex mu;
  std::atomic<bool> reentered{false};
  store->subscribe([&](const Change& c) {
    if (c.key == "counter") {
      // Calling back into the store from a callback must not deadlock.
      EXPECT_TRUE(store->contains("counter") || !c.value);
      if (c.value && c.value->get<int>() == 50) {
        store->set("from_callback", true);
        reentered = true;
      }
      std::lock_guard lock(mu);
      values.push_back(c.value ? c.value->get<int64_t>() : -1);
      EXPECT_EQ(c.origin, ChangeOrigin::kLocal);
    }
  });
  for (int i = 1; i <= 100; ++i) store->set("counter", i);
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return values.size() == 100;
  }));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(values[i], i + 1);
  ASSERT_TRUE(wait_until([&] { return store->get_bool("from_callback"); }));
  EXPECT_TRUE(reentered.load());
  store->shutdown();  // The callback uses locals declared after the store.
}

TEST(Sync, a_write_of_the_same_value_is_a_change_at_its_revision_delivered_once) {
  Recorder on_a, on_b;
  Pair p;
  p.a->subscribe(on_a.callback());
  p.b->subscribe(on_b.callback());
  const int64_t first = p.a->set("same", 1);
  const int64_t again = p.a->set("same", 1);
  p.a->set("marker", 1);
  ASSERT_TRUE(wait_until([&] { return on_b.has("marker", json(1)); }));
  ASSERT_TRUE(wait_until([&] { return on_a.has("marker", json(1)); }));
  // Both writes on each instance, each at its own revision (a compare-and-set names the second);
  // the echo of A's own writes changes nothing, so is not delivered again.
  for (const Recorder* r : {&on_a, &on_b}) {
    const std::vector<Change> changes = r->changes();
    ASSERT_EQ(changes.size(), 3u);
    EXPECT_EQ(changes[0].revision, first);
    EXPECT_EQ(changes[1].revision, again);
    EXPECT_EQ(changes[1].value, json(1));
    EXPECT_EQ(changes[2].key, "marker");
  }
  EXPECT_EQ(p.a->get_crc(), p.b->get_crc());
}

TEST(Sync, a_throwing_callback_is_logged_and_the_store_keeps_working) {
  Recorder after;
  Pair p;
  p.b->subscribe([](const Change&) { throw std::runtime_error("boom"); });
  p.b->subscribe(after.callback());
  p.a->set("k", 1);
  ASSERT_TRUE(wait_until([&] { return after.has("k", json(1)); }));
  p.a->set("k", 2);
  ASSERT_TRUE(wait_until([&] { return after.has("k", json(2)); }));
  EXPECT_EQ(p.b->get_int("k"), 2);
  EXPECT_EQ(p.b->stats().callback_errors, 2u);
}

// Callbacks run one at a time and their queue is not bounded: a slow one delays the others but
// not the cache, and Stats says how far behind they are.
TEST(Sync, a_slow_callback_shows_in_the_queue_depth_while_reads_stay_current) {
  Pair p;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> calls{0};
  p.b->subscribe([&](const Change&) {
    calls++;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  EXPECT_EQ(p.b->stats().callback_queue_depth, 0u);
  constexpr int kWrites = 10;
  for (int i = 0; i < kWrites; ++i) p.a->set("k" + std::to_string(i), i);
  // The cache does not wait for callbacks: the last write arrives while the first callback is
  // still blocked, and the other nine changes (and any progress marks) wait behind it.
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("k9") == 9; }));
  EXPECT_EQ(calls.load(), 1);
  ASSERT_TRUE(wait_until([&] { return p.b->stats().callback_queue_depth >= kWrites - 1; }))
      << p.b->stats().callback_queue_depth;
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(wait_until([&] { return calls.load() == kWrites; }));
  ASSERT_TRUE(wait_until([&] { return p.b->stats().callback_queue_depth == 0; }));
  EXPECT_GE(p.b->stats().callback_queue_peak, uint64_t{kWrites - 1});
}

TEST(Sync, after_unsubscribe_returns_the_callback_is_not_called_again) {
  Recorder later;
  auto store = Store::open(dsn(), test_options(unique_name("t_unsub")));
  std::atomic<int> calls{0};
  std::atomic<bool> unsubscribed{false};
  std::atomic<bool> called_after{false};
  SubscriptionId id = store->subscribe([&](const Change&) {
    calls.fetch_add(1);
    std::this_thread::sleep_for(1ms);  // Widen the window in which unsubscribe races a call.
    if (unsubscribed.load()) called_after = true;
  });
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) store->set("k", i);
  });
  ASSERT_TRUE(wait_until([&] { return calls.load() > 5; }));
  store->unsubscribe(id);
  // The flag is set after unsubscribe returned: a call that started before has finished.
  unsubscribed = true;
  writer.join();
  store->set("k", "final");
  store->subscribe(later.callback());
  store->set("k", "later");
  ASSERT_TRUE(wait_until([&] { return later.has("k", json("later")); }));
  EXPECT_FALSE(called_after.load());
  store->shutdown();
}

TEST(Sync, a_callback_may_unsubscribe_itself) {
  Recorder marker;
  auto store = Store::open(dsn(), test_options(unique_name("t_selfunsub")));
  std::atomic<int> calls{0};
  SubscriptionId id = 0;
  std::atomic<bool> ready{false};
  id = store->subscribe([&](const Change&) {
    while (!ready.load()) std::this_thread::yield();
    calls.fetch_add(1);
    store->unsubscribe(id);
  });
  ready = true;
  store->set("a", 1);
  store->set("b", 1);
  store->subscribe(marker.callback());
  store->set("c", 1);
  ASSERT_TRUE(wait_until([&] { return marker.has("c", json(1)); }));
  EXPECT_EQ(calls.load(), 1);
  store->shutdown();
}

TEST(Sync, foreign_and_malformed_payloads_on_the_channel_are_ignored) {
  Pair p;
  Sql sql(dsn());
  std::string channel = p.table + "_ch";
  for (const char* payload :
       {"garbage", "", "{}", "[1,2]", "{\"sc\":1}", "{\"sc\":1,\"op\":\"u\",\"r\":\"x\"}",
        "{\"sc\":1,\"op\":\"z\",\"r\":5,\"x\":1,\"k\":\"a\"}",
        "{\"sc\":1,\"op\":\"u\",\"r\":5,\"x\":1,\"k\":\"a\",\"val\":\"not json\"}",
        "{\"key\":\"x\",\"value\":1}"}) {
    sql.exec("SELECT pg_notify('" + channel + "', '" + std::string(payload) + "')");
  }
  p.a->set("after", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("after") == 1; }));
  EXPECT_FALSE(p.b->contains("a"));
  EXPECT_GE(p.b->stats().notifications_ignored, 8u);
}

// A session that may NOTIFY the channel but makes no commit: what it claims must not reach a cache.
// Returns a payload as the triggers write it (see src/sync/payload.h).
std::string payload(const std::string& op, int64_t revision, const std::string& key,
                    const std::optional<json>& value) {
  json p = {{"sc", 1}, {"op", op}, {"r", revision}, {"x", 424242}, {"t", 0}, {"e", 1}};
  if (op != "t") p["k"] = key;
  if (value) p["val"] = value->dump();
  return p.dump();
}

int64_t last_revision(Sql& sql, const std::string& table) {
  return std::stoll(sql.scalar("SELECT last_value FROM " + table + "_revision_seq"));
}

TEST(Sync, forged_notifications_change_no_cache_and_do_not_move_the_watermark) {
  Pair p;
  Sql sql(dsn());
  const std::string channel = p.table + "_ch";
  const int64_t real = p.a->set("flag", "real");
  p.a->set("doomed", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->contains("doomed"); }));
  const uint64_t forged_before = p.b->stats().notifications_forged;
  const int64_t next = last_revision(sql, p.table) + 1;
  auto notify = [&](const std::string& text) {
    sql.exec("SELECT pg_notify('" + channel + "', $$" + text + "$$)");
  };
  // A new value at a revision no commit made, one far ahead (it would freeze the watermark), a
  // deletion and a truncation that never happened, and a replay of a real revision with another
  // value and with another key.
  notify(payload("u", next, "flag", json("forged")));
  notify(payload("u", next + 1'000'000, "flag", json("far ahead")));
  notify(payload("d", next + 1, "doomed", std::nullopt));
  notify(payload("t", next + 2, "", std::nullopt));
  notify(payload("u", real, "flag", json("altered replay")));
  notify(payload("u", real, "other", json("replay for another key")));
  // Real writes after them still arrive: the watermark did not jump.
  p.a->set("after", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("after") == 1; }));
  EXPECT_EQ(p.b->get_string("flag"), "real");
  EXPECT_EQ(p.b->get_int("doomed"), 1);
  EXPECT_FALSE(p.b->contains("other"));
  Stats stats = p.b->stats();
  EXPECT_LE(stats.revision, last_revision(sql, p.table));
  // The replays name a revision B has passed: ignored before anything is read. The four
  // others reach the verifying read and fail it.
  EXPECT_EQ(stats.notifications_forged - forged_before, 4u);
  EXPECT_EQ(p.b->get_all(), table_content(dsn(), p.table));
}

// Signed payloads (docs/protocol.md, "Signed payloads"): the library's own writes reach another
// instance without a read of the change log; plain SQL writes are still verified by the read.
TEST(Sync, the_librarys_own_changes_are_applied_on_their_signature_plain_sql_by_a_read) {
  Pair p;
  Sql sql(dsn());
  const uint64_t before = p.b->stats().notifications_signed;
  p.a->set("one", 1);
  p.a->set("big", std::string(9000, 'x'));  // Too large for the payload: read.
  p.a->remove("one");
  Transaction txn;
  txn.set("t1", 1);
  txn.set("t2", 2);
  ASSERT_TRUE(p.a->commit(txn));
  sql.exec("INSERT INTO " + p.table + " (key, value) VALUES ('plain', '1')");
  ASSERT_TRUE(wait_until([&] { return p.b->contains("plain") && p.b->contains("t2"); }));
  EXPECT_FALSE(p.b->contains("one"));
  EXPECT_EQ(p.b->get_string("big").size(), 9000u);
  // set "one", remove "one", and the transaction's two sets; not "big", not "plain".
  EXPECT_EQ(p.b->stats().notifications_signed - before, 4u);
  EXPECT_EQ(p.b->stats().notifications_forged, 0u);
  EXPECT_EQ(p.b->get_all(), table_content(dsn(), p.table));
}

// A transaction's payloads are built by concatenation (T_sc_txn): values and keys that need JSON
// escaping arrive intact and signed, a value too large for the payload is read, a deletion is
// applied on its signature, and the unit ends with its last change.
TEST(Sync, a_transactions_payloads_carry_escaped_values_and_leave_large_ones_to_a_read) {
  Pair p;
  p.a->set("gone", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->contains("gone"); }));
  std::mutex mu;
  std::vector<Change> seen;
  p.b->subscribe([&](const Change& c) {
    std::lock_guard lock(mu);
    seen.push_back(c);
  });
  const uint64_t before = p.b->stats().notifications_signed;
  const json tricky = {{"a", "b\"c\n\\"}, {"\u00fc", {1, 2.5, nullptr}}, {"t", "\t</x>"}};
  Transaction txn;
  txn.set("q\"uote\\", tricky);
  txn.set("big", std::string(9000, 'x'));  // Too large for the payload: read.
  txn.remove("gone");
  txn.set("plain", 5);
  ASSERT_TRUE(p.a->commit(txn));
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() == 4u;
  }));
  EXPECT_EQ(p.b->get("q\"uote\\"), tricky);
  EXPECT_EQ(p.b->get_string("big").size(), 9000u);
  EXPECT_FALSE(p.b->contains("gone"));
  EXPECT_EQ(p.b->get("plain"), json(5));
  // The escaped value, the deletion and "plain"; not "big".
  EXPECT_EQ(p.b->stats().notifications_signed - before, 3u);
  EXPECT_EQ(p.b->stats().notifications_forged, 0u);
  std::lock_guard lock(mu);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].unit_end, i == 3) << i;
  EXPECT_EQ(p.b->get_all(), table_content(dsn(), p.table));
}

// Takes `payload` (a signed one) and changes what it claims without re-signing it.
std::string tampered(const std::string& payload, int64_t revision, const json& value) {
  const std::size_t field = payload.rfind(", \"m\" : \"");
  EXPECT_NE(field, std::string::npos) << payload;
  json j = json::parse(payload);
  j["r"] = revision;
  j["val"] = value.dump();
  const std::string signature = j["m"].get<std::string>();
  j.erase("m");
  std::string text = j.dump();
  return text.substr(0, text.size() - 1) + ", \"m\" : \"" + signature + "\"}";
}

TEST(Sync, a_signature_that_does_not_check_is_verified_by_a_read_and_forgeries_still_fail) {
  Pair p;
  Sql sql(dsn()), listener(dsn());
  const std::string channel = p.table + "_ch";
  listener.exec("LISTEN " + channel);
  p.a->set("flag", "real");
  std::vector<std::string> seen = listener.notifications(5s);
  ASSERT_EQ(seen.size(), 1u);
  const std::string genuine = seen[0];
  ASSERT_NE(genuine.find("\"m\" : \""), std::string::npos) << genuine;
  p.a->set("flag", "newer");
  ASSERT_TRUE(wait_until([&] { return p.b->get_string("flag") == "newer"; }));
  const uint64_t forged_before = p.b->stats().notifications_forged;
  const uint64_t signed_before = p.b->stats().notifications_signed;
  const int64_t next = last_revision(sql, p.table) + 1;
  auto notify = [&](const std::string& text) {
    sql.exec("SELECT pg_notify('" + channel + "', $$" + text + "$$)");
  };
  // The genuine payload replayed (its revision is behind B), the same signature over another
  // value at a revision no commit made, and a made-up signature.
  notify(genuine);
  notify(tampered(genuine, next, json("forged")));
  json made_up = json::parse(payload("u", next + 1, "flag", json("made up")));
  std::string text = made_up.dump();
  notify(text.substr(0, text.size() - 1) + ", \"m\" : \"" + std::string(32, '0') + "\"}");
  // Another table's genuine signed payload, at a revision beyond B's: the other key does not
  // check, and B's change log has no such record.
  {
    const std::string other = unique_name("t_other");
    std::unique_ptr<Store> c = Store::open(dsn(), test_options(other));
    Sql other_listener(dsn());
    other_listener.exec("LISTEN " + other + "_ch");
    sql.exec("SELECT setval('" + other + "_revision_seq', " + std::to_string(next + 100) + ")");
    c->set("flag", "from another table");
    std::vector<std::string> theirs = other_listener.notifications(5s);
    ASSERT_EQ(theirs.size(), 1u);
    notify(theirs[0]);
  }
  p.a->set("after", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("after") == 1; }));
  EXPECT_EQ(p.b->get_string("flag"), "newer");
  Stats stats = p.b->stats();
  EXPECT_EQ(stats.notifications_forged - forged_before, 3u);
  EXPECT_EQ(stats.notifications_signed - signed_before, 1u);  // "after" alone.
  EXPECT_LE(stats.revision, last_revision(sql, p.table));
  EXPECT_EQ(p.b->get_all(), table_content(dsn(), p.table));
}

TEST(Sync, a_table_installed_before_signing_gets_a_key_and_instances_follow_a_new_key) {
  Pair p;
  Sql sql(dsn());
  // As protocol 2 was before signed payloads: no key table, the functions notify unsigned.
  sql.exec("DROP TABLE " + p.table + "_sc_key");
  p.a->set("unsigned", 1);
  ASSERT_TRUE(wait_until([&] { return p.b->contains("unsigned"); }));
  // An instance starting now adds the key (a new one: B holds none, A holds the dropped one).
  std::unique_ptr<Store> c = Store::open(dsn(), test_options(p.table));
  EXPECT_EQ(sql.scalar("SELECT count(*) FROM " + p.table + "_sc_key"), "1");
  // Every instance applies the new key's payloads: a signature that does not check under the
  // key it holds is verified by the read, which also makes it read the key again.
  // (Looking again at most once a second: keep writing until both do.)
  int i = 0;
  ASSERT_TRUE(wait_until([&] {
    c->set("signed", ++i);
    return p.a->stats().notifications_signed > 0 && p.b->stats().notifications_signed > 0;
  }));
  ASSERT_TRUE(
      wait_until([&] { return p.a->get_int("signed") == i && p.b->get_int("signed") == i; }));
  EXPECT_EQ(p.a->stats().notifications_forged, 0u);
  EXPECT_EQ(p.a->get_all(), table_content(dsn(), p.table));
  EXPECT_EQ(p.b->get_all(), table_content(dsn(), p.table));
}

TEST(Sync, many_instances_in_one_process_all_receive_a_change) {
  std::string table = unique_name("t_many");
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < 20; ++i) stores.push_back(Store::open(dsn(), test_options(table)));
  stores[7]->set("broadcast", "hello");
  for (auto& s : stores) {
    ASSERT_TRUE(wait_until([&] { return s->get_string("broadcast") == "hello"; }));
  }
  for (auto& s : stores) EXPECT_EQ(s->get_crc(), stores[0]->get_crc());
}

TEST(Sync, gets_from_many_threads_while_writes_arrive) {
  Pair p;
  p.a->set("hot", 0);
  ASSERT_TRUE(wait_until([&] { return p.b->contains("hot"); }));
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::atomic<int64_t> reads{0};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (!stop.load()) {
        int64_t v = p.b->get_int("hot", -1);
        EXPECT_GE(v, last);  // A single writer's increasing values only move forward.
        last = v;
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 1; i <= 100; ++i) p.a->set("hot", i);
  ASSERT_TRUE(wait_until([&] { return p.b->get_int("hot") == 100; }));
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 100);
}

// --- Progress and reading changes back from the table ----------------------------------------

TEST(Sync, progress_follows_every_change_it_covers_and_is_current_once_writes_stop) {
  Pair p;
  std::mutex mu;
  std::vector<std::pair<char, int64_t>> seen;  // 'c' change / 'p' progress, revision
  p.b->subscribe(
      [&](const Change& c) {
        std::lock_guard lock(mu);
        seen.emplace_back('c', c.revision);
      },
      [&](const Progress& pr) {
        std::lock_guard lock(mu);
        seen.emplace_back('p', pr.revision);
      });
  for (int i = 0; i < 20; ++i) p.a->set("k" + std::to_string(i % 4), i);
  const int64_t last = p.a->stats().applied_revision;
  // No write follows the last one: the progress must still get there (not wait for the next
  // transaction or the heartbeat, 30 s away).
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard lock(mu);
        return !seen.empty() && seen.back() == std::make_pair('p', last);
      },
      5s));
  EXPECT_EQ(p.b->stats().revision, last);
  std::lock_guard lock(mu);
  int64_t progress = 0;
  for (auto [kind, revision] : seen) {
    if (kind == 'p') {
      EXPECT_GT(revision, progress);
      progress = revision;
    } else {
      EXPECT_GT(revision, progress) << "a change at or below a progress already delivered";
    }
  }
}

TEST(Sync, changes_since_reads_each_keys_latest_state_and_every_deletion_in_revision_order) {
  Pair p;
  p.a->set("x", 1);
  const int64_t since = p.a->stats().applied_revision;
  p.a->set("x", 2);
  p.a->set("y", 1);
  p.a->remove("y");
  p.a->set("z", 3);
  ChangesSince c = p.b->changes_since(since);
  ASSERT_TRUE(c.complete) << c.reason;
  EXPECT_EQ(c.revision, p.a->stats().applied_revision);
  std::vector<std::string> got;
  int64_t previous = since;
  for (const Change& ch : c.changes) {
    EXPECT_GT(ch.revision, previous);
    previous = ch.revision;
    got.push_back(ch.key + "=" + (ch.value ? ch.value->dump() : "deleted"));
  }
  // y's row is gone, its deletion stays; x comes once with its latest value.
  EXPECT_EQ(got, (std::vector<std::string>{"x=2", "y=deleted", "z=3"}));
  ChangesSince prefixed = p.b->changes_since(since, "z");
  ASSERT_EQ(prefixed.changes.size(), 1u);
  EXPECT_EQ(prefixed.changes[0].key, "z");
  EXPECT_THROW(p.b->changes_since(-1), Error);
}

TEST(Sync, changes_since_says_when_the_table_cannot_answer_and_why) {
  Pair p;
  p.a->set("x", 1);
  const int64_t newest = p.a->stats().applied_revision;
  ChangesSince ahead = p.b->changes_since(newest + 10);
  EXPECT_FALSE(ahead.complete);
  EXPECT_NE(ahead.reason.find("beyond"), std::string::npos) << ahead.reason;

  Sql(dsn()).exec("TRUNCATE " + p.table);
  // The change log records every key a TRUNCATE removed: the answer is exact.
  ChangesSince truncated = p.b->changes_since(newest);
  EXPECT_TRUE(truncated.complete) << truncated.reason;
  ASSERT_EQ(truncated.changes.size(), 1u);
  EXPECT_EQ(truncated.changes[0].key, "x");
  EXPECT_FALSE(truncated.changes[0].value);

  Sql(dsn()).exec("INSERT INTO " + p.table + "_changes (revision, key, op) VALUES (" +
                  std::to_string(newest + 1) +
                  ", NULL, 'compact') ON CONFLICT (revision) DO UPDATE "
                  "SET op = 'compact', key = NULL");
  ChangesSince pruned = p.b->changes_since(newest);
  EXPECT_FALSE(pruned.complete);
  EXPECT_NE(pruned.reason.find("pruned"), std::string::npos) << pruned.reason;
}

}  // namespace
}  // namespace syncconfig::testing
