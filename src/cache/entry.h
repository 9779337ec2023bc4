// One cached key: a single heap block holding the entry's header, its key and its value.
//
// Memory is what a cache of a million keys is judged on, so an entry is one allocation:
// a 32-byte header, then the key bytes, then the value. Scalars (strings, numbers, booleans,
// null) are kept as PostgreSQL's jsonb text and converted on read: the typed getters read
// that text directly (an integer is one std::from_chars), and Store::get parses it, which for a
// scalar costs about what copying a parsed nlohmann::json would. Objects and arrays are kept
// parsed, because re-parsing them on every get() would cost far more than their text saves.
// A deleted key is an entry without a value (a tombstone) until the watermark passes it.
//
// An Entry is immutable once built, except for `revision` and `mark`, which only the cache
// changes under its write lock.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "cache/entry_hash.h"

namespace syncconfig::internal {

enum class ValueKind : uint8_t { kTombstone, kNull, kBool, kNumber, kString, kContainer };

class Entry;
struct EntryDeleter {
  void operator()(Entry* e) const noexcept;
};
using EntryPtr = std::unique_ptr<Entry, EntryDeleter>;

class Entry {
 public:
  // Builds an entry from PostgreSQL's jsonb text of the value. Returns nullptr if the text is not
  // JSON (PostgreSQL never sends such text; a forged notification might). Containers are parsed;
  // numbers, booleans and null are checked by parsing; a string without escapes is checked by a
  // scan, one with escapes by the parser.
  static EntryPtr make(std::string_view key, std::string_view text, int64_t revision);
  static EntryPtr make_tombstone(std::string_view key, int64_t revision);

  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;

  std::string_view key() const { return {data(), key_len_}; }
  ValueKind kind() const { return kind_; }
  bool live() const { return kind_ != ValueKind::kTombstone; }
  // The jsonb text of a scalar; empty for containers and tombstones.
  std::string_view text() const { return {data() + key_len_, text_len_}; }
  // The value as JSON (null for a tombstone). Scalars are parsed from their text.
  nlohmann::json to_json() const;
  // Objects and arrays: the parsed value. nullptr for other kinds.
  const nlohmann::json* container() const {
    return kind_ == ValueKind::kContainer ? reinterpret_cast<const nlohmann::json*>(this + 1)
                                          : nullptr;
  }
  // Whether both hold the same value (same hashes of key + value text).
  bool same_value(const Entry& other) const {
    return live() && other.live() && hash.crc == other.hash.crc && hash.md5 == other.hash.md5;
  }
  uint32_t key_hash() const { return key_hash_; }
  static uint32_t hash_key(std::string_view key);

  int64_t revision;
  EntryHash hash;    // Of key + '\0' + value text; zero for a tombstone.
  uint8_t mark = 0;  // Scratch bit for Cache::replace_all.

 private:
  friend struct EntryDeleter;
  Entry(int64_t rev, uint32_t key_hash, uint16_t key_len, uint32_t text_len, ValueKind kind)
      : revision(rev), key_hash_(key_hash), text_len_(text_len), key_len_(key_len), kind_(kind) {}
  static EntryPtr allocate(std::string_view key, std::string_view stored_text, ValueKind kind,
                           int64_t revision);
  const char* data() const {
    return reinterpret_cast<const char*>(this + 1) +
           (kind_ == ValueKind::kContainer ? sizeof(nlohmann::json) : 0);
  }
  char* data() { return const_cast<char*>(static_cast<const Entry*>(this)->data()); }

  uint32_t key_hash_;
  uint32_t text_len_;
  uint16_t key_len_;  // Keys are at most 255 characters (1020 bytes of UTF-8).
  ValueKind kind_;
};

}  // namespace syncconfig::internal
