#include "cache/entry_hash.h"

#include <zlib.h>

#include "cache/md5.h"

namespace syncconfig::internal {
namespace {
uLong crc_update(uLong crc, std::string_view s) {
  // zlib takes uInt lengths; feed large values in pieces.
  while (!s.empty()) {
    auto n = static_cast<uInt>(std::min<size_t>(s.size(), 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(s.data()), n);
    s.remove_prefix(n);
  }
  return crc;
}
}  // namespace

EntryHash hash_entry(std::string_view key, std::string_view value_text) {
  static constexpr char kNul = '\0';
  EntryHash h;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc_update(crc, key);
  crc = crc_update(crc, std::string_view(&kNul, 1));
  crc = crc_update(crc, value_text);
  h.crc = static_cast<uint32_t>(crc);

  Md5 md5;
  md5.update(key);
  md5.update(std::string_view(&kNul, 1));
  md5.update(value_text);
  auto digest = md5.finish();
  h.md5 = (uint32_t{digest[0]} << 24) | (uint32_t{digest[1]} << 16) | (uint32_t{digest[2]} << 8) |
          uint32_t{digest[3]};
  return h;
}

}  // namespace syncconfig::internal
