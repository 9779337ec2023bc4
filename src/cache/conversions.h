// Conversion rules of the typed getters (Store::get_int and friends), documented in store.h and
// README.md. Each returns std::nullopt when the value does not convert; none throws.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace syncconfig::internal {

std::optional<std::string> to_string_value(const nlohmann::json& v);
std::optional<int64_t> to_int(const nlohmann::json& v);
std::optional<double> to_double(const nlohmann::json& v);
std::optional<bool> to_bool(const nlohmann::json& v);

}  // namespace syncconfig::internal
