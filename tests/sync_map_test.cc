// SyncMap<T>: a typed view over one key prefix, synced across instances like the Store itself.
#include "syncconfig/sync_map.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace demo {

struct RateLimit {
  int per_second = 0;
  int burst = 0;
  bool operator==(const RateLimit&) const = default;
};

void to_json(nlohmann::json& j, const RateLimit& r) {
  j = nlohmann::json{{"per_second", r.per_second}, {"burst", r.burst}};
}
void from_json(const nlohmann::json& j, RateLimit& r) {
  j.at("per_second").get_to(r.per_second);
  j.at("burst").get_to(r.burst);
}

}  // namespace demo

namespace syncconfig::testing {
namespace {

using demo::RateLimit;
using nlohmann::json;

// Two instances of one table, as two processes of an application would have.
struct TwoInstances {
  std::string table = unique_name("t_syncmap");
  std::unique_ptr<Store> a = Store::open(dsn(), test_options(table));
  std::unique_ptr<Store> b = Store::open(dsn(), test_options(table));
};

// What a SyncMap callback reported, thread-safely.
template <class T>
class MapRecorder {
 public:
  typename SyncMap<T>::ChangeCallback callback() {
    return [this](const std::string& name, const std::optional<T>& value) {
      std::lock_guard lock(mu_);
      calls_.emplace_back(name, value);
    };
  }
  std::vector<std::pair<std::string, std::optional<T>>> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  bool has(const std::string& name, const std::optional<T>& value) const {
    std::lock_guard lock(mu_);
    for (const auto& [n, v] : calls_) {
      if (n == name && v == value) return true;
    }
    return false;
  }
  bool saw_name(const std::string& name) const {
    std::lock_guard lock(mu_);
    for (const auto& [n, v] : calls_) {
      if (n == name) return true;
    }
    return false;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::optional<T>>> calls_;
};

TEST(SyncMap, a_struct_set_on_one_instance_is_read_on_another) {
  TwoInstances s;
  SyncMap<RateLimit> on_a(*s.a, "rate_limit:");
  SyncMap<RateLimit> on_b(*s.b, "rate_limit:");

  on_a.set("/api/search", RateLimit{100, 20});
  EXPECT_EQ(on_a.get("/api/search"), (RateLimit{100, 20}));
  EXPECT_EQ(s.a->get("rate_limit:/api/search"), (json{{"per_second", 100}, {"burst", 20}}));
  ASSERT_TRUE(wait_until([&] { return on_b.get("/api/search") == RateLimit{100, 20}; }));

  on_a.set("/api/search", RateLimit{5, 1});
  ASSERT_TRUE(wait_until([&] { return on_b.get("/api/search") == RateLimit{5, 1}; }));
  EXPECT_EQ(on_b.get_or("/api/search", RateLimit{}), (RateLimit{5, 1}));
  EXPECT_EQ(on_b.get("/api/other"), std::nullopt);
  EXPECT_EQ(on_b.get_or("/api/other", RateLimit{7, 7}), (RateLimit{7, 7}));
}

TEST(SyncMap, keys_and_all_see_only_the_prefix_with_names_stripped_and_sorted) {
  TwoInstances s;
  s.a->set("feature:zeta", true);
  s.a->set("feature:alpha", false);
  s.a->set("feature:beta", "not a bool");
  s.a->set("feature", true);     // The prefix without its colon: outside.
  s.a->set("features:x", true);  // Shares a shorter prefix: outside.
  s.a->set("other:alpha", true);
  SyncMap<bool> flags(*s.b, "feature:");
  ASSERT_TRUE(wait_until([&] { return s.b->size() == 6; }));

  EXPECT_EQ(flags.keys(), (std::vector<std::string>{"alpha", "beta", "zeta"}));
  EXPECT_EQ(flags.all(), (std::map<std::string, bool>{{"alpha", false}, {"zeta", true}}));
  EXPECT_EQ(flags.prefix(), "feature:");
}

TEST(SyncMap, callbacks_fire_for_keys_under_the_prefix_and_never_for_others) {
  // Declared first: a subscriber's state must outlive the stores and maps calling it.
  MapRecorder<int> seen;
  Recorder everything;  // Subscribed after the map: when it has a change, the map's callback ran.
  TwoInstances s;
  SyncMap<int> limits(*s.b, "limit:");
  limits.subscribe(seen.callback());
  s.b->subscribe(everything.callback());

  s.a->set("other:max", 1);
  s.a->set("limitless", 2);
  s.a->set("limit:max", 3);  // The marker, written last.
  ASSERT_TRUE(wait_until([&] { return everything.has("limit:max", json(3)); }));
  ASSERT_TRUE(everything.has("other:max", json(1)));

  EXPECT_EQ(seen.calls(), (std::vector<std::pair<std::string, std::optional<int>>>{{"max", 3}}));
  EXPECT_FALSE(seen.saw_name("other:max"));
  EXPECT_FALSE(seen.saw_name("less"));
}

TEST(SyncMap, a_value_of_the_wrong_shape_reads_as_absent_and_never_throws) {
  // Declared first: a subscriber's state must outlive the stores and maps calling it.
  MapRecorder<RateLimit> seen;
  TwoInstances s;
  SyncMap<RateLimit> limits(*s.b, "rl:");
  SyncMap<int32_t> counts(*s.b, "n:");
  SyncMap<bool> flags(*s.b, "f:");
  limits.subscribe(seen.callback());

  s.a->set("rl:string", "oops");
  s.a->set("rl:missing_field", json{{"per_second", 10}});
  s.a->set("rl:wrong_type", json{{"per_second", "ten"}, {"burst", 1}});
  s.a->set("rl:null", nullptr);
  s.a->set("rl:good", json{{"per_second", 10}, {"burst", 2}});
  s.a->set("n:fraction", 42.5);
  s.a->set("n:integral_float", 42.0);
  s.a->set("n:too_big", int64_t{1} << 40);
  s.a->set("n:string", "42");
  s.a->set("n:bool", true);
  s.a->set("f:string", "true");
  s.a->set("f:one", 1);
  ASSERT_TRUE(wait_until([&] { return s.b->size() == 12 && seen.saw_name("good"); }));

  for (const char* name : {"string", "missing_field", "wrong_type", "null", "absent"}) {
    EXPECT_NO_THROW({
      EXPECT_EQ(limits.get(name), std::nullopt) << name;
      EXPECT_EQ(limits.get_or(name, RateLimit{1, 1}), (RateLimit{1, 1})) << name;
    });
  }
  EXPECT_EQ(limits.get("good"), (RateLimit{10, 2}));
  EXPECT_EQ(limits.keys().size(), 5u);
  EXPECT_EQ(limits.all(), (std::map<std::string, RateLimit>{{"good", {10, 2}}}));
  // The callback saw the wrong shapes as nullopt, the good one as its value.
  EXPECT_TRUE(seen.has("string", std::nullopt));
  EXPECT_TRUE(seen.has("wrong_type", std::nullopt));
  EXPECT_TRUE(seen.has("good", RateLimit{10, 2}));

  EXPECT_EQ(counts.get("fraction"), std::nullopt);
  EXPECT_EQ(counts.get("integral_float"), 42);
  EXPECT_EQ(counts.get("too_big"), std::nullopt);
  EXPECT_EQ(counts.get("string"), std::nullopt);
  EXPECT_EQ(counts.get("bool"), std::nullopt);
  EXPECT_EQ(counts.get_or("too_big", -1), -1);
  EXPECT_EQ(flags.get("string"), std::nullopt);
  EXPECT_EQ(flags.get("one"), std::nullopt);
  EXPECT_EQ(SyncMap<int64_t>::convert(json(int64_t{1} << 40)), int64_t{1} << 40);
  EXPECT_EQ(SyncMap<uint8_t>::convert(json(-1)), std::nullopt);
  EXPECT_EQ(SyncMap<uint8_t>::convert(json(255)), uint8_t{255});
  EXPECT_EQ(SyncMap<int64_t>::convert(json(9.3e18)), std::nullopt);
  EXPECT_EQ(SyncMap<double>::convert(json(3)), 3.0);
}

TEST(SyncMap, remove_deletes_the_key_everywhere_and_reports_it_as_nullopt) {
  // Declared first: a subscriber's state must outlive the stores and maps calling it.
  MapRecorder<std::string> seen;
  TwoInstances s;
  SyncMap<std::string> on_a(*s.a, "name:");
  SyncMap<std::string> on_b(*s.b, "name:");
  on_b.subscribe(seen.callback());

  on_a.set("app", "MyApp");
  ASSERT_TRUE(wait_until([&] { return on_b.get("app") == "MyApp"; }));
  EXPECT_TRUE(on_a.remove("app"));
  EXPECT_FALSE(on_a.remove("app"));
  EXPECT_EQ(on_a.get("app"), std::nullopt);
  ASSERT_TRUE(wait_until([&] { return !s.b->contains("name:app"); }));
  EXPECT_EQ(on_b.get("app"), std::nullopt);
  EXPECT_TRUE(on_b.keys().empty());
  ASSERT_TRUE(wait_until([&] { return seen.has("app", std::nullopt); }));
  EXPECT_TRUE(seen.has("app", std::string("MyApp")));
}

TEST(SyncMap, after_unsubscribe_the_callback_is_not_called_again) {
  // Declared first: a subscriber's state must outlive the stores and maps calling it.
  MapRecorder<int> first;
  MapRecorder<int> second;
  Recorder everything;
  TwoInstances s;
  SyncMap<int> limits(*s.b, "limit:");
  SubscriptionId id = limits.subscribe(first.callback());
  limits.subscribe(second.callback());
  s.b->subscribe(everything.callback());

  s.a->set("limit:x", 1);
  ASSERT_TRUE(wait_until([&] { return first.has("x", 1) && second.has("x", 1); }));
  limits.unsubscribe(id);
  limits.unsubscribe(id);           // A second time: ignored.
  limits.unsubscribe(id + 100000);  // Not this map's: ignored.
  s.a->set("limit:x", 2);
  ASSERT_TRUE(wait_until([&] { return everything.has("limit:x", json(2)); }));

  EXPECT_TRUE(second.has("x", 2));
  EXPECT_EQ(first.size(), 1u);
}

TEST(SyncMap, destroying_the_map_unsubscribes_its_callbacks) {
  // Declared first: a subscriber's state must outlive the stores and maps calling it.
  MapRecorder<int> seen;
  Recorder everything;
  TwoInstances s;
  {
    SyncMap<int> limits(*s.b, "limit:");
    limits.subscribe(seen.callback());
    limits.subscribe(seen.callback());
    s.b->subscribe(everything.callback());
    s.a->set("limit:x", 1);
    ASSERT_TRUE(wait_until([&] { return seen.size() == 2; }));
  }
  s.a->set("limit:x", 2);
  ASSERT_TRUE(wait_until([&] { return everything.has("limit:x", json(2)); }));
  EXPECT_EQ(seen.size(), 2u);
  // The store still works for the remaining subscriber and for new maps.
  SyncMap<int> again(*s.b, "limit:");
  EXPECT_EQ(again.get("x"), 2);
}

TEST(SyncMap, concurrent_readers_writers_and_subscribers_are_safe) {
  TwoInstances s;
  SyncMap<int> on_a(*s.a, "c:");
  SyncMap<int> on_b(*s.b, "c:");
  std::atomic<int> calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) on_a.set("k" + std::to_string(t), i);
    });
  }
  threads.emplace_back([&] {
    while (!stop) {
      SubscriptionId id = on_b.subscribe(
          [&](const std::string&, const std::optional<int>&) { calls.fetch_add(1); });
      (void)on_b.all();
      (void)on_b.keys();
      on_b.unsubscribe(id);
    }
  });
  for (int t = 0; t < 2; ++t) threads[t].join();
  ASSERT_TRUE(wait_until([&] { return on_b.get("k0") == 19 && on_b.get("k1") == 19; }));
  stop = true;
  threads[2].join();
  EXPECT_EQ(on_b.all(), (std::map<std::string, int>{{"k0", 19}, {"k1", 19}}));
}

}  // namespace
}  // namespace syncconfig::testing
