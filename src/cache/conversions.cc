#include "cache/conversions.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>

namespace syncconfig::internal {
namespace {

std::optional<int64_t> from_double(double d) {
  // 2^63 is exactly representable; anything at or above it does not fit.
  if (!std::isfinite(d) || d != std::trunc(d) || d < -9223372036854775808.0 ||
      d >= 9223372036854775808.0) {
    return std::nullopt;
  }
  return static_cast<int64_t>(d);
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t i = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return i;
}

std::optional<double> parse_double(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
  return d;
}

}  // namespace

std::optional<std::string> to_string_value(const nlohmann::json& v) {
  if (v.is_string()) return v.get_ref<const std::string&>();
  return std::nullopt;
}

std::optional<int64_t> to_int(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::number_integer:
      return v.get<int64_t>();
    case nlohmann::json::value_t::number_unsigned: {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
      return static_cast<int64_t>(u);
    }
    case nlohmann::json::value_t::number_float:
      return from_double(v.get<double>());
    case nlohmann::json::value_t::string: {
      std::string_view s = v.get_ref<const std::string&>();
      if (auto i = parse_int(s)) return i;
      // "42.0", "42.000": an integer with a zero fraction, parsed exactly.
      if (auto dot = s.find('.'); dot != std::string_view::npos &&
                                  s.find_first_not_of('0', dot + 1) == std::string_view::npos) {
        return parse_int(s.substr(0, dot));
      }
      // "1e3" and the like go through double, which is exact only up to 2^53.
      if (auto d = parse_double(s); d && std::fabs(*d) <= 9007199254740992.0) {
        return from_double(*d);
      }
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::optional<double> to_double(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) return parse_double(v.get_ref<const std::string&>());
  return std::nullopt;
}

std::optional<bool> to_bool(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if (i == 0 || i == 1) return i == 1;
    return std::nullopt;
  }
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  }
  return std::nullopt;
}

std::optional<std::string> to_string_value(const Entry& e) {
  if (e.kind() != ValueKind::kString) return std::nullopt;
  nlohmann::json v = e.to_json();  // Without escapes, a copy of the text between the quotes.
  return std::move(v.get_ref<std::string&>());
}

std::optional<int64_t> to_int(const Entry& e) {
  if (e.kind() == ValueKind::kNumber) {
    if (auto i = parse_int(e.text())) return i;
  } else if (e.kind() != ValueKind::kString) {
    return std::nullopt;
  }
  return to_int(e.to_json());
}

std::optional<double> to_double(const Entry& e) {
  if (e.kind() != ValueKind::kNumber && e.kind() != ValueKind::kString) return std::nullopt;
  return to_double(e.to_json());
}

std::optional<bool> to_bool(const Entry& e) {
  if (e.kind() == ValueKind::kBool) return e.text().find('t') != std::string_view::npos;
  if (e.kind() != ValueKind::kNumber && e.kind() != ValueKind::kString) return std::nullopt;
  return to_bool(e.to_json());
}

}  // namespace syncconfig::internal
