#include "cache/md5.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace syncconfig::internal {
namespace {

// Per-step shift amounts and sine-derived constants, RFC 1321 section 3.4.
constexpr uint32_t kShift[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

constexpr uint32_t kSine[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

constexpr uint32_t rotl(uint32_t x, uint32_t n) { return (x << n) | (x >> (32 - n)); }

// MD5 is little-endian by definition; assemble bytes explicitly so the host order is irrelevant.
uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

void store_le32(uint32_t v, uint8_t* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// One of the 64 steps; I is a compile-time constant, so the round function, the message word and
// the shift are resolved at compile time (the rolled loop with a branch per step was ~2x slower,
// and MD5 is the largest cost of loading a million keys).
template <int I>
inline void md5_step(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d, const uint32_t* m) {
  uint32_t f;
  int g;
  if constexpr (I < 16) {
    f = d ^ (b & (c ^ d));  // (b & c) | (~b & d)
    g = I;
  } else if constexpr (I < 32) {
    f = c ^ (d & (b ^ c));  // (d & b) | (~d & c)
    g = (5 * I + 1) % 16;
  } else if constexpr (I < 48) {
    f = b ^ c ^ d;
    g = (3 * I + 5) % 16;
  } else {
    f = c ^ (b | ~d);
    g = (7 * I) % 16;
  }
  uint32_t rotated = rotl(a + f + kSine[I] + m[g], kShift[I]);
  a = d;
  d = c;
  c = b;
  b += rotated;
}

template <int... I>
inline void md5_steps(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d, const uint32_t* m,
                      std::integer_sequence<int, I...>) {
  (md5_step<I>(a, b, c, d, m), ...);
}

}  // namespace

Md5::Md5() : a_(0x67452301), b_(0xefcdab89), c_(0x98badcfe), d_(0x10325476) {}

void Md5::update(std::string_view data) {
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t n = data.size();
  length_ += n;
  if (buffered_ > 0) {
    size_t take = std::min(n, sizeof(buffer_) - buffered_);
    std::memcpy(buffer_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    n -= take;
    if (buffered_ < sizeof(buffer_)) return;
    block(buffer_);
    buffered_ = 0;
  }
  // Whole blocks straight from the input, without copying.
  for (; n >= 64; p += 64, n -= 64) block(p);
  if (n > 0) {
    std::memcpy(buffer_, p, n);
    buffered_ = n;
  }
}

std::array<uint8_t, 16> Md5::finish() {
  // Padding: 0x80, zeros up to 56 mod 64, then the bit length as 64-bit little-endian.
  const uint64_t bits = length_ * 8;
  uint8_t pad[72] = {0x80};
  size_t pad_len = (buffered_ < 56 ? 56 : 120) - buffered_;
  for (int i = 0; i < 8; ++i) pad[pad_len + i] = static_cast<uint8_t>(bits >> (8 * i));
  update(std::string_view(reinterpret_cast<const char*>(pad), pad_len + 8));

  std::array<uint8_t, 16> digest;
  store_le32(a_, digest.data());
  store_le32(b_, digest.data() + 4);
  store_le32(c_, digest.data() + 8);
  store_le32(d_, digest.data() + 12);
  return digest;
}

void Md5::block(const uint8_t* p) {
  uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load_le32(p + 4 * i);
  uint32_t a = a_, b = b_, c = c_, d = d_;
  md5_steps(a, b, c, d, m, std::make_integer_sequence<int, 64>{});
  a_ += a;
  b_ += b;
  c_ += c;
  d_ += d;
}

std::array<uint8_t, 16> md5(std::string_view data) {
  Md5 h;
  h.update(data);
  return h.finish();
}

}  // namespace syncconfig::internal
