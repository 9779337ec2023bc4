#include "sync/payload.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

#include "util/validation.h"

namespace syncconfig::internal {
namespace {

// Parses `payload` and expects it to be refused, without throwing, with a reason.
::testing::AssertionResult Rejected(std::string_view payload) {
  std::string why;
  std::optional<Notice> n;
  try {
    n = parse_notice(payload, &why);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw a non-std exception";
  }
  if (n) return ::testing::AssertionFailure() << "was accepted";
  if (why.empty()) return ::testing::AssertionFailure() << "refused without a reason";
  return ::testing::AssertionSuccess() << "refused: " << why;
}

std::optional<Notice> Parse(std::string_view payload) {
  std::string why;
  std::optional<Notice> n = parse_notice(payload, &why);
  EXPECT_TRUE(n.has_value()) << "refused: " << why << "\npayload: " << payload.substr(0, 200);
  return n;
}

TEST(ParseNotice, an_upsert_with_its_value_is_parsed) {
  auto n = Parse(R"({"sc":1,"op":"u","r":5,"x":77,"k":"a","val":"{\"b\": 1}"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kUpsert);
  EXPECT_EQ(n->revision, 5);
  EXPECT_EQ(n->txid, 77);
  EXPECT_EQ(n->key, "a");
  ASSERT_TRUE(n->value_text.has_value());
  EXPECT_EQ(*n->value_text, R"({"b": 1})");
}

TEST(ParseNotice, the_exact_shape_json_build_object_produces_is_parsed) {
  // PostgreSQL's json_build_object(...)::text puts spaces around ':' and after ','.
  auto n = Parse(R"({"sc" : 1, "op" : "u", "r" : 5, "x" : 77, "k" : "a", "val" : "{\"b\": 1}"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kUpsert);
  EXPECT_EQ(n->revision, 5);
  EXPECT_EQ(n->txid, 77);
  EXPECT_EQ(n->key, "a");
  EXPECT_EQ(n->value_text, std::optional<std::string>(R"({"b": 1})"));
}

TEST(ParseNotice, an_upsert_without_val_has_no_value_text) {
  auto n = Parse(R"({"sc" : 1, "op" : "u", "r" : 6, "x" : 78, "k" : "big"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kUpsert);
  EXPECT_EQ(n->revision, 6);
  EXPECT_EQ(n->key, "big");
  EXPECT_FALSE(n->value_text.has_value());
}

TEST(ParseNotice, a_value_that_is_a_json_string_literal_keeps_its_quotes) {
  auto n = Parse(R"({"sc":1,"op":"u","r":1,"x":1,"k":"s","val":"\"hi\""})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->value_text, std::optional<std::string>("\"hi\""));
}

TEST(ParseNotice, a_delete_is_parsed) {
  auto n = Parse(R"({"sc" : 1, "op" : "d", "r" : 9, "x" : 80, "k" : "gone"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kDelete);
  EXPECT_EQ(n->revision, 9);
  EXPECT_EQ(n->txid, 80);
  EXPECT_EQ(n->key, "gone");
  EXPECT_FALSE(n->value_text.has_value());
}

TEST(ParseNotice, a_delete_ignores_a_stray_val) {
  auto n = Parse(R"({"sc":1,"op":"d","r":9,"x":80,"k":"gone","val":"1"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kDelete);
  EXPECT_FALSE(n->value_text.has_value());
}

TEST(ParseNotice, a_truncate_is_parsed_without_a_key) {
  auto n = Parse(R"({"sc" : 1, "op" : "t", "r" : 12, "x" : 81})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->op, Notice::Op::kTruncate);
  EXPECT_EQ(n->revision, 12);
  EXPECT_EQ(n->txid, 81);
  EXPECT_TRUE(n->key.empty());
  EXPECT_FALSE(n->value_text.has_value());
}

TEST(ParseNotice, large_revisions_and_txids_are_kept_exactly) {
  auto n = Parse(R"({"sc":1,"op":"u","r":9223372036854775807,"x":9223372036854775806,"k":"a"})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->revision, INT64_MAX);
  EXPECT_EQ(n->txid, INT64_MAX - 1);
}

TEST(ParseNotice, multi_byte_keys_are_kept_byte_for_byte) {
  auto n = Parse("{\"sc\":1,\"op\":\"u\",\"r\":1,\"x\":1,\"k\":\"caf\xC3\xA9/\xE6\x97\xA5\"}");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->key, "caf\xC3\xA9/\xE6\x97\xA5");
  // The escaped form json_build_object may produce for the same characters.
  auto escaped = Parse(R"({"sc":1,"op":"u","r":1,"x":1,"k":"caf\u00e9/\u65e5"})");
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped->key, "caf\xC3\xA9/\xE6\x97\xA5");
}

TEST(ParseNotice, a_key_of_255_bytes_is_accepted) {
  std::string key(255, 'k');
  auto n = Parse(R"({"sc":1,"op":"d","r":3,"x":1,"k":")" + key + "\"}");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->key, key);
}

TEST(ParseNotice, text_that_is_not_a_json_object_is_refused) {
  for (std::string_view p :
       {"garbage", "", " ", "null", "[]", "[1,2]", "1", "\"sc\"", "true", "{", "}", "{\"sc\":1",
        R"({"sc":1,"op":"u","r":1,"x":1,"k":"a"} trailing)"}) {
    EXPECT_TRUE(Rejected(p)) << "payload: " << p;
  }
}

TEST(ParseNotice, an_object_without_the_syncconfig_marker_is_refused) {
  EXPECT_TRUE(Rejected("{}"));
  EXPECT_TRUE(Rejected(R"({"op":"u","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":2,"op":"u","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":0,"op":"u","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":"1","op":"u","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1.5,"op":"u","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":null,"op":"u","r":5,"x":1,"k":"a"})"));
}

TEST(ParseNotice, a_missing_or_invalid_op_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"z","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"U","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"upsert","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"","r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":1,"r":5,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":null,"r":5,"x":1,"k":"a"})"));
}

TEST(ParseNotice, a_missing_zero_negative_or_non_integer_revision_is_refused) {
  for (std::string_view p : {
           R"({"sc":1,"op":"u","x":1,"k":"a"})",
           R"({"sc":1,"op":"u","r":0,"x":1,"k":"a"})",
           R"({"sc":1,"op":"u","r":-5,"x":1,"k":"a"})",
           R"({"sc":1,"op":"u","r":"5","x":1,"k":"a"})",
           R"({"sc":1,"op":"u","r":5.5,"x":1,"k":"a"})",
           R"({"sc":1,"op":"u","r":null,"x":1,"k":"a"})",
           R"({"sc":1,"op":"t","r":0,"x":1})",
           R"({"sc":1,"op":"d","r":-1,"x":1,"k":"a"})",
       }) {
    EXPECT_TRUE(Rejected(p)) << "payload: " << p;
  }
}

TEST(ParseNotice, a_revision_that_does_not_fit_int64_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":9223372036854775808,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":18446744073709551615,"x":1,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":1e30,"x":1,"k":"a"})"));
}

TEST(ParseNotice, a_missing_or_non_integer_txid_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":"77","k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":7.5,"k":"a"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"t","r":5})"));
}

TEST(ParseNotice, a_missing_or_empty_key_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"d","r":5,"x":1})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":""})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"d","r":5,"x":1,"k":""})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":null})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":42})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":["a"]})"));
}

// Keys written with plain SQL may use the VARCHAR(255) column's whole width: 255 characters of
// up to 4 bytes each (payload.cc), although set() only takes 255 bytes.
TEST(ParseNotice, a_key_of_255_four_byte_characters_is_accepted) {
  std::string key;
  for (int i = 0; i < 255; ++i) key += "\xF0\x9F\x98\x80";  // U+1F600
  ASSERT_EQ(key.size(), 1020u);
  auto n = Parse(R"({"sc":1,"op":"u","r":5,"x":1,"k":")" + key + "\"}");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->key, key);
  // 256 bytes of two-byte characters is well within the column.
  std::string two_byte;
  for (int i = 0; i < 128; ++i) two_byte += "\xC3\xA9";
  EXPECT_TRUE(Parse(R"({"sc":1,"op":"d","r":5,"x":1,"k":")" + two_byte + "\"}"));
}

TEST(ParseNotice, a_key_wider_than_the_column_can_hold_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":")" + std::string(1021, 'k') + "\"}"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"d","r":5,"x":1,"k":")" + std::string(4096, 'k') + "\"}"));
}

TEST(ParseNotice, a_key_containing_nul_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a\u0000b","val":"1"})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"d","r":5,"x":1,"k":"\u0000"})"));
}

TEST(ParseNotice, a_val_that_is_not_a_string_is_refused) {
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":1})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":{"b":1}})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":null})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":[1]})"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":true})"));
}

TEST(ParseNotice, deeply_nested_json_is_refused_without_crashing) {
  EXPECT_TRUE(Rejected(std::string(100000, '[')));
  EXPECT_TRUE(Rejected(std::string(100000, '[') + std::string(100000, ']')));
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  EXPECT_TRUE(Rejected(objects));
  // Deep nesting inside an otherwise valid payload.
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":)" + std::string(100000, '[') +
                       std::string(100000, ']') + "}"));
}

TEST(ParseNotice, invalid_utf8_bytes_are_refused) {
  EXPECT_TRUE(Rejected("\xFF\xFE\xFD"));
  EXPECT_TRUE(Rejected("{\"sc\":1,\"op\":\"u\",\"r\":5,\"x\":1,\"k\":\"a\xFF\"}"));
  EXPECT_TRUE(Rejected("{\"sc\":1,\"op\":\"u\",\"r\":5,\"x\":1,\"k\":\"\xC0\xAF\"}"));
  EXPECT_TRUE(Rejected("{\"sc\":1,\"op\":\"u\",\"r\":5,\"x\":1,\"k\":\"\xED\xA0\x80\"}"));
  EXPECT_TRUE(Rejected("{\"sc\":1,\"op\":\"u\",\"r\":5,\"x\":1,\"k\":\"a\",\"val\":\"\xE6\x97\"}"));
  // A lone surrogate escape decodes to invalid UTF-8.
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"\ud800"})"));
}

TEST(ParseNotice, embedded_nul_bytes_in_the_payload_are_refused) {
  static constexpr char kWithNul[] = "{\"sc\":1,\0\"op\":\"t\",\"r\":5,\"x\":1}";
  EXPECT_TRUE(Rejected(std::string_view(kWithNul, sizeof(kWithNul) - 1)));
  EXPECT_TRUE(Rejected(std::string_view("\0", 1)));
}

TEST(ParseNotice, a_one_megabyte_string_is_refused_without_crashing) {
  const std::string mb(1 << 20, 'a');
  EXPECT_TRUE(Rejected(mb));
  EXPECT_TRUE(Rejected("\"" + mb + "\""));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":")" + mb + "\"}"));
  EXPECT_TRUE(Rejected(R"({"sc":1,"op":"u","r":5,"x":1,"k":"a","val":")" + mb));
}

TEST(ParseNotice, the_reason_is_overwritten_and_says_what_is_wrong) {
  std::string why = "stale";
  EXPECT_FALSE(parse_notice("garbage", &why));
  EXPECT_NE(why, "stale");
  std::string why_key;
  EXPECT_FALSE(parse_notice(R"({"sc":1,"op":"u","r":5,"x":1})", &why_key));
  EXPECT_NE(why_key.find("key"), std::string::npos) << why_key;
  std::string why_rev;
  EXPECT_FALSE(parse_notice(R"({"sc":1,"op":"u","r":0,"x":1,"k":"a"})", &why_rev));
  EXPECT_NE(why_rev.find("revision"), std::string::npos) << why_rev;
}

TEST(ParseNotice, an_inline_value_nested_deeper_than_set_writes_is_left_to_the_table) {
  const std::string deep =
      std::string(kMaxValueDepth + 1, '[') + std::string(kMaxValueDepth + 1, ']');
  auto n = Parse(R"({"sc":1,"op":"u","r":3,"x":4,"k":"deep","val":")" + deep + "\"}");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->key, "deep");
  EXPECT_FALSE(n->value_text.has_value());  // Read by key from the table instead.
  const std::string ok = std::string(kMaxValueDepth, '[') + std::string(kMaxValueDepth, ']');
  auto m = Parse(R"({"sc":1,"op":"u","r":3,"x":4,"k":"ok","val":")" + ok + "\"}");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value_text, std::optional<std::string>(ok));
}

}  // namespace
}  // namespace syncconfig::internal
