// Conversion rules of the typed getters (Store::get_int and friends), documented in store.h and
// README.md. Each returns std::nullopt when the value does not convert; none throws.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cache/entry.h"

namespace syncconfig::internal {

std::optional<std::string> to_string_value(const nlohmann::json& v);
std::optional<int64_t> to_int(const nlohmann::json& v);
std::optional<double> to_double(const nlohmann::json& v);
std::optional<bool> to_bool(const nlohmann::json& v);

// The same rules applied to a cache entry. Common cases read the stored text directly (an
// integer, a string without escapes, a boolean); everything else goes through to_json().
std::optional<std::string> to_string_value(const Entry& e);
std::optional<int64_t> to_int(const Entry& e);
std::optional<double> to_double(const Entry& e);
std::optional<bool> to_bool(const Entry& e);

}  // namespace syncconfig::internal
