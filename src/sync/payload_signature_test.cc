#include "sync/payload_signature.h"

#include <gtest/gtest.h>

#include <string>

#include "sync/payload.h"

namespace syncconfig::internal {
namespace {

TEST(PayloadSignature, is_hmac_sha256_truncated_to_128_bits) {
  // RFC 4231, test case 2: HMAC-SHA-256("Jefe", "what do ya want for nothing?") begins with
  // 5bdcc146bf60754e6a042426089575c7.
  PayloadKey key = payload_key_from_secret("Jefe");
  EXPECT_EQ(payload_signature(key, "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7");
  // Test case 1: a 20-byte key of 0x0b, "Hi There".
  EXPECT_EQ(payload_signature(payload_key_from_secret(std::string(20, '\x0b')), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b");
}

TEST(PayloadSignature, a_new_key_is_random_and_survives_its_hex_form) {
  PayloadKey a = make_payload_key(), b = make_payload_key();
  EXPECT_NE(a.ipad, b.ipad);
  ASSERT_EQ(a.ipad.size(), 64u);
  std::optional<PayloadKey> back = payload_key_from_hex(to_hex(a.ipad), to_hex(a.opad));
  ASSERT_TRUE(back);
  EXPECT_EQ(payload_signature(*back, "x"), payload_signature(a, "x"));
  EXPECT_FALSE(payload_key_from_hex("zz", to_hex(a.opad)));
  EXPECT_FALSE(payload_key_from_hex(to_hex(a.ipad).substr(2), to_hex(a.opad)));
}

TEST(PayloadSignature, a_signed_payload_splits_into_what_was_signed_and_the_signature) {
  PayloadKey key = make_payload_key();
  const std::string text = R"({"sc" : 1, "op" : "u", "r" : 7, "x" : 9, "k" : "a", "val" : "1"})";
  const std::string sig = payload_signature(key, text);
  const std::string payload = text.substr(0, text.size() - 1) + ", \"m\" : \"" + sig + "\"}";
  std::optional<SignedPayload> split = split_signature(payload);
  ASSERT_TRUE(split);
  EXPECT_EQ(split->signed_text, text);
  EXPECT_EQ(split->signature, sig);
  EXPECT_TRUE(signature_matches(key, split->signed_text, split->signature));
  EXPECT_FALSE(signature_matches(make_payload_key(), split->signed_text, split->signature));
  EXPECT_FALSE(signature_matches(key, split->signed_text + " ", split->signature));
  // parse_notice keeps it; an unsigned payload has none, a malformed field gives none.
  std::string why;
  std::optional<Notice> n = parse_notice(payload, &why);
  ASSERT_TRUE(n) << why;
  ASSERT_TRUE(n->signature);
  EXPECT_EQ(n->signature->signature, sig);
  EXPECT_FALSE(parse_notice(text, &why)->signature);
  const std::string short_sig = text.substr(0, text.size() - 1) + ", \"m\" : \"abc\"}";
  ASSERT_TRUE(parse_notice(short_sig, &why));
  EXPECT_FALSE(parse_notice(short_sig, &why)->signature);
  EXPECT_FALSE(split_signature("}"));
  EXPECT_FALSE(split_signature(""));
}

}  // namespace
}  // namespace syncconfig::internal
