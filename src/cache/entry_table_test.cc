#include "cache/entry_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace syncconfig::internal {
namespace {

TEST(EntryTable, random_puts_and_erases_match_a_std_map) {
  EntryTable table;
  std::map<std::string, int64_t> model;
  std::mt19937 rng(12345);
  // Few distinct keys, many operations: long probe runs, wrap-around and backward shifts.
  for (int i = 0; i < 200000; ++i) {
    std::string key = "k" + std::to_string(rng() % 3000);
    if (rng() % 3 == 0) {
      EntryPtr gone = table.erase(key);
      ASSERT_EQ(gone != nullptr, model.erase(key) == 1) << key;
      if (gone) EXPECT_EQ(gone->key(), key);
    } else {
      EntryPtr old = table.put(Entry::make(key, "1", i));
      ASSERT_EQ(old != nullptr, model.contains(key)) << key;
      model[key] = i;
    }
    ASSERT_EQ(table.size(), model.size());
    if (i % 20000 == 0) {
      for (const auto& [k, revision] : model) {
        const Entry* e = table.find(k);
        ASSERT_NE(e, nullptr) << k;
        EXPECT_EQ(e->revision, revision);
      }
    }
  }
  std::size_t visited = 0;
  table.for_each([&](const Entry& e) {
    ++visited;
    EXPECT_EQ(model.at(std::string(e.key())), e.revision);
  });
  EXPECT_EQ(visited, model.size());
  for (int k = 0; k < 3000; ++k) {
    std::string key = "k" + std::to_string(k);
    EXPECT_EQ(table.find(key) != nullptr, model.contains(key)) << key;
  }
}

TEST(EntryTable, reserve_then_fill_keeps_every_key_findable) {
  EntryTable table;
  table.reserve(50000);
  for (int i = 0; i < 50000; ++i) table.put(Entry::make("key-" + std::to_string(i), "true", i));
  EXPECT_EQ(table.size(), 50000u);
  for (int i = 0; i < 50000; ++i) {
    const Entry* e = table.find("key-" + std::to_string(i));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->revision, i);
  }
  EXPECT_EQ(table.find("key-50000"), nullptr);
  table.clear();
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(table.find("key-1"), nullptr);
}

}  // namespace
}  // namespace syncconfig::internal
