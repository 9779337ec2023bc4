#include "auth/access.h"

#include <fmt/format.h>

#include <algorithm>

#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig::auth {
namespace {

Error invalid(const std::string& message) { return Error(ErrorCode::kInvalidArgument, message); }

int rank(Access a) {  // Tie-break among rules with the same prefix.
  switch (a) {
    case Access::kDeny:
      return 4;
    case Access::kAdmin:
      return 3;
    case Access::kWrite:
      return 2;
    case Access::kRead:
      return 1;
    case Access::kNone:
      break;
  }
  return 0;
}

std::optional<Access> parse_access(std::string_view s) {
  if (s == "deny") return Access::kDeny;
  if (s == "read") return Access::kRead;
  if (s == "write") return Access::kWrite;
  if (s == "admin") return Access::kAdmin;
  return std::nullopt;
}

void check_prefix(std::string_view prefix, std::string_view rule) {
  if (!internal::is_valid_utf8(prefix)) {
    throw invalid(fmt::format("rule '{}': the prefix is not valid UTF-8", rule));
  }
  for (unsigned char c : prefix) {
    if (c < 0x20 || c == 0x7f) {
      throw invalid(fmt::format("rule '{}': the prefix contains a control character", rule));
    }
  }
}

}  // namespace

std::string_view to_string(Access access) {
  switch (access) {
    case Access::kDeny:
      return "deny";
    case Access::kRead:
      return "read";
    case Access::kWrite:
      return "write";
    case Access::kAdmin:
      return "admin";
    case Access::kNone:
      break;
  }
  return "none";
}

Rule parse_rule(std::string_view text) {
  std::size_t eq = text.rfind('=');
  if (eq == std::string_view::npos) {
    throw invalid(fmt::format(
        "rule '{}': expected PREFIX=ACCESS (ACCESS: deny, read, write or admin; an empty "
        "PREFIX means every key)",
        text));
  }
  std::string_view prefix = text.substr(0, eq);
  std::optional<Access> access = parse_access(text.substr(eq + 1));
  if (!access) {
    throw invalid(fmt::format("rule '{}': access '{}' is not one of deny, read, write, admin", text,
                              text.substr(eq + 1)));
  }
  check_prefix(prefix, text);
  return Rule{std::string(prefix), *access};
}

std::vector<Rule> rules_from_json(const nlohmann::json& j) {
  if (!j.is_array()) throw invalid("token rules must be an array of {prefix, access}");
  std::vector<Rule> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& r = j[i];
    auto where = [&] { return fmt::format("rule {} ({})", i, r.dump()); };
    if (!r.is_object() || !r.contains("prefix") || !r["prefix"].is_string() ||
        !r.contains("access") || !r["access"].is_string()) {
      throw invalid(where() + ": expected {\"prefix\": string, \"access\": string}");
    }
    std::optional<Access> access = parse_access(r["access"].get<std::string>());
    if (!access) throw invalid(where() + ": access is not one of deny, read, write, admin");
    std::string prefix = r["prefix"].get<std::string>();
    check_prefix(prefix, where());
    out.push_back(Rule{std::move(prefix), *access});
  }
  return out;
}

nlohmann::json rules_to_json(const std::vector<Rule>& rules) {
  nlohmann::json out = nlohmann::json::array();
  for (const Rule& r : rules)
    out.push_back({{"prefix", r.prefix}, {"access", to_string(r.access)}});
  return out;
}

Rules::Rules(std::vector<Rule> rules) : rules_(std::move(rules)) {
  std::stable_sort(rules_.begin(), rules_.end(),
                   [](const Rule& a, const Rule& b) { return a.prefix.size() > b.prefix.size(); });
}

Access Rules::decide(std::string_view key) const {
  std::size_t length = 0;
  Access best = Access::kNone;
  for (const Rule& r : rules_) {  // Longest prefix first.
    if (best != Access::kNone && r.prefix.size() < length) break;
    if (!key.starts_with(r.prefix)) continue;
    if (best == Access::kNone || rank(r.access) > rank(best)) {
      best = r.access;
      length = r.prefix.size();
    }
  }
  return best;
}

bool Rules::at_least(Access a, Access level) {
  switch (level) {
    case Access::kRead:
      return readable(a);
    case Access::kWrite:
      return writable(a);
    case Access::kAdmin:
      return a == Access::kAdmin;
    default:
      return false;
  }
}

bool Rules::covers(std::string_view prefix, Access level) const {
  if (!at_least(decide(prefix), level)) return false;
  for (const Rule& r : rules_) {
    if (r.prefix.size() > prefix.size() && std::string_view(r.prefix).starts_with(prefix) &&
        !at_least(decide(r.prefix), level)) {
      return false;
    }
  }
  return true;
}

bool Rules::reaches(std::string_view prefix, Access level) const {
  if (at_least(decide(prefix), level)) return true;
  for (const Rule& r : rules_) {
    if (r.prefix.size() > prefix.size() && std::string_view(r.prefix).starts_with(prefix) &&
        at_least(decide(r.prefix), level)) {
      return true;
    }
  }
  return false;
}

bool Rules::any(Access level) const { return reaches("", level); }

void validate_token_name(std::string_view name) {
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  };
  const bool valid = !name.empty() && name.size() <= 64 && ok(name.front()) &&
                     name.front() != '.' && name.front() != '_' && name.front() != '-' &&
                     std::all_of(name.begin(), name.end(), ok);
  if (!valid) {
    throw invalid(fmt::format(
        "token name '{}': 1 to 64 of letters, digits, '.', '_' and '-', starting with a letter "
        "or digit",
        internal::is_valid_utf8(name) ? std::string(name) : std::string("(not UTF-8)")));
  }
}

}  // namespace syncconfig::auth
