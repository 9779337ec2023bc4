// Checks of everything a caller hands the store before it can reach SQL or the table.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace syncconfig::internal {

constexpr std::size_t kMaxKeyBytes = 255;
constexpr std::size_t kMaxValueDepth = 1000;
// PostgreSQL's identifier limit (NAMEDATALEN - 1): schema and channel names.
constexpr std::size_t kMaxIdentifierBytes = 63;
// A table name leaves room for the names derived from it (`idx_<table>_updated_at`,
// `<table>_lease_sweeps`, ...) within kMaxIdentifierBytes.
constexpr std::size_t kMaxTableNameBytes = 40;

// Throws Error(kInvalidArgument) unless `key` is 1..255 bytes of valid UTF-8 without NUL.
void validate_key(std::string_view key);
// Throws Error(kInvalidArgument) naming `field` unless `name` is a safe SQL identifier:
// [a-z_][a-z0-9_]* of at most `max_bytes` bytes.
void validate_identifier(std::string_view field, std::string_view name, std::size_t max_bytes);
// Serializes `value` for the database. Throws Error(kInvalidArgument) for NaN/Infinity, invalid
// UTF-8 in strings, a discarded value, nesting deeper than kMaxValueDepth, or text longer than
// `max_bytes`.
std::string serialize_value(std::string_view key, const nlohmann::json& value,
                            std::size_t max_bytes);
bool is_valid_utf8(std::string_view s);
// Whether libpq can parse `dsn` (key=value or URI). Its parse message is never shown: it may quote
// the whole string, password included, so callers say only that the DSN is malformed.
bool is_parsable_dsn(const std::string& dsn);
// `s` as a JSON string, for error messages and log lines: escaped, so that control characters
// cannot garble them, and with invalid UTF-8 replaced, so that quoting never throws (a strict
// dump() would throw nlohmann::json::type_error instead of the error being reported).
std::string quote_for_message(std::string_view s);
// Deepest nesting of arrays/objects in a JSON text (brackets inside strings skipped), found
// without parsing; stops counting once past `limit`.
int json_text_depth(std::string_view text, int limit);

}  // namespace syncconfig::internal
