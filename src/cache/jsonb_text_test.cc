// jsonb_text without a server: the rules of jsonb_text.h, each spelled out. The comparison with a
// real PostgreSQL is tests/jsonb_text_test.cc.
#include "cache/jsonb_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace syncconfig::internal {
namespace {

using nlohmann::json;

std::string of_text(const std::string& text) { return jsonb_text(json::parse(text)); }

TEST(JsonbText, containers_use_jsonb_spacing_and_empty_ones_print_bare) {
  EXPECT_EQ(of_text(R"({"a":1,"bb":[1,2]})"), R"({"a": 1, "bb": [1, 2]})");
  EXPECT_EQ(of_text("{}"), "{}");
  EXPECT_EQ(of_text("[]"), "[]");
  EXPECT_EQ(of_text(R"([{},[],{"x":[]}])"), R"([{}, [], {"x": []}])");
}

TEST(JsonbText, object_keys_come_shorter_first_then_bytewise) {
  EXPECT_EQ(of_text(R"({"ccc":3,"bb":2,"a":1,"ab":4,"B":5})"),
            R"({"B": 5, "a": 1, "ab": 4, "bb": 2, "ccc": 3})");
  // Bytes compare unsigned: a 2-byte UTF-8 key after every 2-byte ASCII key.
  EXPECT_EQ(of_text(R"({"é":1,"zz":2,"~~":3})"), R"({"zz": 2, "~~": 3, "é": 1})");
  // Control characters sort by their byte, before '"' and '\'.
  EXPECT_EQ(of_text(R"({"\\":1,"\"":2,"\n":3})"), R"({"\n": 3, "\"": 2, "\\": 1})");
}

TEST(JsonbText, nested_objects_are_ordered_at_every_level) {
  EXPECT_EQ(of_text(R"({"outer":{"zz":[1,{"yy":null,"x":true}],"a":false},"b":0})"),
            R"({"b": 0, "outer": {"a": false, "zz": [1, {"x": true, "yy": null}]}})");
}

TEST(JsonbText, strings_are_escaped_as_escape_json_does) {
  EXPECT_EQ(jsonb_text(json("\"\\\b\f\n\r\t")), R"("\"\\\b\f\n\r\t")");
  EXPECT_EQ(jsonb_text(json("a\x01z\x1f\x7f/")), "\"a\\u0001z\\u001f\x7f/\"");
  EXPECT_EQ(jsonb_text(json("\x0b\x1b")), R"("\u000b\u001b")");
  EXPECT_EQ(jsonb_text(json("héllo 日本 😀")), "\"héllo 日本 😀\"");
  EXPECT_EQ(jsonb_text(json(std::string("a\0b", 3))), R"("a\u0000b")");
  // Invalid UTF-8 is copied, not refused: this never throws.
  EXPECT_EQ(jsonb_text(json(std::string("\xff\xc3"))), "\"\xff\xc3\"");
}

TEST(JsonbText, strings_match_nlohmanns_dump_for_valid_utf8) {
  std::string all;
  for (int c = 1; c < 0x80; ++c) all += static_cast<char>(c);
  all += "é€😀";
  EXPECT_EQ(jsonb_text(json(all)), json(all).dump());
}

TEST(JsonbText, integers_print_in_decimal) {
  EXPECT_EQ(jsonb_text(json(0)), "0");
  EXPECT_EQ(jsonb_text(json(-17)), "-17");
  EXPECT_EQ(jsonb_text(json(std::numeric_limits<int64_t>::min())), "-9223372036854775808");
  EXPECT_EQ(jsonb_text(json(std::numeric_limits<int64_t>::max())), "9223372036854775807");
  EXPECT_EQ(jsonb_text(json(std::numeric_limits<uint64_t>::max())), "18446744073709551615");
  EXPECT_EQ(of_text("-0"), "0");
}

TEST(JsonbText, doubles_print_in_plain_decimal_with_the_scale_dump_gives) {
  EXPECT_EQ(jsonb_text(json(0.1)), "0.1");
  EXPECT_EQ(jsonb_text(json(1.0)), "1.0");
  EXPECT_EQ(jsonb_text(json(-1.0)), "-1.0");
  EXPECT_EQ(jsonb_text(json(0.0)), "0.0");
  EXPECT_EQ(jsonb_text(json(-0.0)), "0.0");  // numeric has no negative zero
  EXPECT_EQ(jsonb_text(json(-2.5)), "-2.5");
  EXPECT_EQ(jsonb_text(json(123456789012345.0)), "123456789012345.0");
  EXPECT_EQ(jsonb_text(json(1e15)), "1000000000000000");  // dump() prints 1e+15
  EXPECT_EQ(jsonb_text(json(1e20)), "100000000000000000000");
  EXPECT_EQ(jsonb_text(json(1.5e-7)), "0.00000015");
  EXPECT_EQ(jsonb_text(json(0.0001)), "0.0001");
  EXPECT_EQ(jsonb_text(json(-1.25e-5)), "-0.0000125");
  EXPECT_EQ(jsonb_text(json(1e300)), "1" + std::string(300, '0'));
  EXPECT_EQ(jsonb_text(json(1e-300)), "0." + std::string(299, '0') + "1");
  EXPECT_EQ(jsonb_text(json(2.5e20)), "250000000000000000000");
  EXPECT_EQ(jsonb_text(json(0.46628)), "0.46627999999999997");  // dump()'s digits
}

TEST(JsonbText, nan_and_infinity_print_null_as_dump_does) {
  EXPECT_EQ(jsonb_text(json(std::nan(""))), "null");
  EXPECT_EQ(jsonb_text(json(std::numeric_limits<double>::infinity())), "null");
  EXPECT_EQ(jsonb_text(json::array({-std::numeric_limits<double>::infinity()})), "[null]");
}

TEST(JsonbText, literals_and_top_level_scalars_print_alone) {
  EXPECT_EQ(jsonb_text(json(true)), "true");
  EXPECT_EQ(jsonb_text(json(false)), "false");
  EXPECT_EQ(jsonb_text(json(nullptr)), "null");
  EXPECT_EQ(jsonb_text(json("s")), R"("s")");
}

TEST(JsonbText, a_value_nested_a_hundred_thousand_deep_does_not_overflow_the_stack) {
  constexpr int kDepth = 100000;
  json v = json::array();
  for (int i = 0; i < kDepth; ++i) v = json::array({std::move(v)});
  const std::string text = jsonb_text(v);
  EXPECT_EQ(text, std::string(kDepth + 1, '[') + std::string(kDepth + 1, ']'));
}

TEST(JsonbText, append_adds_to_what_is_there) {
  std::string out = "x=";
  append_jsonb_text(out, json::parse(R"({"b":1,"a":[true]})"));
  EXPECT_EQ(out, R"(x={"a": [true], "b": 1})");
}

}  // namespace
}  // namespace syncconfig::internal
