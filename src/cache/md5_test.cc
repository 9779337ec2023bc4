#include "cache/md5.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace syncconfig::internal {
namespace {

std::string hex(const std::array<uint8_t, 16>& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : digest) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xf];
  }
  return out;
}

// "abcdefghijklmnopqrstuvwxyzabcd..." of the given length.
std::string alphabet_pattern(size_t length) {
  std::string s;
  for (size_t i = 0; i < length; ++i) s += static_cast<char>('a' + i % 26);
  return s;
}

TEST(Md5, rfc1321_vectors_match) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
       "d174ab98d277d9f5a5611c2c9f419d9f"},
      {"1234567890123456789012345678901234567890123456789012345678901234567890123456789"
       "0",
       "57edf4a22be3c955ac49da2e2107b67a"},
  };
  for (const auto& [input, expected] : vectors) {
    EXPECT_EQ(hex(md5(input)), expected) << "input: \"" << input << "\"";
  }
}

TEST(Md5, uneven_chunks_give_the_one_shot_digest) {
  const std::string input = alphabet_pattern(1000);
  // Chunk sizes that straddle block boundaries in different ways, including empty chunks.
  const std::vector<size_t> sizes = {0, 1, 3, 60, 64, 0, 127, 5, 200, 63, 65, 1};
  Md5 h;
  size_t pos = 0;
  for (size_t i = 0; pos < input.size(); ++i) {
    size_t n = std::min(sizes[i % sizes.size()], input.size() - pos);
    h.update(std::string_view(input).substr(pos, n));
    pos += n;
  }
  const std::string chunked = hex(h.finish());
  EXPECT_EQ(chunked, hex(md5(input)));
  EXPECT_EQ(chunked, "303fb697b589019cb3edba04b794e575");  // printf ... | md5sum
}

TEST(Md5, byte_at_a_time_gives_the_one_shot_digest) {
  const std::string input = alphabet_pattern(1000);
  Md5 h;
  for (char c : input) h.update(std::string_view(&c, 1));
  EXPECT_EQ(hex(h.finish()), "303fb697b589019cb3edba04b794e575");
}

// 55 is the longest message whose padding fits in one block, 56..63 need a second padding
// block, 64 and 65 start the padding in a fresh block.
TEST(Md5, lengths_around_the_padding_boundary_match) {
  const std::vector<std::pair<size_t, std::string>> cases = {
      {55, "ef1772b6dff9a122358552954ad0df65"}, {56, "3b0c8ac703f828b04c6c197006d17218"},
      {63, "b06521f39153d618550606be297466d5"}, {64, "014842d480b571495a4a0363793f7367"},
      {65, "c743a45e0d2e6a95cb859adae0248435"},
  };
  for (const auto& [length, expected] : cases) {
    EXPECT_EQ(hex(md5(std::string(length, 'a'))), expected) << length << " x 'a'";
  }
}

}  // namespace
}  // namespace syncconfig::internal
