#include "cache/cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/entry_hash.h"

namespace syncconfig::internal {
namespace {

using nlohmann::json;

// Records every Change the cache pushes. Thread-safe, so it also serves the concurrency tests.
class RecordingSink : public ChangeSink {
 public:
  void push(Change change) override {
    std::lock_guard lock(mu_);
    changes_.push_back(std::move(change));
  }
  void progress(int64_t revision, bool reset) override {
    std::lock_guard lock(mu_);
    progress_.push_back(Progress{revision, reset});
  }
  std::vector<Progress> take_progress() {
    std::lock_guard lock(mu_);
    return std::exchange(progress_, {});
  }
  std::vector<Change> take() {
    std::lock_guard lock(mu_);
    return std::exchange(changes_, {});
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return changes_.size();
  }

 private:
  std::mutex mu_;
  std::vector<Change> changes_;
  std::vector<Progress> progress_;
};

ParsedValue value_of(std::string_view key, std::string_view text) {
  std::optional<ParsedValue> v = parse_value(key, text);
  EXPECT_TRUE(v.has_value()) << "not JSON: " << text;
  return v ? std::move(*v) : ParsedValue{};
}

Row row(std::string key, std::string_view text, int64_t revision) {
  return Row{value_of(key, text), revision};
}

// In these helpers ChangeOrigin::kLocal stands for the writing thread applying the result of
// its own write (AppliedBy::kWriter); kRemote and kResync are listener / catch-up paths.
class CacheTest : public ::testing::Test {
 protected:
  bool upsert(std::string_view key, std::string_view text, int64_t revision,
              ChangeOrigin origin = ChangeOrigin::kRemote) {
    return cache_.upsert(value_of(key, text), revision, origin,
                         origin == ChangeOrigin::kLocal ? AppliedBy::kWriter : AppliedBy::kFeed);
  }
  bool remove(std::string_view key, int64_t revision, ChangeOrigin origin = ChangeOrigin::kRemote) {
    return cache_.remove(key, revision, origin,
                         origin == ChangeOrigin::kLocal ? AppliedBy::kWriter : AppliedBy::kFeed);
  }

  RecordingSink sink_;
  Cache cache_{sink_};
};

// --- Upserts -------------------------------------------------------------------------------

TEST_F(CacheTest, an_upsert_of_a_new_key_applies_and_pushes_a_change) {
  EXPECT_TRUE(upsert("a", R"({"b": 1})", 5));
  EXPECT_EQ(cache_.get("a"), json::parse(R"({"b": 1})"));
  EXPECT_EQ(cache_.size(), 1u);

  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "a");
  EXPECT_EQ(changes[0].value, json::parse(R"({"b": 1})"));
  EXPECT_EQ(changes[0].revision, 5);
  EXPECT_EQ(changes[0].origin, ChangeOrigin::kRemote);
}

TEST_F(CacheTest, a_newer_upsert_replaces_the_value_and_reports_its_origin) {
  ASSERT_TRUE(upsert("a", "1", 5));
  sink_.take();
  EXPECT_TRUE(upsert("a", "2", 6, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), json(2));
  EXPECT_EQ(cache_.size(), 1u);

  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].value, json(2));
  EXPECT_EQ(changes[0].revision, 6);
  EXPECT_EQ(changes[0].origin, ChangeOrigin::kLocal);
}

TEST_F(CacheTest, late_older_upsert_never_rolls_a_key_back) {
  ASSERT_TRUE(upsert("a", "10", 10));
  sink_.take();
  EXPECT_FALSE(upsert("a", "8", 8));
  EXPECT_FALSE(upsert("a", "8", 8, ChangeOrigin::kLocal));
  EXPECT_FALSE(upsert("a", "8", 8, ChangeOrigin::kResync));
  EXPECT_EQ(cache_.get("a"), json(10));
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, an_upsert_at_the_same_revision_is_ignored) {
  ASSERT_TRUE(upsert("a", "1", 7));
  sink_.take();
  EXPECT_FALSE(upsert("a", "2", 7));
  EXPECT_EQ(cache_.get("a"), json(1));
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, an_unchanged_value_at_a_newer_revision_is_a_change_at_that_revision) {
  ASSERT_TRUE(upsert("a", R"({"x": [1, 2]})", 5));
  const CacheDigest before = cache_.digest();
  sink_.take();
  EXPECT_TRUE(upsert("a", R"({"x": [1, 2]})", 7, ChangeOrigin::kRemote));
  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u) << "a client naming revisions must learn the new one";
  EXPECT_EQ(changes[0].key, "a");
  EXPECT_EQ(changes[0].revision, 7);
  EXPECT_EQ(changes[0].value, json::parse(R"({"x": [1, 2]})"));
  EXPECT_EQ(changes[0].origin, ChangeOrigin::kRemote);
  EXPECT_EQ(cache_.get("a"), json::parse(R"({"x": [1, 2]})"));
  // The content, so the checksums, did not change.
  EXPECT_EQ(cache_.digest().count, before.count);
  EXPECT_EQ(cache_.digest().crc, before.crc);
  EXPECT_EQ(cache_.digest().md5_sum, before.md5_sum);
  // The entry now carries revision 7: a late write at 6 must not roll it back.
  EXPECT_FALSE(upsert("a", "6", 6));
  EXPECT_EQ(cache_.get("a"), json::parse(R"({"x": [1, 2]})"));
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, an_unchanged_value_below_a_revision_already_seen_is_not_delivered) {
  // A server's snapshot at 5 that already holds the change at 8 (its events follow): the event
  // at 8 is a replay, not a write of its own.
  ASSERT_TRUE(upsert("a", "1", 5));
  cache_.note_applied(8);
  sink_.take();
  EXPECT_TRUE(upsert("a", "1", 8));
  EXPECT_EQ(sink_.count(), 0u);
  EXPECT_TRUE(upsert("a", "1", 9));  // Above anything seen: a write of the same value.
  EXPECT_EQ(sink_.count(), 1u);
}

TEST_F(CacheTest, keys_are_independent) {
  ASSERT_TRUE(upsert("a", "1", 10));
  EXPECT_TRUE(upsert("b", "2", 3));  // Older than a's revision, but another key.
  EXPECT_EQ(cache_.get("b"), json(2));
  EXPECT_EQ(cache_.size(), 2u);
}

TEST_F(CacheTest, read_calls_the_function_only_for_a_live_key) {
  ASSERT_TRUE(upsert("a", R"("hello")", 1));
  std::string seen;
  EXPECT_TRUE(cache_.read("a", [&](const Entry& v) { seen = v.to_json().get<std::string>(); }));
  EXPECT_EQ(seen, "hello");

  bool called = false;
  EXPECT_FALSE(cache_.read("missing", [&](const Entry&) { called = true; }));
  ASSERT_TRUE(remove("a", 2));
  EXPECT_FALSE(cache_.read("a", [&](const Entry&) { called = true; }));
  EXPECT_FALSE(called);
}

// --- Deletions and tombstones --------------------------------------------------------------

TEST_F(CacheTest, a_remove_deletes_the_key_and_pushes_a_deletion) {
  ASSERT_TRUE(upsert("a", "1", 5));
  sink_.take();
  EXPECT_TRUE(remove("a", 6));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(cache_.size(), 0u);

  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "a");
  EXPECT_EQ(changes[0].value, std::nullopt);
  EXPECT_EQ(changes[0].revision, 6);
  EXPECT_EQ(changes[0].origin, ChangeOrigin::kRemote);
}

TEST_F(CacheTest, an_older_remove_does_not_delete_a_newer_value) {
  ASSERT_TRUE(upsert("a", "1", 5));
  sink_.take();
  EXPECT_FALSE(remove("a", 4));
  EXPECT_FALSE(remove("a", 5));
  EXPECT_EQ(cache_.get("a"), json(1));
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, removing_an_absent_key_pushes_nothing) {
  remove("never", 3);
  EXPECT_EQ(sink_.count(), 0u);
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(CacheTest, a_remote_delete_then_a_late_older_upsert_does_not_resurrect) {
  ASSERT_TRUE(upsert("a", "1", 5));
  ASSERT_TRUE(remove("a", 10));
  sink_.take();
  EXPECT_FALSE(upsert("a", "8", 8));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(cache_.size(), 0u);
  EXPECT_EQ(cache_.get_all("").size(), 0u);
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, a_delete_of_an_unseen_key_still_blocks_a_late_older_upsert) {
  // The deletion's notification can arrive before the (older) write it deletes.
  remove("a", 10);
  EXPECT_FALSE(upsert("a", "8", 8));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, a_tombstone_protects_until_the_watermark_passes_it) {
  ASSERT_TRUE(upsert("a", "1", 5));
  ASSERT_TRUE(remove("a", 10));
  cache_.advance_watermark(9);
  EXPECT_FALSE(upsert("a", "8", 8));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
}

TEST_F(CacheTest, after_the_watermark_passes_a_tombstone_a_newer_upsert_recreates_the_key) {
  ASSERT_TRUE(upsert("a", "1", 5));
  ASSERT_TRUE(remove("a", 10));
  cache_.advance_watermark(10);
  sink_.take();
  EXPECT_TRUE(upsert("a", "11", 11));
  EXPECT_EQ(cache_.get("a"), json(11));
  EXPECT_EQ(cache_.size(), 1u);
  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].value, json(11));
  EXPECT_EQ(changes[0].revision, 11);
}

TEST_F(CacheTest, a_newer_upsert_recreates_a_key_whose_tombstone_is_still_kept) {
  ASSERT_TRUE(upsert("a", "1", 5));
  ASSERT_TRUE(remove("a", 10));
  sink_.take();
  EXPECT_TRUE(upsert("a", "12", 12));
  EXPECT_EQ(cache_.get("a"), json(12));
  EXPECT_EQ(sink_.count(), 1u);
  // Passing the old tombstone's revision must not drop the re-created key.
  cache_.advance_watermark(11);
  EXPECT_EQ(cache_.get("a"), json(12));
  EXPECT_EQ(cache_.size(), 1u);
}

// --- Watermark -----------------------------------------------------------------------------

TEST_F(CacheTest, the_watermark_only_moves_forward) {
  EXPECT_EQ(cache_.watermark(), 0);
  cache_.advance_watermark(10);
  EXPECT_EQ(cache_.watermark(), 10);
  cache_.advance_watermark(5);
  EXPECT_EQ(cache_.watermark(), 10);
  cache_.advance_watermark(12);
  EXPECT_EQ(cache_.watermark(), 12);
}

TEST_F(CacheTest, a_local_upsert_at_or_below_the_watermark_is_skipped) {
  cache_.advance_watermark(10);
  EXPECT_FALSE(upsert("a", "1", 10, ChangeOrigin::kLocal));
  EXPECT_FALSE(upsert("a", "1", 9, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(cache_.size(), 0u);
  EXPECT_EQ(sink_.count(), 0u);

  EXPECT_TRUE(upsert("a", "11", 11, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), json(11));
}

TEST_F(CacheTest, a_local_upsert_at_or_below_the_watermark_does_not_overwrite_a_newer_value) {
  // The listener applied revisions 9 and 10 already; the local echo of 9 arrives late.
  ASSERT_TRUE(upsert("a", "9", 9));
  ASSERT_TRUE(upsert("a", "10", 10));
  cache_.advance_watermark(10);
  sink_.take();
  EXPECT_FALSE(upsert("a", "9", 9, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), json(10));
  EXPECT_EQ(sink_.count(), 0u);
}

TEST_F(CacheTest, a_local_remove_at_or_below_the_watermark_of_an_absent_key_is_skipped) {
  cache_.advance_watermark(10);
  EXPECT_FALSE(remove("a", 9, ChangeOrigin::kLocal));
  EXPECT_FALSE(remove("a", 10, ChangeOrigin::kLocal));
  EXPECT_EQ(sink_.count(), 0u);
}

// The listener can pass a revision without applying it: a value too large for the payload is
// read by key, and a later deletion may have removed the row by then (the deletion's own
// notification follows). The watermark then passes the writer's revision, but the writer must
// still see its own write: over an older entry its result applies.
TEST_F(CacheTest, a_local_result_at_or_below_the_watermark_applies_over_an_older_entry) {
  ASSERT_TRUE(upsert("a", "1", 3));
  cache_.advance_watermark(10);
  sink_.take();
  EXPECT_TRUE(upsert("a", "9", 9, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), json(9));
  EXPECT_TRUE(remove("a", 10, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(sink_.count(), 2u);
  // And the deletion that follows still applies over it, exactly once.
  ASSERT_TRUE(upsert("b", "1", 2));
  EXPECT_TRUE(upsert("b", "5", 5, ChangeOrigin::kLocal));
  EXPECT_TRUE(remove("b", 11));
  EXPECT_EQ(cache_.get("b"), std::nullopt);
}

TEST_F(CacheTest, an_own_write_applied_first_by_the_listener_is_reported_once_as_local) {
  // The listener recognizes the instance's own write and applies it (origin kLocal, not the
  // writing thread); the transaction completes, so the watermark passes it.
  ASSERT_TRUE(cache_.upsert(value_of("a", "1"), 11, ChangeOrigin::kLocal, AppliedBy::kFeed));
  cache_.advance_watermark(11);
  // Then the writing thread applies its result.
  EXPECT_FALSE(cache_.upsert(value_of("a", "1"), 11, ChangeOrigin::kLocal, AppliedBy::kWriter));
  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].origin, ChangeOrigin::kLocal);
  EXPECT_EQ(changes[0].revision, 11);
}

TEST_F(CacheTest, the_watermark_rule_applies_only_to_the_writing_threads_result) {
  ASSERT_TRUE(upsert("a", "1", 3));
  cache_.advance_watermark(10);
  sink_.take();
  // Listener and catch-up paths only compare with the entry's own revision.
  EXPECT_TRUE(cache_.upsert(value_of("a", "2"), 8, ChangeOrigin::kResync, AppliedBy::kFeed));
  EXPECT_EQ(cache_.get("a"), json(2));
  EXPECT_TRUE(cache_.remove("a", 9, ChangeOrigin::kRemote, AppliedBy::kFeed));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_EQ(sink_.count(), 2u);
}

// --- Truncate ------------------------------------------------------------------------------

TEST_F(CacheTest, truncate_drops_entries_older_than_it_and_keeps_newer_ones) {
  ASSERT_TRUE(upsert("old1", "1", 3));
  ASSERT_TRUE(upsert("old2", "2", 5));
  ASSERT_TRUE(upsert("new", "3", 12));
  sink_.take();

  cache_.truncate(10, ChangeOrigin::kRemote);
  EXPECT_EQ(cache_.get("old1"), std::nullopt);
  EXPECT_EQ(cache_.get("old2"), std::nullopt);
  EXPECT_EQ(cache_.get("new"), json(3));
  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_EQ(cache_.crc(), hash_entry("new", "3").crc);

  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 2u);
  std::sort(changes.begin(), changes.end(),
            [](const Change& a, const Change& b) { return a.key < b.key; });
  EXPECT_EQ(changes[0].key, "old1");
  EXPECT_EQ(changes[1].key, "old2");
  for (const Change& c : changes) {
    EXPECT_EQ(c.value, std::nullopt);
    EXPECT_EQ(c.revision, 10);
    EXPECT_EQ(c.origin, ChangeOrigin::kRemote);
  }
  EXPECT_GE(cache_.digest().max_revision, 12);
}

TEST_F(CacheTest, truncate_records_its_revision_as_applied) {
  ASSERT_TRUE(upsert("a", "1", 3));
  cache_.truncate(20, ChangeOrigin::kResync);
  EXPECT_EQ(cache_.digest().max_revision, 20);
}

// A writer thread that applies its own result late (committed before the truncation) must not
// bring back a key the truncation removed.
TEST_F(CacheTest, a_late_local_write_older_than_a_truncate_is_skipped) {
  cache_.advance_watermark(3);
  ASSERT_TRUE(upsert("a", "1", 4));
  cache_.truncate(10, ChangeOrigin::kResync);
  EXPECT_EQ(cache_.watermark(), 9);
  EXPECT_FALSE(upsert("a", "2", 7, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("a"), std::nullopt);
  EXPECT_TRUE(upsert("a", "3", 11, ChangeOrigin::kLocal));
}

TEST_F(CacheTest, truncate_pushes_nothing_for_already_deleted_keys) {
  ASSERT_TRUE(upsert("a", "1", 3));
  ASSERT_TRUE(remove("a", 4));
  sink_.take();
  cache_.truncate(10, ChangeOrigin::kRemote);
  EXPECT_EQ(sink_.count(), 0u);
  EXPECT_EQ(cache_.size(), 0u);
}

// --- Checksums -----------------------------------------------------------------------------

TEST_F(CacheTest, crc_is_zero_for_an_empty_cache) {
  EXPECT_EQ(cache_.crc(), 0u);
  CacheDigest d = cache_.digest();
  EXPECT_EQ(d.count, 0u);
  EXPECT_EQ(d.crc, 0u);
  EXPECT_EQ(d.md5_sum, 0u);
}

TEST_F(CacheTest, crc_is_the_wrapping_sum_of_live_entry_crcs) {
  std::map<std::string, std::string> live;
  for (int i = 0; i < 200; ++i) {
    std::string key = "key" + std::to_string(i);
    std::string text = R"({"n": )" + std::to_string(i * 7) + "}";
    ASSERT_TRUE(upsert(key, text, i + 1));
    live[key] = text;
  }
  // Delete some, update some.
  for (int i = 0; i < 200; i += 3) {
    std::string key = "key" + std::to_string(i);
    ASSERT_TRUE(remove(key, 1000 + i));
    live.erase(key);
  }
  for (int i = 1; i < 200; i += 5) {
    std::string key = "key" + std::to_string(i);
    std::string text = R"("updated )" + std::to_string(i) + "\"";
    ASSERT_TRUE(upsert(key, text, 2000 + i));
    live[key] = text;
  }

  uint32_t expected_crc = 0;
  uint64_t expected_md5 = 0;
  uint64_t unwrapped = 0;
  for (const auto& [key, text] : live) {
    EntryHash h = hash_entry(key, text);
    expected_crc += h.crc;  // Wraps modulo 2^32.
    expected_md5 += h.md5;
    unwrapped += h.crc;
  }
  ASSERT_GT(unwrapped, uint64_t{UINT32_MAX}) << "the test should exercise the wrap-around";
  EXPECT_EQ(cache_.crc(), expected_crc);
  CacheDigest d = cache_.digest();
  EXPECT_EQ(d.count, live.size());
  EXPECT_EQ(d.crc, expected_crc);
  EXPECT_EQ(d.md5_sum, expected_md5);
  EXPECT_EQ(cache_.size(), live.size());
}

TEST(Cache, crc_and_digest_do_not_depend_on_insertion_order) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 50; ++i) {
    entries.emplace_back("k" + std::to_string(i), "[" + std::to_string(i) + ", \"v\"]");
  }
  RecordingSink sink_a, sink_b;
  Cache a(sink_a), b(sink_b);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& [key, text] = entries[i];
    ASSERT_TRUE(a.upsert(value_of(key, text), static_cast<int64_t>(i + 1), ChangeOrigin::kRemote,
                         AppliedBy::kFeed));
  }
  std::mt19937 rng(12345);
  std::vector<std::pair<std::string, std::string>> shuffled = entries;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  for (std::size_t i = 0; i < shuffled.size(); ++i) {
    const auto& [key, text] = shuffled[i];
    ASSERT_TRUE(b.upsert(value_of(key, text), static_cast<int64_t>(100 + i), ChangeOrigin::kRemote,
                         AppliedBy::kFeed));
  }
  EXPECT_EQ(a.crc(), b.crc());
  EXPECT_EQ(a.digest().md5_sum, b.digest().md5_sum);
  EXPECT_EQ(a.digest().count, b.digest().count);
  EXPECT_NE(a.crc(), 0u);
}

TEST_F(CacheTest, crc_covers_the_key_as_well_as_the_value) {
  ASSERT_TRUE(upsert("a", "1", 1));
  const uint32_t with_a = cache_.crc();
  ASSERT_TRUE(remove("a", 2));
  ASSERT_TRUE(upsert("b", "1", 3));
  EXPECT_NE(cache_.crc(), with_a);
  EXPECT_EQ(cache_.crc(), hash_entry("b", "1").crc);
}

TEST_F(CacheTest, digest_tracks_max_revision_of_entries_and_tombstones) {
  ASSERT_TRUE(upsert("a", "1", 4));
  EXPECT_EQ(cache_.digest().max_revision, 4);
  ASSERT_TRUE(remove("a", 9));
  EXPECT_EQ(cache_.digest().max_revision, 9);
  EXPECT_FALSE(upsert("a", "2", 7));  // Ignored: not applied, not counted.
  EXPECT_EQ(cache_.digest().max_revision, 9);
}

// --- get_all -------------------------------------------------------------------------------

TEST_F(CacheTest, get_all_with_a_prefix_returns_only_live_keys_starting_with_it) {
  ASSERT_TRUE(upsert("app.a", "1", 1));
  ASSERT_TRUE(upsert("app.b", R"("two")", 2));
  ASSERT_TRUE(upsert("app.c", "3", 3));
  ASSERT_TRUE(upsert("apple", "4", 4));
  ASSERT_TRUE(upsert("other", "5", 5));
  ASSERT_TRUE(upsert("ap", "6", 6));
  ASSERT_TRUE(remove("app.c", 7));

  std::map<std::string, json> expected = {{"app.a", json(1)}, {"app.b", json("two")}};
  EXPECT_EQ(cache_.get_all("app."), expected);
  EXPECT_EQ(cache_.get_all("app").size(), 3u);  // app.a, app.b, apple
  EXPECT_EQ(cache_.get_all("zzz").size(), 0u);
  EXPECT_EQ(cache_.get_all("apple"), (std::map<std::string, json>{{"apple", json(4)}}));

  std::map<std::string, json> all = cache_.get_all("");
  EXPECT_EQ(all.size(), 5u);
  EXPECT_EQ(all.count("app.c"), 0u);
}

// --- replace_all ---------------------------------------------------------------------------

TEST_F(CacheTest, replace_all_initial_loads_everything_and_pushes_nothing) {
  std::vector<Row> rows;
  rows.push_back(row("a", "1", 3));
  rows.push_back(row("b", R"({"x": true})", 7));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 10, ReplaceMode::kInitial), 2u);

  EXPECT_EQ(sink_.count(), 0u);
  EXPECT_EQ(cache_.get("a"), json(1));
  EXPECT_EQ(cache_.get("b"), json::parse(R"({"x": true})"));
  EXPECT_EQ(cache_.size(), 2u);
  EXPECT_EQ(cache_.watermark(), 10);
  EXPECT_EQ(cache_.crc(), static_cast<uint32_t>(hash_entry("a", "1").crc +
                                                hash_entry("b", R"({"x": true})").crc));
  EXPECT_EQ(cache_.digest().max_revision, 10);
  // Entries carry their row's revision.
  EXPECT_FALSE(upsert("b", "0", 6));
  EXPECT_EQ(cache_.get("b"), json::parse(R"({"x": true})"));
}

TEST_F(CacheTest, replace_all_resync_applies_the_differences_and_reports_them) {
  ASSERT_TRUE(upsert("same", "1", 1));
  ASSERT_TRUE(upsert("changed", "2", 2));
  ASSERT_TRUE(upsert("gone", "3", 3));
  sink_.take();

  ASSERT_TRUE(upsert("rewritten", "4", 4));
  sink_.take();

  std::vector<Row> rows;
  rows.push_back(row("same", "1", 1));
  rows.push_back(row("changed", "22", 5));
  rows.push_back(row("added", R"("new")", 6));
  // The same value at another revision: a server's snapshot enters every key at its own
  // revision, so this says nothing about a write. Not delivered, not a repair.
  rows.push_back(row("rewritten", "4", 7));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 10, ReplaceMode::kResync), 3u);

  EXPECT_EQ(cache_.get("same"), json(1));
  EXPECT_EQ(cache_.get("changed"), json(22));
  EXPECT_EQ(cache_.get("added"), json("new"));
  EXPECT_EQ(cache_.get("gone"), std::nullopt);
  EXPECT_EQ(cache_.size(), 4u);
  EXPECT_EQ(cache_.watermark(), 10);
  EXPECT_EQ(cache_.crc(),
            static_cast<uint32_t>(hash_entry("same", "1").crc + hash_entry("changed", "22").crc +
                                  hash_entry("added", R"("new")").crc +
                                  hash_entry("rewritten", "4").crc));

  std::map<std::string, Change> by_key;
  for (Change& c : sink_.take()) {
    EXPECT_EQ(c.origin, ChangeOrigin::kResync) << c.key;
    EXPECT_TRUE(by_key.emplace(c.key, c).second) << "two changes for " << c.key;
  }
  ASSERT_EQ(by_key.size(), 3u);
  EXPECT_EQ(by_key.count("same"), 0u);
  EXPECT_EQ(by_key.count("rewritten"), 0u);
  EXPECT_EQ(by_key.at("gone").value, std::nullopt);
  EXPECT_EQ(by_key.at("changed").value, json(22));
  EXPECT_EQ(by_key.at("changed").revision, 5);
  EXPECT_EQ(by_key.at("added").value, json("new"));
  EXPECT_EQ(by_key.at("added").revision, 6);
}

TEST_F(CacheTest, replace_all_resync_keeps_entries_newer_than_the_snapshot) {
  ASSERT_TRUE(upsert("local_new", "20", 20, ChangeOrigin::kLocal));      // Not in the snapshot.
  ASSERT_TRUE(upsert("updated", R"("new")", 21, ChangeOrigin::kLocal));  // Older in snapshot.
  ASSERT_TRUE(upsert("deleted", "1", 1));
  ASSERT_TRUE(remove("deleted", 22, ChangeOrigin::kLocal));  // Still in the snapshot.
  sink_.take();

  std::vector<Row> rows;
  rows.push_back(row("updated", R"("old")", 8));
  rows.push_back(row("deleted", "1", 1));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 10, ReplaceMode::kResync), 0u);

  EXPECT_EQ(cache_.get("local_new"), json(20));
  EXPECT_EQ(cache_.get("updated"), json("new"));
  EXPECT_EQ(cache_.get("deleted"), std::nullopt);
  EXPECT_EQ(cache_.size(), 2u);
  EXPECT_EQ(sink_.count(), 0u);
  EXPECT_EQ(cache_.watermark(), 10);
}

TEST_F(CacheTest, replace_all_resync_never_lowers_the_watermark) {
  cache_.advance_watermark(50);
  std::vector<Row> rows;
  rows.push_back(row("a", "1", 3));
  cache_.replace_all(std::move(rows), 40, ReplaceMode::kResync);
  EXPECT_EQ(cache_.watermark(), 50);
}

TEST_F(CacheTest, replace_all_resync_drops_tombstones_the_snapshot_covers) {
  ASSERT_TRUE(upsert("a", "1", 1));
  ASSERT_TRUE(remove("a", 5));
  sink_.take();
  // The snapshot at 10 has the key again (re-created at 8).
  std::vector<Row> rows;
  rows.push_back(row("a", "8", 8));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 10, ReplaceMode::kResync), 1u);
  EXPECT_EQ(cache_.get("a"), json(8));
  std::vector<Change> changes = sink_.take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].value, json(8));
}

TEST_F(CacheTest, replace_all_reset_trusts_only_the_snapshot_and_lowers_the_watermark) {
  // State built against a table whose revisions reached 100.
  ASSERT_TRUE(upsert("kept", "1", 90));
  ASSERT_TRUE(upsert("stale", "2", 95));
  ASSERT_TRUE(upsert("revived", "3", 96));
  ASSERT_TRUE(remove("revived", 99));
  cache_.advance_watermark(100);
  sink_.take();

  // The table was recreated: its revisions restart.
  std::vector<Row> rows;
  rows.push_back(row("kept", "1", 3));
  rows.push_back(row("revived", "33", 4));
  rows.push_back(row("fresh", "4", 2));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 5, ReplaceMode::kReset), 3u);

  EXPECT_EQ(cache_.watermark(), 5);
  EXPECT_EQ(cache_.get("kept"), json(1));
  EXPECT_EQ(cache_.get("stale"), std::nullopt);  // Newer than 5, but of the old table.
  EXPECT_EQ(cache_.get("revived"), json(33));    // Its old tombstone (99) means nothing now.
  EXPECT_EQ(cache_.get("fresh"), json(4));
  EXPECT_EQ(cache_.size(), 3u);
  EXPECT_EQ(cache_.digest().max_revision, 5);

  std::map<std::string, Change> by_key;
  for (Change& c : sink_.take()) {
    EXPECT_EQ(c.origin, ChangeOrigin::kResync) << c.key;
    by_key.emplace(c.key, c);
  }
  EXPECT_EQ(by_key.count("kept"), 0u);  // Same content: no change.
  ASSERT_EQ(by_key.count("stale"), 1u);
  EXPECT_EQ(by_key.at("stale").value, std::nullopt);
  EXPECT_EQ(by_key.at("revived").value, json(33));
  EXPECT_EQ(by_key.at("fresh").value, json(4));

  // Writes of the new table are applied from now on, local ones included.
  EXPECT_TRUE(upsert("kept", "6", 6, ChangeOrigin::kLocal));
  EXPECT_EQ(cache_.get("kept"), json(6));
  EXPECT_TRUE(upsert("stale", "7", 7));
  EXPECT_EQ(cache_.get("stale"), json(7));
}

TEST_F(CacheTest, replace_all_with_an_empty_snapshot_empties_the_cache) {
  ASSERT_TRUE(upsert("a", "1", 1));
  ASSERT_TRUE(upsert("b", "2", 2));
  sink_.take();
  EXPECT_EQ(cache_.replace_all({}, 10, ReplaceMode::kResync), 2u);
  EXPECT_EQ(cache_.size(), 0u);
  EXPECT_EQ(cache_.crc(), 0u);
  EXPECT_EQ(cache_.digest().md5_sum, 0u);
  EXPECT_EQ(sink_.count(), 2u);
}

// --- Progress (what a relay numbers its stream of changes by) -------------------------------

TEST_F(CacheTest, progress_is_reported_each_time_the_watermark_rises_and_never_for_less) {
  ASSERT_TRUE(upsert("a", "1", 3));
  cache_.advance_watermark(3);
  cache_.advance_watermark(3);  // Not a rise.
  cache_.advance_watermark(2);  // Nor this.
  ASSERT_TRUE(upsert("b", "2", 5));
  cache_.advance_watermark(5);
  std::vector<Progress> p = sink_.take_progress();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].revision, 3);
  EXPECT_EQ(p[1].revision, 5);
  EXPECT_FALSE(p[0].reset || p[1].reset);
}

TEST_F(CacheTest, a_truncate_reports_progress_up_to_just_before_it_and_its_deletions_after) {
  ASSERT_TRUE(upsert("a", "1", 3));
  sink_.take();
  EXPECT_EQ(cache_.truncate(7, ChangeOrigin::kRemote), 1u);
  std::vector<Progress> p = sink_.take_progress();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].revision, 6);  // The deletions at 7 are not complete until 7 is.
  std::vector<Change> c = sink_.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].revision, 7);
}

TEST_F(CacheTest, a_resync_reports_progress_even_when_the_watermark_stays) {
  ASSERT_TRUE(upsert("a", "1", 3));
  cache_.advance_watermark(10);
  sink_.take_progress();
  // A row changed without notifying (replica mode) keeps its old revision.
  std::vector<Row> rows;
  rows.push_back(row("a", "2", 3));
  EXPECT_EQ(cache_.replace_all(std::move(rows), 10, ReplaceMode::kResync), 1u);
  std::vector<Progress> p = sink_.take_progress();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].revision, 10);
  EXPECT_FALSE(p[0].reset);
}

TEST_F(CacheTest, a_reset_reload_reports_progress_with_reset_after_its_changes) {
  ASSERT_TRUE(upsert("old", "1", 50));
  cache_.advance_watermark(50);
  sink_.take();
  sink_.take_progress();
  std::vector<Row> rows;
  rows.push_back(row("new", "2", 1));
  cache_.replace_all(std::move(rows), 1, ReplaceMode::kReset);
  std::vector<Progress> p = sink_.take_progress();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].revision, 1);
  EXPECT_TRUE(p[0].reset);
  EXPECT_EQ(sink_.take().size(), 2u);  // "old" deleted, "new" added.
  EXPECT_EQ(cache_.watermark(), 1);
}

TEST_F(CacheTest, a_snapshot_holds_the_values_and_the_watermark_together) {
  ASSERT_TRUE(upsert("app:a", "1", 2));
  ASSERT_TRUE(upsert("db:b", "2", 3));
  cache_.advance_watermark(3);
  Snapshot s = cache_.snapshot("app:");
  EXPECT_EQ(s.revision, 3);
  EXPECT_EQ(s.values, (std::map<std::string, json>{{"app:a", json(1)}}));
}

// --- Concurrency (meaningful under ThreadSanitizer) ----------------------------------------

TEST(Cache, concurrent_readers_and_a_writer_stay_consistent) {
  RecordingSink sink;
  Cache cache(sink);
  constexpr int kIterations = 3000;
  constexpr int kKeys = 16;
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back("cfg." + std::to_string(i));

  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 1; i <= kIterations; ++i) {
      const std::string& key = keys[i % kKeys];
      if (i % 7 == 0) {
        cache.remove(key, i, ChangeOrigin::kRemote, AppliedBy::kFeed);
      } else {
        std::string text = R"({"i": )" + std::to_string(i) + "}";
        const bool local = i % 2 == 0;
        cache.upsert(value_of(key, text), i, local ? ChangeOrigin::kLocal : ChangeOrigin::kRemote,
                     local ? AppliedBy::kWriter : AppliedBy::kFeed);
      }
      if (i % 50 == 0) cache.advance_watermark(i - 10);
      if (i % 997 == 0) cache.truncate(i, ChangeOrigin::kRemote);
    }
    done = true;
  });
  std::vector<std::thread> readers;
  std::atomic<uint64_t> reads{0};
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      int n = 0;
      while (!done.load() || n < 100) {
        const std::string& key = keys[(n + t) % kKeys];
        if (auto v = cache.get(key)) EXPECT_TRUE(v->is_object());
        cache.read(key, [](const Entry& v) { EXPECT_TRUE(v.to_json().contains("i")); });
        if (n % 10 == 0) {
          auto all = cache.get_all("cfg.");
          EXPECT_LE(all.size(), static_cast<std::size_t>(kKeys));
        }
        CacheDigest d = cache.digest();
        EXPECT_LE(d.count, static_cast<std::size_t>(kKeys));
        (void)cache.crc();
        (void)cache.size();
        (void)cache.watermark();
        ++n;
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_GT(reads.load(), 0u);

  // The running sums agree with the final content.
  std::map<std::string, json> all = cache.get_all("");
  uint32_t crc = 0;
  for (const auto& [key, value] : all) {
    crc += hash_entry(key, R"({"i": )" + value.at("i").dump() + "}").crc;
  }
  EXPECT_EQ(cache.size(), all.size());
  EXPECT_EQ(cache.crc(), crc);
}

TEST(Cache, concurrent_writers_push_each_keys_changes_in_revision_order) {
  RecordingSink sink;
  Cache cache(sink);
  constexpr int kPerThread = 1500;
  constexpr int kThreads = 4;
  constexpr int kKeys = 8;
  std::atomic<int64_t> next_revision{1};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = "k" + std::to_string((i + t) % kKeys);
        const int64_t revision = next_revision.fetch_add(1);
        if (i % 5 == 4) {
          cache.remove(key, revision, ChangeOrigin::kRemote, AppliedBy::kFeed);
        } else {
          cache.upsert(value_of(key, std::to_string(revision)), revision, ChangeOrigin::kRemote,
                       AppliedBy::kFeed);
        }
      }
    });
  }
  for (auto& w : writers) w.join();

  std::map<std::string, int64_t> last;
  std::map<std::string, std::optional<json>> final_value;
  for (const Change& c : sink.take()) {
    auto [it, first] = last.emplace(c.key, c.revision);
    if (!first) {
      EXPECT_GT(c.revision, it->second) << "key " << c.key << " went back";
      it->second = c.revision;
    }
    if (c.value) EXPECT_EQ(*c.value, json(c.revision));
    final_value[c.key] = c.value;
  }
  // Replaying the changes gives the cache's content.
  for (const auto& [key, value] : final_value) EXPECT_EQ(cache.get(key), value) << key;
}

}  // namespace
}  // namespace syncconfig::internal
