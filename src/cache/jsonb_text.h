// PostgreSQL 15's text of a jsonb value (`SELECT x::jsonb::text`), rebuilt from a parsed
// nlohmann::json.
//
// The cache keeps objects and arrays parsed, not as the text PostgreSQL sent; a snapshot file
// stores jsonb text, so this rebuilds it. The rules are those of JsonbToCString:
//   - objects: keys in jsonb's order (shorter keys first, then bytewise memcmp), printed
//     `{"a": 1, "bb": [1, 2]}` (", " between members, ": " after keys); `{}`; arrays `[1, 2]`,
//     `[]`; true, false, null;
//   - strings: escape_json's escapes: \" \\ \b \f \n \r \t, other bytes below 0x20 as \u00xx
//     (lowercase hex), every other byte as is (UTF-8, '/', 0x7f);
//   - integers (signed and unsigned): decimal;
//   - doubles: the digits nlohmann's dump() prints, as numeric_out prints that text: plain
//     decimal, never an exponent, keeping the text's scale (1e+20 -> 100000000000000000000,
//     1.5e-07 -> 0.00000015, 1.0 -> 1.0; -0.0 -> 0.0, numeric has no negative zero).
// So for every value v that nlohmann can dump, jsonb_text(v) is what PostgreSQL prints for
// `v.dump()::jsonb`, which is how the library writes values (jsonb_text_test checks it against a
// real server). Outside that: NaN and infinities give "null" (as dump() does); a NUL byte in a
// string gives \u0000 (jsonb refuses it); invalid UTF-8 is copied as is (dump() would throw).
//
// Round trip: for PostgreSQL's text P of a value, jsonb_text(nlohmann::json::parse(P)) == P
// except where parsing loses what P says (numbers only, and only inside objects and arrays: the
// cache keeps top-level scalars as their text):
//   - a scale beyond the digits: "2.50", "1.00", "0.10" come back "2.5", "1.0", "0.1". Only the
//     single ".0" of an integral double below 1e15 survives, because dump() prints one
//     ("1000000000000000.0", 1e15, comes back without it);
//   - integers outside [INT64_MIN, UINT64_MAX] become doubles, so they come back only if their
//     digits are a double's dump() digits followed by zeros (100000000000000000000 does;
//     18446744073709551616 comes back 18446744073709552000);
//   - a decimal whose digits are not exactly what dump() prints for the nearest double: more
//     than 17 significant digits ("0.10000000000000001" -> "0.1"), and, because dump()'s
//     Grisu2 is not always shortest, about 2 in 10,000 shorter ones written by others
//     ("0.46628" -> "0.46627999999999997", 5e22 -> "49999999999999996000000"). Values
//     written through the library were printed by dump() and come back exactly.
//
// Thread safety: a pure function; safe to call from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace syncconfig::internal {

std::string jsonb_text(const nlohmann::json& value);

// Appends jsonb_text(value) to `out`.
void append_jsonb_text(std::string& out, const nlohmann::json& value);

}  // namespace syncconfig::internal
