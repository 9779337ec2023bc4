// SnapshotWriter on a real Cache, and the cache's side of it: export_snapshot and
// content_version.
#include "cache/snapshot_writer.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "cache/jsonb_text.h"
#include "syncconfig/error.h"

namespace syncconfig::internal {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Entries = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kSource = "table public.sync_config";

class NullSink : public ChangeSink {
 public:
  void push(Change) override {}
  void progress(int64_t, bool) override {}
};

// Polls `condition` (yielding, no sleep) until it holds or 5 s pass.
bool eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

Entries sorted(Entries e) {
  std::sort(e.begin(), e.end());
  return e;
}

std::size_t count_of(const std::string& text, std::string_view part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

class CacheSnapshot : public ::testing::Test {
 protected:
  void put(std::string_view key, std::string_view text, int64_t revision) {
    std::optional<ParsedValue> v = parse_value(key, text);
    ASSERT_TRUE(v.has_value()) << text;
    cache_.upsert(std::move(*v), revision, ChangeOrigin::kRemote, AppliedBy::kFeed);
  }

  NullSink sink_;
  Cache cache_{sink_};
};

TEST_F(CacheSnapshot, export_holds_every_live_entry_as_jsonb_text_at_the_watermark) {
  put("a", "1", 1);
  put("s", R"("h\u00e9llo \"x\"")", 2);
  put("obj", R"({"a": "x", "bb": [1, 2.5, {"c": null}]})", 3);
  put("gone", "true", 4);
  cache_.remove("gone", 5, ChangeOrigin::kRemote, AppliedBy::kFeed);
  cache_.advance_watermark(4);  // The tombstone (5) stays.
  const auto before = std::chrono::system_clock::now();
  SnapshotFileData d = cache_.export_snapshot();
  EXPECT_EQ(d.source, "");
  EXPECT_EQ(d.revision, 4);
  EXPECT_GE(d.written_at, before);
  EXPECT_LE(d.written_at, std::chrono::system_clock::now());
  EXPECT_EQ(sorted(d.entries), (Entries{{"a", "1"},
                                        {"obj", R"({"a": "x", "bb": [1, 2.5, {"c": null}]})"},
                                        {"s", R"("h\u00e9llo \"x\"")"}}));
}

TEST_F(CacheSnapshot, an_empty_cache_exports_no_entries) {
  SnapshotFileData d = cache_.export_snapshot();
  EXPECT_TRUE(d.entries.empty());
  EXPECT_EQ(d.revision, 0);
}

TEST_F(CacheSnapshot, content_version_changes_with_the_content_or_the_watermark_only) {
  uint64_t v = cache_.content_version();
  auto changed = [&] {
    const uint64_t now = cache_.content_version();
    return std::exchange(v, now) != now;
  };
  put("a", "1", 1);
  EXPECT_TRUE(changed()) << "insert";
  put("a", "2", 2);
  EXPECT_TRUE(changed()) << "update";
  put("a", "2", 3);
  EXPECT_FALSE(changed()) << "the same value again";
  put("a", "9", 2);
  EXPECT_FALSE(changed()) << "an older revision, not applied";
  cache_.advance_watermark(3);
  EXPECT_TRUE(changed()) << "watermark";
  cache_.advance_watermark(2);
  EXPECT_FALSE(changed()) << "a lower watermark, ignored";
  cache_.remove("a", 4, ChangeOrigin::kRemote, AppliedBy::kFeed);
  EXPECT_TRUE(changed()) << "delete";
  cache_.remove("absent", 1, ChangeOrigin::kRemote, AppliedBy::kFeed);
  EXPECT_FALSE(changed()) << "deleting an absent key below the watermark";
  put("b", "1", 5);
  EXPECT_TRUE(changed());
  cache_.truncate(6, ChangeOrigin::kRemote);
  EXPECT_TRUE(changed()) << "truncate";
  std::vector<Row> rows;
  rows.push_back(Row{*parse_value("c", "[1]"), 7});
  cache_.replace_all(std::move(rows), 7, ReplaceMode::kResync);
  EXPECT_TRUE(changed()) << "resync";
}

// Exports read entries after releasing the lock; writers replacing, deleting, truncating and
// reloading them meanwhile must not free them (ASan would see it) or mix them up.
TEST_F(CacheSnapshot, an_export_survives_writers_replacing_what_it_reads) {
  auto text_of = [](int key, int round) {
    return R"({"key": )" + std::to_string(key) + R"(, "round": )" + std::to_string(round) + "}";
  };
  constexpr int kKeys = 200;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int64_t revision = 0;
    for (int round = 0; round < 300; ++round) {
      for (int k = 0; k < kKeys; ++k) put("k" + std::to_string(k), text_of(k, round), ++revision);
      if (round % 7 == 0) cache_.remove("k3", ++revision, ChangeOrigin::kRemote, AppliedBy::kFeed);
      if (round % 50 == 49) cache_.truncate(++revision, ChangeOrigin::kRemote);
      if (round % 30 == 29) {
        std::vector<Row> rows;
        for (int k = 0; k < kKeys; k += 2) {
          rows.push_back(Row{*parse_value("k" + std::to_string(k), text_of(k, -1)), ++revision});
        }
        cache_.replace_all(std::move(rows), revision, ReplaceMode::kResync);
      }
      cache_.advance_watermark(revision);
    }
    done = true;
  });
  int exports = 0;
  while (!done || exports < 10) {
    SnapshotFileData d = cache_.export_snapshot();
    ++exports;
    for (const auto& [key, text] : d.entries) {
      const nlohmann::json v = nlohmann::json::parse(text);
      ASSERT_EQ("k" + std::to_string(v.at("key").get<int>()), key) << text;
    }
  }
  writer.join();
}

class SnapshotWriterTest : public CacheSnapshot {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "snapshot_writer_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (fs::path(dir_) / "snapshot").string();
    logger_ = std::make_shared<spdlog::logger>(
        "snapshot_writer_test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<SnapshotWriter> start(std::chrono::milliseconds interval) {
    return std::make_unique<SnapshotWriter>(
        path_, interval,
        [this] {
          ++version_calls_;
          return cache_.content_version();
        },
        [this] {
          ++collects_;
          if (collect_failures_ > 0) {
            --collect_failures_;
            throw std::runtime_error("collect failed on purpose");
          }
          SnapshotFileData d = cache_.export_snapshot();
          d.source = std::string(kSource);
          return d;
        },
        logger_);
  }

  // The file's content, or nullopt while there is none.
  std::optional<SnapshotFileData> file() const {
    try {
      return read_snapshot_file(path_, kSource);
    } catch (const Error&) {
      return std::nullopt;
    }
  }
  bool file_has(int64_t revision, const Entries& entries) const {
    std::optional<SnapshotFileData> d = file();
    return d && d->revision == revision && sorted(d->entries) == sorted(entries);
  }

  std::string dir_;
  std::string path_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> logger_;
  std::atomic<int> version_calls_{0};
  std::atomic<int> collects_{0};
  std::atomic<int> collect_failures_{0};
};

TEST_F(SnapshotWriterTest, writes_at_start_and_again_after_each_change) {
  put("a", "1", 1);
  put("b", R"({"y": 2, "x": [true]})", 2);
  cache_.advance_watermark(2);
  auto writer = start(5ms);
  EXPECT_TRUE(eventually([&] {
    return file_has(2, {{"a", "1"}, {"b", R"({"x": [true], "y": 2})"}});
  }));
  put("c", R"("new")", 3);
  cache_.remove("a", 4, ChangeOrigin::kRemote, AppliedBy::kFeed);
  cache_.advance_watermark(4);
  EXPECT_TRUE(eventually([&] {
    return file_has(4, {{"b", R"({"x": [true], "y": 2})"}, {"c", R"("new")"}});
  }));
  // Counted once the directory is synced too, a moment after the file appears.
  EXPECT_TRUE(eventually([&] { return writer->writes() >= 2; }));
}

TEST_F(SnapshotWriterTest, an_unchanged_cache_is_not_written_again) {
  put("a", "1", 1);
  auto writer = start(1ms);
  ASSERT_TRUE(eventually([&] { return version_calls_ >= 20; }));
  EXPECT_EQ(writer->writes(), 1u);
  EXPECT_EQ(collects_, 1);
}

TEST_F(SnapshotWriterTest, stop_writes_the_final_state_and_is_idempotent) {
  put("a", "1", 1);
  cache_.advance_watermark(1);
  auto writer = start(std::chrono::hours(1));
  ASSERT_TRUE(eventually([&] { return writer->writes() == 1; }));
  put("a", "2", 2);
  cache_.advance_watermark(2);
  writer->stop();  // Does not wait for the hour.
  EXPECT_EQ(writer->writes(), 2u);
  EXPECT_TRUE(file_has(2, {{"a", "2"}}));
  writer->stop();
  writer.reset();
  EXPECT_EQ(collects_, 2);
}

TEST_F(SnapshotWriterTest, stop_without_a_change_writes_nothing_more) {
  put("a", "1", 1);
  auto writer = start(std::chrono::hours(1));
  ASSERT_TRUE(eventually([&] { return writer->writes() == 1; }));
  writer->stop();
  EXPECT_EQ(writer->writes(), 1u);
  EXPECT_EQ(collects_, 1);
}

TEST_F(SnapshotWriterTest, concurrent_stops_all_return_after_the_final_write) {
  auto writer = start(std::chrono::hours(1));
  ASSERT_TRUE(eventually([&] { return writer->writes() == 1; }));
  put("a", "1", 1);
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) {
    stoppers.emplace_back([&] {
      writer->stop();
      EXPECT_EQ(writer->writes(), 2u);
    });
  }
  for (auto& t : stoppers) t.join();
}

TEST_F(SnapshotWriterTest, failures_are_logged_first_and_every_tenth_and_never_thrown) {
  path_ = (fs::path(dir_) / "missing" / "snapshot").string();
  auto writer = start(1ms);
  ASSERT_TRUE(eventually([&] { return collects_ >= 25; }));
  writer->stop();
  const int attempts = collects_;
  EXPECT_EQ(writer->writes(), 0u);
  const std::string log = log_.str();
  EXPECT_EQ(count_of(log, "not written"), static_cast<std::size_t>(1 + attempts / 10)) << log;
  EXPECT_EQ(count_of(log, "(1 failures in a row)"), 1u) << log;
  EXPECT_EQ(count_of(log, "(10 failures in a row)"), 1u) << log;
  EXPECT_NE(log.find(path_), std::string::npos) << log;
  EXPECT_NE(log.find("No such file or directory"), std::string::npos) << log;
}

TEST_F(SnapshotWriterTest, a_failing_collect_is_logged_and_retried_until_it_works) {
  collect_failures_ = 2;
  put("a", "1", 1);
  auto writer = start(1ms);
  EXPECT_TRUE(eventually([&] { return writer->writes() == 1; }));
  writer->stop();
  EXPECT_TRUE(file_has(0, {{"a", "1"}}));
  const std::string log = log_.str();
  EXPECT_EQ(count_of(log, "collect failed on purpose"), 1u) << log;
  EXPECT_EQ(count_of(log, "written again after 2 failures"), 1u) << log;
}

// Not run by default: prints what exporting a million keys (half of them objects) costs, and
// the longest a write waits meanwhile (the lock is held only to list the entries).
TEST_F(CacheSnapshot, DISABLED_a_million_keys_take_this_long) {
  using Clock = std::chrono::steady_clock;
  auto us = [](Clock::duration d) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  };
  const std::string object = R"({"n": 12, "name": "abc", "list": [1, 2.5, 3], "enabled": true})";
  std::vector<Row> rows;
  for (int i = 0; i < 1000000; ++i) {
    const std::string key = "config:key:" + std::to_string(i);
    rows.push_back(Row{*parse_value(key, i % 2 == 0 ? std::to_string(i) : object), i + 1});
  }
  cache_.replace_all(std::move(rows), 1000000, ReplaceMode::kInitial);
  // Copying the objects costs about what rendering them does.
  const nlohmann::json parsed = nlohmann::json::parse(object);
  auto t0 = Clock::now();
  std::vector<nlohmann::json> copies(500000, parsed);
  auto t1 = Clock::now();
  for (const auto& c : copies) ASSERT_FALSE(jsonb_text(c).empty());
  auto t2 = Clock::now();
  std::printf("500,000 objects: copy %lld ms, render %lld ms\n", us(t1 - t0) / 1000,
              us(t2 - t1) / 1000);
  copies.clear();

  std::atomic<bool> exporting{true};
  Clock::duration longest_write{};
  int writes = 0;
  std::thread writer([&] {
    for (int64_t revision = 2000000; exporting; ++revision, ++writes) {
      auto v = parse_value("config:key:" + std::to_string(revision % 1000000), object);
      const auto start = Clock::now();
      cache_.upsert(std::move(*v), revision, ChangeOrigin::kRemote, AppliedBy::kFeed);
      longest_write = std::max(longest_write, Clock::now() - start);
    }
  });
  t0 = Clock::now();
  SnapshotFileData d = cache_.export_snapshot();
  t1 = Clock::now();
  exporting = false;
  writer.join();
  std::printf("export of 1,000,000 keys: %lld ms; %d writes meanwhile, the longest %lld us\n",
              us(t1 - t0) / 1000, writes, us(longest_write));
  ASSERT_EQ(d.entries.size(), 1000000u);
}

}  // namespace
}  // namespace syncconfig::internal
