// MD5 (RFC 1321). Used only to compare the cache with the table's content through PostgreSQL's
// built-in md5(): PostgreSQL 15 has no crc32 in SQL. Not used for anything security related.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace syncconfig::internal {

class Md5 {
 public:
  Md5();
  void update(std::string_view data);
  std::array<uint8_t, 16> finish();  // The object must not be used afterwards.

 private:
  void block(const uint8_t* p);
  uint32_t a_, b_, c_, d_;
  uint64_t length_ = 0;
  uint8_t buffer_[64];
  size_t buffered_ = 0;
};

std::array<uint8_t, 16> md5(std::string_view data);

}  // namespace syncconfig::internal
