// Per-entry hashes behind the store's checksums. Both cover key + '\0' + value, where value is
// PostgreSQL's jsonb text, so every instance (and PostgreSQL itself) hashes the same bytes.
#pragma once

#include <cstdint>
#include <string_view>

namespace syncconfig::internal {

struct EntryHash {
  uint32_t crc = 0;  // CRC32 (zlib); summed into Store::get_crc().
  uint32_t md5 = 0;  // First 4 bytes of MD5, big-endian; summed for the heartbeat's comparison
                     // with the table, which PostgreSQL computes with its own md5().
};

EntryHash hash_entry(std::string_view key, std::string_view value_text);

}  // namespace syncconfig::internal
