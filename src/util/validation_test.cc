#include "util/validation.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "syncconfig/error.h"

namespace syncconfig::internal {
namespace {

using nlohmann::json;

constexpr std::size_t kBig = 1 << 20;

::testing::AssertionResult HasSubstr(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// Runs f, expects it to throw syncconfig::Error with kInvalidArgument and returns its message.
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_FALSE(e.retryable());
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than syncconfig::Error: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

// --- validate_key --------------------------------------------------------------------------

TEST(QuoteForMessage, escapes_control_characters_and_replaces_invalid_utf8_without_throwing) {
  EXPECT_EQ(quote_for_message("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(quote_for_message("line\nbreak\x1b[2J"), "\"line\\nbreak\\u001b[2J\"");
  EXPECT_EQ(quote_for_message("k\xff"), "\"k\xef\xbf\xbd\"");  // U+FFFD
  EXPECT_EQ(quote_for_message(std::string("\0x", 2)), "\"\\u0000x\"");
  EXPECT_EQ(quote_for_message("\xc3\xbc"), "\"\xc3\xbc\"");  // Valid UTF-8 kept as is.
}

TEST(ValidateKey, an_ordinary_key_is_accepted) {
  EXPECT_NO_THROW(validate_key("a"));
  EXPECT_NO_THROW(validate_key("feature.flags/new-ui_enabled"));
  EXPECT_NO_THROW(validate_key("with space and \"quotes\" and 'single' and \\"));
}

TEST(ValidateKey, an_empty_key_is_refused) {
  EXPECT_TRUE(HasSubstr(invalid_argument_message([] { validate_key(""); }), "empty"));
}

TEST(ValidateKey, a_key_of_255_bytes_is_accepted_and_256_is_refused) {
  EXPECT_NO_THROW(validate_key(std::string(255, 'k')));
  std::string msg = invalid_argument_message([] { validate_key(std::string(256, 'k')); });
  EXPECT_TRUE(HasSubstr(msg, "256"));
  EXPECT_TRUE(HasSubstr(msg, "255"));
}

TEST(ValidateKey, the_limit_counts_bytes_not_characters) {
  // 127 two-byte characters = 254 bytes: fine; 128 = 256 bytes: too long.
  std::string ok, too_long;
  for (int i = 0; i < 127; ++i) ok += "\xC3\xA9";
  too_long = ok + "\xC3\xA9";
  EXPECT_NO_THROW(validate_key(ok));
  invalid_argument_message([&] { validate_key(too_long); });
}

TEST(ValidateKey, a_key_containing_nul_is_refused) {
  EXPECT_TRUE(HasSubstr(invalid_argument_message([] { validate_key(std::string_view("a\0b", 3)); }),
                        "NUL"));
  invalid_argument_message([] { validate_key(std::string_view("\0", 1)); });
  invalid_argument_message([] { validate_key(std::string_view("abc\0", 4)); });
}

TEST(ValidateKey, valid_multi_byte_utf8_is_accepted) {
  EXPECT_NO_THROW(validate_key("\xC3\xA9"));                  // é (2 bytes)
  EXPECT_NO_THROW(validate_key("\xE6\x97\xA5\xE6\x9C\xAC"));  // 日本 (3 bytes each)
  EXPECT_NO_THROW(validate_key("\xF0\x9F\x98\x80"));          // U+1F600 emoji (4 bytes)
  EXPECT_NO_THROW(validate_key("\xF4\x8F\xBF\xBF"));          // U+10FFFF, the last code point
  EXPECT_NO_THROW(validate_key("\xEF\xBF\xBF"));              // U+FFFF
  EXPECT_NO_THROW(validate_key("\xED\x9F\xBF"));              // U+D7FF, just below surrogates
  EXPECT_NO_THROW(validate_key("\xEE\x80\x80"));              // U+E000, just above surrogates
  EXPECT_NO_THROW(validate_key("caf\xC3\xA9-\xF0\x9F\x8E\x89"));
}

struct InvalidUtf8 {
  const char* what;
  std::string bytes;
};

TEST(ValidateKey, invalid_utf8_is_refused) {
  const InvalidUtf8 cases[] = {
      {"lone continuation byte", "\x80"},
      {"lone continuation byte after ASCII", "ab\xBF"},
      {"truncated 2-byte sequence", "\xC3"},
      {"truncated 3-byte sequence", "\xE6\x97"},
      {"truncated 4-byte sequence", "\xF0\x9F\x98"},
      {"truncated sequence followed by ASCII", "\xE6\x97x"},
      {"overlong '/'", "\xC0\xAF"},
      {"overlong NUL", "\xC0\x80"},
      {"overlong 3-byte", "\xE0\x80\xAF"},
      {"overlong 4-byte", "\xF0\x80\x80\xAF"},
      {"high surrogate", "\xED\xA0\x80"},
      {"low surrogate", "\xED\xBF\xBF"},
      {"above U+10FFFF", "\xF4\x90\x80\x80"},
      {"F5 lead byte", "\xF5\x80\x80\x80"},
      {"FE byte", "\xFE"},
      {"FF byte", "\xFF"},
      {"Latin-1 'é'", "caf\xE9"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(HasSubstr(invalid_argument_message([&] { validate_key(c.bytes); }), "UTF-8"));
    EXPECT_FALSE(is_valid_utf8(c.bytes));
  }
}

TEST(IsValidUtf8, ascii_and_well_formed_sequences_are_valid) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("\xC2\x80"));          // U+0080, smallest 2-byte
  EXPECT_TRUE(is_valid_utf8("\xE0\xA0\x80"));      // U+0800, smallest 3-byte
  EXPECT_TRUE(is_valid_utf8("\xF0\x90\x80\x80"));  // U+10000, smallest 4-byte
}

// --- validate_identifier -------------------------------------------------------------------

TEST(ValidateIdentifier, lowercase_letters_digits_and_underscores_are_accepted) {
  EXPECT_NO_THROW(validate_identifier("table", "config", 63));
  EXPECT_NO_THROW(validate_identifier("table", "_private", 63));
  EXPECT_NO_THROW(validate_identifier("table", "app_config_2", 63));
  EXPECT_NO_THROW(validate_identifier("table", "a", 63));
}

TEST(ValidateIdentifier, sql_injection_strings_are_refused) {
  for (std::string_view name : {"x\"; DROP TABLE y; --", "x'; DROP TABLE y; --", "a b", "a-b",
                                "a.b", "a;b", "a\"b", "config$", "tab\tle", "public.config"}) {
    SCOPED_TRACE(std::string(name));
    invalid_argument_message([&] { validate_identifier("table", name, 63); });
  }
}

TEST(ValidateIdentifier, uppercase_letters_are_refused) {
  invalid_argument_message([] { validate_identifier("table", "Config", 63); });
  invalid_argument_message([] { validate_identifier("table", "CONFIG", 63); });
  invalid_argument_message([] { validate_identifier("table", "conFig", 63); });
}

TEST(ValidateIdentifier, a_leading_digit_is_refused) {
  invalid_argument_message([] { validate_identifier("table", "1config", 63); });
  invalid_argument_message([] { validate_identifier("table", "9", 63); });
}

TEST(ValidateIdentifier, an_empty_name_is_refused) {
  invalid_argument_message([] { validate_identifier("table", "", 63); });
}

TEST(ValidateIdentifier, names_up_to_the_length_limit_are_accepted_and_longer_ones_refused) {
  EXPECT_NO_THROW(validate_identifier("table", std::string(63, 'a'), 63));
  std::string msg =
      invalid_argument_message([] { validate_identifier("table", std::string(64, 'a'), 63); });
  EXPECT_TRUE(HasSubstr(msg, "63"));
}

TEST(ValidateIdentifier, non_ascii_and_nul_bytes_are_refused) {
  invalid_argument_message([] { validate_identifier("table", "caf\xC3\xA9", 63); });
  invalid_argument_message([] { validate_identifier("table", std::string_view("a\0b", 3), 63); });
  invalid_argument_message([] { validate_identifier("table", "\xFF", 63); });
}

TEST(ValidateIdentifier, the_error_message_names_the_field) {
  EXPECT_TRUE(
      HasSubstr(invalid_argument_message([] { validate_identifier("Options::table", "Bad", 63); }),
                "Options::table"));
  EXPECT_TRUE(HasSubstr(invalid_argument_message([] { validate_identifier("schema", "1x", 63); }),
                        "schema"));
}

TEST(ValidateIdentifier, the_error_message_quotes_the_bad_name_escaped) {
  std::string msg =
      invalid_argument_message([] { validate_identifier("channel", "x\"; DROP TABLE y; --", 63); });
  EXPECT_TRUE(HasSubstr(msg, R"("x\"; DROP TABLE y; --")"));
  // Arbitrary bytes do not leak raw into the message.
  std::string raw = invalid_argument_message(
      [] { validate_identifier("channel", std::string_view("a\0\n\xFF", 4), 63); });
  EXPECT_EQ(raw.find('\0'), std::string::npos);
  EXPECT_EQ(raw.find('\n'), std::string::npos);
  EXPECT_EQ(raw.find('\xFF'), std::string::npos);
}

// --- serialize_value -----------------------------------------------------------------------

TEST(SerializeValue, ordinary_values_serialize_to_compact_json) {
  EXPECT_EQ(serialize_value("k", json(42), kBig), "42");
  EXPECT_EQ(serialize_value("k", json("s"), kBig), "\"s\"");
  EXPECT_EQ(serialize_value("k", json(nullptr), kBig), "null");
  EXPECT_EQ(serialize_value("k", json::parse(R"({"a": [1, 2.5, true, null]})"), kBig),
            R"({"a":[1,2.5,true,null]})");
  EXPECT_EQ(serialize_value("k", json("caf\xC3\xA9"), kBig), "\"caf\xC3\xA9\"");
}

TEST(SerializeValue, nan_and_infinity_are_refused) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double d : {nan, inf, -inf}) {
    SCOPED_TRACE(d);
    EXPECT_TRUE(HasSubstr(
        invalid_argument_message([&] { serialize_value("my.key", json(d), kBig); }), "my.key"));
  }
}

TEST(SerializeValue, nan_nested_deep_in_arrays_and_objects_is_refused) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  json v = json::object(
      {{"a", 1},
       {"b", json::array({1, 2, json::object({{"c", json::array({json::array({nan})})}})})}});
  EXPECT_TRUE(HasSubstr(invalid_argument_message([&] { serialize_value("k", v, kBig); }), "NaN"));

  json last_in_array = json::array({1, 2, 3, -std::numeric_limits<double>::infinity()});
  invalid_argument_message([&] { serialize_value("k", last_in_array, kBig); });

  json deep = nan;
  for (int i = 0; i < 50; ++i)
    deep = i % 2 ? json::object({{"x", std::move(deep)}}) : json::array({1, std::move(deep)});
  invalid_argument_message([&] { serialize_value("k", deep, kBig); });
}

TEST(SerializeValue, a_discarded_value_is_refused) {
  json discarded = json::parse("{not json", nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(discarded.is_discarded());
  invalid_argument_message([&] { serialize_value("k", discarded, kBig); });
}

// Builds [[[...[1]...]]] nested `depth` levels deep (without recursion).
json nested_arrays(int depth) {
  json v = 1;
  for (int i = 0; i < depth; ++i) {
    json wrapper = json::array();
    wrapper.push_back(std::move(v));
    v = std::move(wrapper);
  }
  return v;
}

TEST(SerializeValue, deeply_nested_values_serialize_or_are_refused_without_crashing) {
  for (int depth : {10000, 100000}) {
    SCOPED_TRACE(depth);
    json v = nested_arrays(depth);
    try {
      std::string text = serialize_value("k", v, std::size_t{1} << 30);
      EXPECT_EQ(text, std::string(depth, '[') + "1" + std::string(depth, ']'));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
}

TEST(SerializeValue,
     a_hundred_thousand_levels_with_nan_at_the_bottom_are_refused_without_crashing) {
  json bad = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < 100000; ++i) {
    json wrapper = json::object();
    wrapper["a"] = std::move(bad);
    bad = std::move(wrapper);
  }
  EXPECT_TRUE(HasSubstr(invalid_argument_message([&] { serialize_value("k", bad, kBig); }),
                        "nested deeper than 1000 levels"));
}

TEST(SerializeValue, nan_below_the_depth_limit_is_found) {
  json bad = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < 900; ++i) {
    json wrapper = json::array();
    wrapper.push_back(std::move(bad));
    bad = std::move(wrapper);
  }
  EXPECT_TRUE(HasSubstr(invalid_argument_message([&] { serialize_value("k", bad, kBig); }), "NaN"));
}

TEST(SerializeValue, a_thousand_levels_are_accepted_and_one_more_is_refused) {
  EXPECT_EQ(serialize_value("k", nested_arrays(999), kBig),
            std::string(999, '[') + "1" + std::string(999, ']'));
  EXPECT_TRUE(
      HasSubstr(invalid_argument_message([&] { serialize_value("k", nested_arrays(1000), kBig); }),
                "nested deeper"));
}

TEST(SerializeValue, text_at_the_size_limit_is_accepted_and_one_byte_more_is_refused) {
  json v = std::string(8, 'x');  // "xxxxxxxx": 10 bytes of JSON
  EXPECT_EQ(serialize_value("k", v, 10), "\"xxxxxxxx\"");
  std::string msg = invalid_argument_message([&] { serialize_value("k", v, 9); });
  EXPECT_TRUE(HasSubstr(msg, "max_value_bytes"));
  EXPECT_TRUE(HasSubstr(msg, "10"));
  EXPECT_TRUE(HasSubstr(msg, " 9"));
}

TEST(SerializeValue, the_size_limit_counts_the_serialized_text) {
  // Escaping grows the text: 5 control characters become 30 bytes plus quotes.
  json v = std::string(5, '\x01');
  EXPECT_EQ(serialize_value("k", v, 32).size(), 32u);
  invalid_argument_message([&] { serialize_value("k", v, 31); });
}

TEST(SerializeValue, invalid_utf8_inside_a_string_is_refused) {
  for (const char* bytes : {"\xFF", "caf\xE9", "\xC0\xAF", "\xED\xA0\x80", "\xE6\x97"}) {
    SCOPED_TRACE(bytes);
    invalid_argument_message([&] { serialize_value("k", json(std::string(bytes)), kBig); });
    invalid_argument_message([&] {
      serialize_value("k", json::object({{"a", json::array({std::string(bytes)})}}), kBig);
    });
  }
}

TEST(SerializeValue, invalid_utf8_in_an_object_member_name_is_refused) {
  json v = json::object({{std::string("\xFF"), 1}});
  invalid_argument_message([&] { serialize_value("k", v, kBig); });
}

TEST(SerializeValue, the_error_message_names_the_key_escaped) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::string msg = invalid_argument_message([&] { serialize_value("a\"b", json(nan), kBig); });
  EXPECT_TRUE(HasSubstr(msg, R"("a\"b")"));
}

// Regression (validation_fuzzer, fuzz/regressions/validation_fuzzer/invalid_utf8_key_and_infinity):
// the message quoted the key with nlohmann's strict dump(), so a key that is not UTF-8 made it
// throw nlohmann::json::type_error instead of the Error. Store::set checks the key first, but
// the HTTP service checks bodies with serialize_value too.
TEST(SerializeValue, a_key_that_is_not_utf8_is_quoted_in_the_message_without_throwing) {
  const double inf = std::numeric_limits<double>::infinity();
  for (const json& v : {json(inf), json(std::string("\xFF")), nested_arrays(kMaxValueDepth + 1)}) {
    std::string msg = invalid_argument_message([&] { serialize_value("bad\xFF", v, kBig); });
    EXPECT_TRUE(HasSubstr(msg, "bad")) << msg;
  }
  invalid_argument_message([&] { serialize_value("bad\xFF", json("1234"), 2); });
}

}  // namespace
}  // namespace syncconfig::internal
