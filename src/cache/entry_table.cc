#include "cache/entry_table.h"

#include <algorithm>
#include <bit>
#include <utility>

namespace syncconfig::internal {
namespace {
constexpr std::size_t kMinCapacity = 16;
// Grow when more than 3/4 full: linear probing stays short below that.
bool too_full(std::size_t size, std::size_t capacity) { return size * 4 > capacity * 3; }
}  // namespace

void EntryTable::reserve(std::size_t n) {
  std::size_t capacity = std::max(kMinCapacity, std::bit_ceil(n + n / 3 + 1));
  if (capacity > slots_.size()) grow(capacity);
}

std::size_t EntryTable::index_of(std::string_view key, uint32_t hash) const {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = hash & mask;
  while (slots_[i] != nullptr) {
    const Entry* e = slots_[i];
    if (e->key_hash() == hash && e->key() == key) return i;
    i = (i + 1) & mask;
  }
  return i;
}

Entry* EntryTable::find(std::string_view key) const {
  if (size_ == 0) return nullptr;
  return slots_[index_of(key, Entry::hash_key(key))];
}

EntryPtr EntryTable::put(EntryPtr e) {
  if (slots_.empty() || too_full(size_ + 1, slots_.size())) {
    grow(std::max(kMinCapacity, slots_.size() * 2));
  }
  std::size_t i = index_of(e->key(), e->key_hash());
  EntryPtr old(slots_[i]);
  if (!old) ++size_;
  slots_[i] = e.release();
  return old;
}

EntryPtr EntryTable::erase(std::string_view key) {
  if (size_ == 0) return nullptr;
  const std::size_t mask = slots_.size() - 1;
  std::size_t hole = index_of(key, Entry::hash_key(key));
  EntryPtr removed(slots_[hole]);
  if (!removed) return nullptr;
  slots_[hole] = nullptr;
  --size_;
  // Backward-shift: move later entries of the probe run into the hole when their home slot is
  // not between the hole and where they sit, so every entry stays reachable from its home.
  for (std::size_t j = (hole + 1) & mask; slots_[j] != nullptr; j = (j + 1) & mask) {
    std::size_t home = slots_[j]->key_hash() & mask;
    bool reachable_without_hole =
        hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (reachable_without_hole) continue;
    slots_[hole] = std::exchange(slots_[j], nullptr);
    hole = j;
  }
  return removed;
}

void EntryTable::clear() {
  for (Entry*& e : slots_) {
    EntryPtr owned(std::exchange(e, nullptr));
  }
  size_ = 0;
}

void EntryTable::grow(std::size_t min_capacity) {
  std::vector<Entry*> old = std::exchange(slots_, std::vector<Entry*>(min_capacity, nullptr));
  const std::size_t mask = slots_.size() - 1;
  for (Entry* e : old) {
    if (e == nullptr) continue;
    std::size_t i = e->key_hash() & mask;
    while (slots_[i] != nullptr) i = (i + 1) & mask;
    slots_[i] = e;
  }
}

}  // namespace syncconfig::internal
