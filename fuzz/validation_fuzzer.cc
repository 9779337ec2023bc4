// libFuzzer target: key and value validation (src/util/validation.h), which stands between
// every caller and SQL. The first byte picks what the rest is fed to.
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cache/entry.h"
#include "syncconfig/error.h"
#include "util/validation.h"

namespace si = syncconfig::internal;
using nlohmann::json;

namespace {

// nlohmann's strict UTF-8 check (dump() throws on invalid UTF-8) as a second opinion.
bool nlohmann_accepts_utf8(std::string_view s) {
  try {
    (void)json(std::string(s)).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

void check_key(std::string_view key) {
  bool accepted = true;
  try {
    si::validate_key(key);
  } catch (const syncconfig::Error& e) {
    if (e.code() != syncconfig::ErrorCode::kInvalidArgument) std::abort();
    accepted = false;
  }
  const bool expected = !key.empty() && key.size() <= si::kMaxKeyBytes &&
                        key.find('\0') == std::string_view::npos && nlohmann_accepts_utf8(key);
  if (accepted != expected) std::abort();
  if (si::is_valid_utf8(key) != nlohmann_accepts_utf8(key)) std::abort();
}

void check_identifier(std::string_view name) {
  bool accepted = true;
  try {
    si::validate_identifier("table_name", name, 40);
  } catch (const syncconfig::Error& e) {
    if (e.code() != syncconfig::ErrorCode::kInvalidArgument) std::abort();
    // The message names the option, and quotes the name escaped (never raw control bytes).
    if (e.message().find("table_name") == std::string::npos) std::abort();
    for (unsigned char c : e.message()) {
      if (c < 0x20) std::abort();
    }
    accepted = false;
  }
  if (!accepted) return;
  // Accepted names are safe to paste between double quotes in SQL.
  if (name.empty() || name.size() > 40) std::abort();
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) std::abort();
  }
}

void check_value(std::string_view key, std::string_view text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  try {
    std::string stored = si::serialize_value(key, value, 1 << 16);
    // What is accepted is JSON text that reads back as the same value.
    if (json::parse(stored) != value) std::abort();
  } catch (const syncconfig::Error& e) {
    if (e.code() != syncconfig::ErrorCode::kInvalidArgument) std::abort();
  }
}

// A value text as the cache takes it from the table or a payload. For numbers, true, false and
// null, Entry::make uses a check of its own instead of nlohmann's parser: both must agree.
// (Strings are checked when read, containers by the parser itself.)
void check_entry(std::string_view text) {
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] == '"' || text[first] == '{' ||
      text[first] == '[') {
    return;
  }
  si::EntryPtr e = si::Entry::make("k", text, 1);
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  // nlohmann skips a leading UTF-8 byte order mark and stops at a NUL byte; PostgreSQL sends
  // neither, and the cache refuses both.
  const bool lenient =
      text.substr(first, 3) == "\xEF\xBB\xBF" || text.find('\0') != std::string_view::npos;
  const bool scalar = !parsed.is_discarded() && !parsed.is_structured() && !parsed.is_string();
  if (static_cast<bool>(e) != (scalar && !lenient)) std::abort();
  if (e && e->to_json() != parsed) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      check_key(rest);
      break;
    case 1:
      check_identifier(rest);
      break;
    default: {
      // "key\nvalue": the key may be invalid too (messages quote it).
      std::size_t nl = rest.find('\n');
      std::string_view key =
          nl == std::string_view::npos ? std::string_view("k") : rest.substr(0, nl);
      std::string_view text = nl == std::string_view::npos ? rest : rest.substr(nl + 1);
      check_value(key, text);
      check_entry(text);
    }
  }
  return 0;
}
