// The cache's index: an open-addressing hash table (linear probing, backward-shift deletion) of
// owned Entry pointers, keyed by Entry::key().
//
// Why not std::unordered_map: its node (next pointer, cached hash, std::string key) and bucket
// array cost ~60 bytes per entry on top of the entry, and one more allocation per key at load.
// Here a key costs one 8-byte slot at a load factor between 3/8 and 3/4, and probing compares a
// 32-bit hash kept in the entry before touching the key.
//
// Not synchronized: Cache guards it.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "cache/entry.h"

namespace syncconfig::internal {

class EntryTable {
 public:
  EntryTable() = default;
  ~EntryTable() { clear(); }
  EntryTable(const EntryTable&) = delete;
  EntryTable& operator=(const EntryTable&) = delete;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Makes room for `n` entries without rehashing.
  void reserve(std::size_t n);

  Entry* find(std::string_view key) const;
  // Starts loading the home slot of a key with this hash into the cache (a hint; no effect on
  // the contents): a bulk insert that calls it a few keys ahead hides most of the slot misses.
  void prefetch(uint32_t key_hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[key_hash & (slots_.size() - 1)]);
  }
  // Stores `e`, replacing (and returning) any entry with the same key.
  EntryPtr put(EntryPtr e);
  // Removes and returns the entry with `key`, or nullptr.
  EntryPtr erase(std::string_view key);
  void clear();

  // Calls f(Entry&) for every entry; f must not modify the table.
  template <class F>
  void for_each(F&& f) const {
    for (Entry* e : slots_) {
      if (e != nullptr) f(*e);
    }
  }

 private:
  std::size_t index_of(std::string_view key, uint32_t hash) const;  // Slot of key, or of a gap.
  void grow(std::size_t min_capacity);

  std::vector<Entry*> slots_;  // Power-of-two size; nullptr marks a free slot.
  std::size_t size_ = 0;
};

}  // namespace syncconfig::internal
