#include "cache/entry.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cache/conversions.h"

namespace syncconfig::internal {
namespace {

using nlohmann::json;

// Texts as PostgreSQL's jsonb prints them, plus escapes, unicode and number edge cases.
const std::vector<std::string> kTexts = {"null",
                                         "true",
                                         "false",
                                         "0",
                                         "-0",
                                         "42",
                                         "-17",
                                         "9223372036854775807",
                                         "9223372036854775808",
                                         "-9223372036854775808",
                                         "1.5",
                                         "2.0",
                                         "1e3",
                                         "1.0E+20",
                                         R"("")",
                                         R"("plain")",
                                         R"("42")",
                                         R"("42.0")",
                                         R"("yes")",
                                         R"("with \"quote\"")",
                                         R"("back\\slash")",
                                         R"("tab\tnew\nline")",
                                         R"("\u00e9t\u00e9")",
                                         "\"\xc3\xa9t\xc3\xa9\"",
                                         R"({"a": 1, "b": [true, null]})",
                                         "[]",
                                         "{}",
                                         R"([1, "two", {"three": 3}])"};

TEST(Entry, value_read_back_equals_what_parsing_the_text_gives) {
  for (const std::string& text : kTexts) {
    EntryPtr e = Entry::make("k", text, 7);
    ASSERT_TRUE(e) << text;
    EXPECT_EQ(e->to_json(), json::parse(text)) << text;
    EXPECT_EQ(e->key(), "k");
    EXPECT_EQ(e->revision, 7);
    EXPECT_TRUE(e->live());
  }
}

TEST(Entry, typed_conversions_agree_with_the_json_rules) {
  for (const std::string& text : kTexts) {
    EntryPtr e = Entry::make("k", text, 1);
    json v = json::parse(text);
    EXPECT_EQ(to_int(*e), to_int(v)) << text;
    EXPECT_EQ(to_bool(*e), to_bool(v)) << text;
    EXPECT_EQ(to_string_value(*e), to_string_value(v)) << text;
    std::optional<double> d = to_double(*e), dv = to_double(v);
    ASSERT_EQ(d.has_value(), dv.has_value()) << text;
    if (d) EXPECT_EQ(*d, *dv) << text;
  }
}

TEST(Entry, text_that_is_not_json_is_refused) {
  for (std::string bad : {"", "   ", "nul", "tru", "01x", "{", "[1,", R"("open)", R"("a"b")",
                          "\"ctrl\x01\"", R"("bad \q escape")", R"({"a":1} x)"}) {
    EXPECT_FALSE(Entry::make("k", bad, 1)) << bad;
  }
}

TEST(Entry, a_scalar_is_accepted_exactly_when_the_json_parser_accepts_it) {
  // Numbers, true, false and null are checked without the parser; the answers must not differ.
  for (const std::string& text : std::vector<std::string>{"0",
                                                          "-0",
                                                          "7",
                                                          "-12",
                                                          "123456789012345678901234567890",
                                                          "1.5",
                                                          "-0.25",
                                                          "1e5",
                                                          "1E+5",
                                                          "2e-3",
                                                          "1e308",
                                                          "1e309",
                                                          "-1e999",
                                                          "1e-400",
                                                          " 42 ",
                                                          "\t\n42\r",
                                                          "true",
                                                          "false",
                                                          "null",
                                                          " null ",
                                                          "01",
                                                          "-",
                                                          "+1",
                                                          ".5",
                                                          "1.",
                                                          "1.e5",
                                                          "1e",
                                                          "1e+",
                                                          "--1",
                                                          "0x10",
                                                          "1 2",
                                                          "1,",
                                                          "truex",
                                                          "nulls",
                                                          "True",
                                                          "NaN",
                                                          "Infinity",
                                                          "-Infinity",
                                                          "\x31",
                                                          std::string(400, '9'),
                                                          std::string(320, '1') + ".5"}) {
    json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    EntryPtr e = Entry::make("k", text, 1);
    EXPECT_EQ(static_cast<bool>(e), !parsed.is_discarded()) << text;
    if (e) EXPECT_EQ(e->to_json(), parsed) << text;
  }
  // Where the parser is lenient the cache is not: it stops at a NUL byte, and skips a byte order
  // mark. PostgreSQL sends neither.
  for (const std::string& text : {std::string("1\0", 2), std::string("1\0x", 3),
                                  std::string("\xEF\xBB\xBF"
                                              "1")}) {
    EXPECT_FALSE(json::parse(text, nullptr, /*allow_exceptions=*/false).is_discarded());
    EXPECT_FALSE(Entry::make("k", text, 1));
  }
}

TEST(Entry, hash_covers_key_and_value_and_is_zero_for_a_tombstone) {
  EntryPtr a = Entry::make("a", "1", 1), a2 = Entry::make("a", "1", 9),
           b = Entry::make("b", "1", 1), a_two = Entry::make("a", "2", 1);
  EXPECT_TRUE(a->same_value(*a2));
  EXPECT_FALSE(a->same_value(*b));
  EXPECT_FALSE(a->same_value(*a_two));
  EXPECT_EQ(a->hash.md5, hash_entry("a", "1").md5);
  EntryPtr t = Entry::make_tombstone("a", 3);
  EXPECT_FALSE(t->live());
  EXPECT_EQ(t->key(), "a");
  EXPECT_EQ(t->hash.crc, 0u);
  EXPECT_FALSE(t->same_value(*a));
  EXPECT_TRUE(t->to_json().is_null());
}

TEST(Entry, keys_of_any_bytes_are_kept_exactly) {
  std::string key("nul\0byte 'quote' \xe2\x82\xac", 21);
  EntryPtr e = Entry::make(key, R"({"x": 1})", 1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), key);
  EXPECT_EQ(e->container()->at("x"), 1);
}

}  // namespace
}  // namespace syncconfig::internal
