#include "util/validation.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "syncconfig/error.h"

namespace syncconfig::internal {

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

int json_text_depth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

void validate_key(std::string_view key) {
  if (key.empty()) throw Error(ErrorCode::kInvalidArgument, "invalid key: the key is empty");
  if (key.size() > kMaxKeyBytes) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("invalid key: {} bytes long, the limit is {}", key.size(), kMaxKeyBytes));
  }
  if (key.find('\0') != std::string_view::npos) {
    throw Error(ErrorCode::kInvalidArgument, "invalid key: it contains a NUL byte");
  }
  if (!is_valid_utf8(key)) {
    throw Error(ErrorCode::kInvalidArgument, "invalid key: it is not valid UTF-8");
  }
}

void validate_identifier(std::string_view field, std::string_view name, std::size_t max_bytes) {
  bool ok = !name.empty() && name.size() <= max_bytes &&
            ((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_');
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    // Print the name escaped: it may hold anything.
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid {} {}: use lowercase letters, digits and '_', starting "
                            "with a letter or '_', at most {} bytes",
                            field, quote_for_message(name), max_bytes));
  }
}

bool is_parsable_dsn(const std::string& dsn) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (parsed == nullptr) return false;
  PQconninfoFree(parsed);
  return true;
}

std::string quote_for_message(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// Iterative walk: a deeply nested value must not overflow the stack here. Serializing and
// copying a value recurse once per level, so depth is limited too.
void check_finite(std::string_view key, const nlohmann::json& value) {
  std::vector<std::pair<const nlohmann::json*, std::size_t>> stack{{&value, 1}};
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    if (depth > kMaxValueDepth) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid value for key {}: nested deeper than {} levels",
                              quote_for_message(key), kMaxValueDepth));
    }
    if (v->is_number_float() && !std::isfinite(v->get<double>())) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid value for key {}: NaN and Infinity are not JSON",
                              quote_for_message(key)));
    }
    if (v->is_discarded()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid value for key {}: a discarded (unparsable) JSON value",
                              quote_for_message(key)));
    }
    if (v->is_structured()) {
      for (const auto& child : *v) stack.emplace_back(&child, depth + 1);
    }
  }
}
}  // namespace

std::string serialize_value(std::string_view key, const nlohmann::json& value,
                            std::size_t max_bytes) {
  check_finite(key, value);
  std::string text;
  try {
    text = value.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid value for key {}: {}", quote_for_message(key), e.what()));
  }
  if (text.size() > max_bytes) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("invalid value for key {}: {} bytes of JSON, the limit "
                            "(Options::max_value_bytes) is {}",
                            quote_for_message(key), text.size(), max_bytes));
  }
  return text;
}

}  // namespace syncconfig::internal
