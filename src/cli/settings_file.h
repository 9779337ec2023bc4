// The file `apply` reads: a JSON or YAML object of keys to values.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace syncconfig::cli {

// The keys and values of `path`: JSON for a .json name, YAML for .yaml/.yml, else tried as JSON
// and then as YAML. YAML scalars follow YAML 1.2's core schema (null, true/false, numbers; a
// quoted scalar is always a string). Throws UsageError naming the file and what is wrong with it
// (unreadable, not JSON/YAML with the line and column, not an object, a value JSON cannot hold).
std::map<std::string, nlohmann::json> load_settings_file(const std::string& path);

}  // namespace syncconfig::cli
