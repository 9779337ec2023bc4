#include "cli/settings_file.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli/commands.h"

namespace syncconfig::cli {
namespace {

using nlohmann::json;

// A plain (unquoted, untagged) scalar as YAML 1.2's core schema reads it.
json plain_scalar(const std::string& s, const std::string& path, const YAML::Mark& mark) {
  static const std::regex null_re("~|null|Null|NULL|");
  static const std::regex true_re("true|True|TRUE");
  static const std::regex false_re("false|False|FALSE");
  static const std::regex int_re("[-+]?[0-9]+");
  static const std::regex float_re("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex special_re("[-+]?\\.(inf|Inf|INF)|\\.nan|\\.NaN|\\.NAN");
  if (std::regex_match(s, null_re)) return nullptr;
  if (std::regex_match(s, true_re)) return true;
  if (std::regex_match(s, false_re)) return false;
  if (std::regex_match(s, special_re)) {
    throw UsageError(path + ": line " + std::to_string(mark.line + 1) + ": " + s +
                     " is not a value JSON can hold (no infinities or NaN)");
  }
  if (std::regex_match(s, int_re) || std::regex_match(s, float_re)) {
    std::string text = s[0] == '+' ? s.substr(1) : s;
    // JSON wants a digit on both sides of the point: "1." and ".5" are YAML numbers.
    if (text.find('.') != std::string::npos) {
      std::size_t dot = text.find('.');
      if (dot == 0 || !std::isdigit(static_cast<unsigned char>(text[dot - 1]))) {
        text.insert(dot, "0");
        ++dot;
      }
      if (dot + 1 >= text.size() || !std::isdigit(static_cast<unsigned char>(text[dot + 1]))) {
        text.insert(dot + 1, "0");
      }
    }
    // Leading zeros ("007") are not JSON numbers: kept as they are, as strings.
    json number = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!number.is_discarded()) return number;
  }
  return s;
}

json from_yaml(const YAML::Node& node, const std::string& path) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      // "!" is a quoted (or block) scalar: always a string, as is an explicit !!str.
      if (node.Tag() == "?") return plain_scalar(node.Scalar(), path, node.Mark());
      return node.Scalar();
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const YAML::Node& item : node) out.push_back(from_yaml(item, path));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) {
        if (!item.first.IsScalar()) {
          throw UsageError(path + ": line " + std::to_string(item.first.Mark().line + 1) +
                           ": a key must be a string");
        }
        out[item.first.Scalar()] = from_yaml(item.second, path);
      }
      return out;
    }
  }
  return nullptr;
}

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    std::string reason = e.what();
    if (std::size_t end = reason.find("] "); end != std::string::npos) reason.erase(0, end + 2);
    throw UsageError(path + ": not valid JSON (" + reason + ")");
  }
}

json parse_yaml(const std::string& text, const std::string& path) {
  try {
    return from_yaml(YAML::Load(text), path);
  } catch (const YAML::Exception& e) {
    throw UsageError(path + ": not valid YAML (line " + std::to_string(e.mark.line + 1) +
                     ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg + ")");
  }
}

bool ends_with(const std::string& s, const char* suffix) {
  std::string end(suffix);
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

}  // namespace

std::map<std::string, json> load_settings_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(path + ": cannot be read: " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw UsageError(path + ": cannot be read: " + std::strerror(errno));
  const std::string text = buffer.str();

  json document;
  if (ends_with(path, ".json")) {
    document = parse_json(text, path);
  } else if (ends_with(path, ".yaml") || ends_with(path, ".yml")) {
    document = parse_yaml(text, path);
  } else {
    document = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (document.is_discarded()) document = parse_yaml(text, path);
  }
  if (!document.is_object()) {
    throw UsageError(path + ": expected an object of keys to values, found " +
                     std::string(document.type_name()));
  }
  std::map<std::string, json> out;
  for (auto& [key, value] : document.items()) out[key] = value;
  return out;
}

}  // namespace syncconfig::cli
