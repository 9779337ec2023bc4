// Access control per key prefix (docs/access-control.md): a token's rules map key prefixes to an
// access level; the longest matching prefix decides, and among rules with that same prefix
// deny > admin > write > read. write implies read, admin implies write. Pure functions, tested
// alone (access_test.cc).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace syncconfig::auth {

// What a rule grants on the keys under its prefix, from least to most (kDeny is "nothing",
// but wins ties: see Rules::decide).
enum class Access { kNone, kDeny, kRead, kWrite, kAdmin };

// "deny", "read", "write", "admin".
std::string_view to_string(Access access);

struct Rule {
  std::string prefix;  // Empty: every key.
  Access access = Access::kNone;
  bool operator==(const Rule&) const = default;
};

// "PREFIX=ACCESS" (the CLI's --allow): the last '=' separates them, so a prefix may contain '='.
// Throws Error(kInvalidArgument) naming the rule when there is no '=', the access is not one of
// deny/read/write/admin, or the prefix is not valid UTF-8 or contains a control character.
Rule parse_rule(std::string_view text);

// Rules as stored: [{"prefix": P, "access": A}, ...]; throws Error(kInvalidArgument) naming the
// malformed rule (by index).
std::vector<Rule> rules_from_json(const nlohmann::json& j);
nlohmann::json rules_to_json(const std::vector<Rule>& rules);

// A token's rules, evaluated. Immutable, cheap to copy around by shared pointer.
class Rules {
 public:
  Rules() = default;
  explicit Rules(std::vector<Rule> rules);

  // The access that decides `key`: among the rules whose prefix `key` starts with, those with
  // the longest prefix; among them deny > admin > write > read. kNone when no rule matches.
  Access decide(std::string_view key) const;

  bool can_read(std::string_view key) const { return readable(decide(key)); }
  bool can_write(std::string_view key) const { return writable(decide(key)); }

  // Every key starting with `prefix` (present or future) has at least `level` (kRead, kWrite or
  // kAdmin): the rule deciding `prefix` does, and so does every rule with a longer prefix
  // starting with `prefix` (a narrower deny or read carves a hole).
  bool covers(std::string_view prefix, Access level) const;
  // Some key starting with `prefix` has at least `level`.
  bool reaches(std::string_view prefix, Access level) const;
  // Some key at all has at least `level`.
  bool any(Access level) const;

  const std::vector<Rule>& rules() const { return rules_; }

  static bool readable(Access a) {
    return a == Access::kRead || a == Access::kWrite || a == Access::kAdmin;
  }
  static bool writable(Access a) { return a == Access::kWrite || a == Access::kAdmin; }
  // `a` grants at least `level`.
  static bool at_least(Access a, Access level);

 private:
  std::vector<Rule> rules_;  // Sorted by prefix length, longest first.
};

// A token name: 1..64 of [A-Za-z0-9._-], starting with a letter or digit. Throws
// Error(kInvalidArgument) naming it otherwise.
void validate_token_name(std::string_view name);

}  // namespace syncconfig::auth
