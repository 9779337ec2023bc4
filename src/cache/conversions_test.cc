#include "cache/conversions.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace syncconfig::internal {
namespace {

using nlohmann::json;

// A JSON string value (not parsed JSON text).
json str(const char* s) { return json(std::string(s)); }

// --- get_int -------------------------------------------------------------------------------

TEST(ToInt, integers_convert_unchanged) {
  EXPECT_EQ(to_int(json(42)), 42);
  EXPECT_EQ(to_int(json(-5)), -5);
  EXPECT_EQ(to_int(json(0)), 0);
  EXPECT_EQ(to_int(json(std::numeric_limits<int64_t>::max())), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(to_int(json(std::numeric_limits<int64_t>::min())), std::numeric_limits<int64_t>::min());
}

TEST(ToInt, unsigned_values_that_fit_int64_convert) {
  EXPECT_EQ(to_int(json(uint64_t{7})), 7);
  EXPECT_EQ(to_int(json(static_cast<uint64_t>(INT64_MAX))), INT64_MAX);
  // As nlohmann parses a positive literal: number_unsigned.
  EXPECT_EQ(to_int(json::parse("9223372036854775807")), INT64_MAX);
}

TEST(ToInt, unsigned_values_above_int64_max_do_not_convert) {
  EXPECT_EQ(to_int(json(uint64_t{9223372036854775808ULL})), std::nullopt);
  EXPECT_EQ(to_int(json(std::numeric_limits<uint64_t>::max())), std::nullopt);
  EXPECT_EQ(to_int(json::parse("9223372036854775808")), std::nullopt);
}

TEST(ToInt, floats_with_an_integral_value_convert) {
  EXPECT_EQ(to_int(json(42.0)), 42);
  EXPECT_EQ(to_int(json(-3.0)), -3);
  EXPECT_EQ(to_int(json(-0.0)), 0);
  EXPECT_EQ(to_int(json::parse("42.0")), 42);
  EXPECT_EQ(to_int(json::parse("1e3")), 1000);
  // -2^63 is exactly representable and in range.
  EXPECT_EQ(to_int(json(-9223372036854775808.0)), std::numeric_limits<int64_t>::min());
}

TEST(ToInt, floats_with_a_fraction_do_not_convert) {
  EXPECT_EQ(to_int(json(42.5)), std::nullopt);
  EXPECT_EQ(to_int(json(-0.1)), std::nullopt);
  EXPECT_EQ(to_int(json(1e-300)), std::nullopt);
}

TEST(ToInt, floats_outside_the_int64_range_do_not_convert) {
  EXPECT_EQ(to_int(json(1e300)), std::nullopt);
  EXPECT_EQ(to_int(json(-1e300)), std::nullopt);
  EXPECT_EQ(to_int(json(9.3e18)), std::nullopt);
  EXPECT_EQ(to_int(json(-9.3e18)), std::nullopt);
  // 2^63 itself is one past INT64_MAX.
  EXPECT_EQ(to_int(json(9223372036854775808.0)), std::nullopt);
}

TEST(ToInt, non_finite_floats_do_not_convert) {
  EXPECT_EQ(to_int(json(std::numeric_limits<double>::quiet_NaN())), std::nullopt);
  EXPECT_EQ(to_int(json(std::numeric_limits<double>::infinity())), std::nullopt);
  EXPECT_EQ(to_int(json(-std::numeric_limits<double>::infinity())), std::nullopt);
}

TEST(ToInt, strings_holding_exactly_an_integer_convert) {
  EXPECT_EQ(to_int(str("123")), 123);
  EXPECT_EQ(to_int(str("-5")), -5);
  EXPECT_EQ(to_int(str("0")), 0);
  EXPECT_EQ(to_int(str("9223372036854775807")), INT64_MAX);
  EXPECT_EQ(to_int(str("-9223372036854775808")), INT64_MIN);
}

TEST(ToInt, strings_holding_an_integral_float_convert) {
  EXPECT_EQ(to_int(str("42.0")), 42);
  EXPECT_EQ(to_int(str("1e3")), 1000);
  EXPECT_EQ(to_int(str("-2.0")), -2);
}

TEST(ToInt, strings_that_are_not_exactly_a_number_do_not_convert) {
  for (const char* s : {"12abc", " 7", "7 ", "", " ", "abc", "4 2", "42.5", "1e300", "9.3e18",
                        "nan", "inf", "-inf", "0x10", "--5", "1,000"}) {
    EXPECT_EQ(to_int(str(s)), std::nullopt) << "\"" << s << "\"";
  }
}

TEST(ToInt, strings_holding_an_integer_above_int64_max_do_not_convert) {
  EXPECT_EQ(to_int(str("9223372036854775808")), std::nullopt);
  EXPECT_EQ(to_int(str("99999999999999999999")), std::nullopt);
}

TEST(ToInt, strings_holding_an_integer_below_int64_min_do_not_convert) {
  EXPECT_EQ(to_int(str("-9223372036854775809")), std::nullopt);
  EXPECT_EQ(to_int(str("-9223372036854776000")), std::nullopt);
  EXPECT_EQ(to_int(str("-99999999999999999999")), std::nullopt);
}

TEST(ToInt, strings_holding_a_large_integral_float_keep_their_exact_value) {
  EXPECT_EQ(to_int(str("9007199254740993.0")), int64_t{9007199254740993});
}

TEST(ToInt, other_types_do_not_convert) {
  EXPECT_EQ(to_int(json(nullptr)), std::nullopt);
  EXPECT_EQ(to_int(json(true)), std::nullopt);
  EXPECT_EQ(to_int(json(false)), std::nullopt);
  EXPECT_EQ(to_int(json::array({1})), std::nullopt);
  EXPECT_EQ(to_int(json::object({{"a", 1}})), std::nullopt);
}

// --- get_double ----------------------------------------------------------------------------

TEST(ToDouble, any_number_converts) {
  EXPECT_EQ(to_double(json(2.5)), 2.5);
  EXPECT_EQ(to_double(json(42)), 42.0);
  EXPECT_EQ(to_double(json(-7)), -7.0);
  EXPECT_EQ(to_double(json(uint64_t{18446744073709551615ULL})), 18446744073709551615.0);
  EXPECT_EQ(to_double(json(1e300)), 1e300);
}

TEST(ToDouble, strings_holding_exactly_a_finite_number_convert) {
  EXPECT_EQ(to_double(str("2.5")), 2.5);
  EXPECT_EQ(to_double(str("-2.5")), -2.5);
  EXPECT_EQ(to_double(str("42")), 42.0);
  EXPECT_EQ(to_double(str("1e3")), 1000.0);
  EXPECT_EQ(to_double(str("1e300")), 1e300);
}

TEST(ToDouble, strings_holding_nan_or_infinity_do_not_convert) {
  for (const char* s : {"nan", "NaN", "inf", "-inf", "infinity", "Infinity", "1e400"}) {
    EXPECT_EQ(to_double(str(s)), std::nullopt) << "\"" << s << "\"";
  }
}

TEST(ToDouble, strings_that_are_not_exactly_a_number_do_not_convert) {
  for (const char* s : {"", " 2.5", "2.5 ", "2.5x", "abc", "2,5", "."}) {
    EXPECT_EQ(to_double(str(s)), std::nullopt) << "\"" << s << "\"";
  }
}

TEST(ToDouble, other_types_do_not_convert) {
  EXPECT_EQ(to_double(json(nullptr)), std::nullopt);
  EXPECT_EQ(to_double(json(true)), std::nullopt);
  EXPECT_EQ(to_double(json::array({2.5})), std::nullopt);
  EXPECT_EQ(to_double(json::object()), std::nullopt);
}

// --- get_bool ------------------------------------------------------------------------------

TEST(ToBool, json_booleans_convert) {
  EXPECT_EQ(to_bool(json(true)), true);
  EXPECT_EQ(to_bool(json(false)), false);
}

TEST(ToBool, the_integers_one_and_zero_convert) {
  EXPECT_EQ(to_bool(json(1)), true);
  EXPECT_EQ(to_bool(json(0)), false);
  EXPECT_EQ(to_bool(json::parse("1")), true);  // number_unsigned, as parsed
  EXPECT_EQ(to_bool(json::parse("0")), false);
}

TEST(ToBool, other_integers_do_not_convert) {
  EXPECT_EQ(to_bool(json(2)), std::nullopt);
  EXPECT_EQ(to_bool(json(-1)), std::nullopt);
  EXPECT_EQ(to_bool(json(std::numeric_limits<uint64_t>::max())), std::nullopt);
}

TEST(ToBool, floats_do_not_convert) {
  EXPECT_EQ(to_bool(json(1.0)), std::nullopt);
  EXPECT_EQ(to_bool(json(0.0)), std::nullopt);
  EXPECT_EQ(to_bool(json(0.5)), std::nullopt);
}

TEST(ToBool, true_strings_convert_in_any_case) {
  for (const char* s :
       {"true", "TRUE", "True", "tRuE", "1", "yes", "YES", "Yes", "on", "ON", "On"}) {
    EXPECT_EQ(to_bool(str(s)), true) << "\"" << s << "\"";
  }
}

TEST(ToBool, false_strings_convert_in_any_case) {
  for (const char* s :
       {"false", "FALSE", "False", "fAlSe", "0", "no", "NO", "No", "off", "OFF", "Off"}) {
    EXPECT_EQ(to_bool(str(s)), false) << "\"" << s << "\"";
  }
}

TEST(ToBool, other_strings_do_not_convert) {
  for (const char* s :
       {"", " true", "true ", "2", "-1", "y", "n", "t", "f", "1.0", "truex", "enabled"}) {
    EXPECT_EQ(to_bool(str(s)), std::nullopt) << "\"" << s << "\"";
  }
}

TEST(ToBool, other_types_do_not_convert) {
  EXPECT_EQ(to_bool(json(nullptr)), std::nullopt);
  EXPECT_EQ(to_bool(json::array({true})), std::nullopt);
  EXPECT_EQ(to_bool(json::object({{"a", true}})), std::nullopt);
}

// --- get_string ----------------------------------------------------------------------------

TEST(ToStringValue, strings_convert_unchanged) {
  EXPECT_EQ(to_string_value(str("hello")), "hello");
  EXPECT_EQ(to_string_value(str("")), "");
  EXPECT_EQ(to_string_value(str("123")), "123");
  EXPECT_EQ(to_string_value(json(std::string("a\0b", 3))), std::string("a\0b", 3));
}

TEST(ToStringValue, non_strings_do_not_convert) {
  EXPECT_EQ(to_string_value(json(42)), std::nullopt);
  EXPECT_EQ(to_string_value(json(2.5)), std::nullopt);
  EXPECT_EQ(to_string_value(json(true)), std::nullopt);
  EXPECT_EQ(to_string_value(json(nullptr)), std::nullopt);
  EXPECT_EQ(to_string_value(json::array({"a"})), std::nullopt);
  EXPECT_EQ(to_string_value(json::object({{"a", "b"}})), std::nullopt);
}

}  // namespace
}  // namespace syncconfig::internal
