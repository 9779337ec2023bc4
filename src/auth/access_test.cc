#include "auth/access.h"

#include <gtest/gtest.h>

#include "auth/tokens.h"
#include "syncconfig/error.h"

namespace syncconfig::auth {
namespace {

Rules rules(std::initializer_list<const char*> texts) {
  std::vector<Rule> out;
  for (const char* t : texts) out.push_back(parse_rule(t));
  return Rules(std::move(out));
}

std::string message_of(std::string_view text) {
  try {
    parse_rule(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "no error for " << text;
  return {};
}

TEST(AccessRules, the_longest_matching_prefix_decides) {
  Rules r = rules({"app/=write", "app/secret/=deny", "=read"});
  EXPECT_EQ(r.decide("app/x"), Access::kWrite);
  EXPECT_EQ(r.decide("app/secret/key"), Access::kDeny);
  EXPECT_EQ(r.decide("other"), Access::kRead);
  EXPECT_EQ(r.decide("app"), Access::kRead);  // "app" does not start with "app/".
  EXPECT_FALSE(r.can_read("app/secret/key"));
  EXPECT_TRUE(r.can_write("app/x"));
  EXPECT_FALSE(r.can_write("other"));
}

TEST(AccessRules, a_narrower_read_limits_a_wider_write) {
  Rules r = rules({"=write", "app/ro/=read"});
  EXPECT_TRUE(r.can_write("app/x"));
  EXPECT_TRUE(r.can_read("app/ro/x"));
  EXPECT_FALSE(r.can_write("app/ro/x"));
}

TEST(AccessRules, on_the_same_prefix_deny_beats_admin_beats_write_beats_read) {
  EXPECT_EQ(rules({"a/=read", "a/=write"}).decide("a/k"), Access::kWrite);
  EXPECT_EQ(rules({"a/=write", "a/=read"}).decide("a/k"), Access::kWrite);
  EXPECT_EQ(rules({"a/=write", "a/=deny"}).decide("a/k"), Access::kDeny);
  EXPECT_EQ(rules({"a/=admin", "a/=deny"}).decide("a/k"), Access::kDeny);
  EXPECT_EQ(rules({"a/=admin", "a/=write"}).decide("a/k"), Access::kAdmin);
}

TEST(AccessRules, write_implies_read_and_admin_implies_write) {
  EXPECT_TRUE(rules({"a/=write"}).can_read("a/k"));
  EXPECT_TRUE(rules({"a/=admin"}).can_write("a/k"));
  EXPECT_TRUE(rules({"a/=admin"}).can_read("a/k"));
  EXPECT_FALSE(rules({"a/=read"}).can_write("a/k"));
}

TEST(AccessRules, an_empty_prefix_means_every_key) {
  Rules r = rules({"=admin"});
  EXPECT_TRUE(r.can_write(""));
  EXPECT_TRUE(r.can_write("anything/at/all"));
  EXPECT_TRUE(r.covers("", Access::kAdmin));
}

TEST(AccessRules, no_matching_rule_grants_nothing) {
  Rules r = rules({"app/=write"});
  EXPECT_EQ(r.decide("db/x"), Access::kNone);
  EXPECT_FALSE(r.can_read("db/x"));
  EXPECT_FALSE(Rules().can_read("x"));
}

TEST(AccessRules, covers_is_false_when_a_narrower_rule_carves_a_hole) {
  Rules r = rules({"app/=write", "app/secret/=deny"});
  EXPECT_FALSE(r.covers("app/", Access::kRead));
  EXPECT_TRUE(r.covers("app/public/", Access::kRead));
  EXPECT_FALSE(r.covers("", Access::kRead));
  EXPECT_TRUE(r.reaches("", Access::kRead));
  EXPECT_TRUE(r.reaches("app/", Access::kWrite));
  EXPECT_FALSE(r.reaches("app/secret/", Access::kRead));
  EXPECT_FALSE(r.reaches("db/", Access::kRead));
  // A prefix shorter than the rule's reaches into it.
  EXPECT_TRUE(r.reaches("ap", Access::kRead));
}

TEST(AccessRules, admin_of_a_prefix_needs_admin_on_every_key_under_it) {
  Rules r = rules({"app/=admin", "app/locked/=read"});
  EXPECT_TRUE(r.covers("app/x/", Access::kAdmin));
  EXPECT_FALSE(r.covers("app/", Access::kAdmin));
  EXPECT_FALSE(r.covers("", Access::kAdmin));
  EXPECT_TRUE(r.any(Access::kWrite));
}

TEST(AccessRules, a_rule_splits_at_its_last_equals_sign) {
  EXPECT_EQ(parse_rule("a=b/=read"), (Rule{"a=b/", Access::kRead}));
  EXPECT_EQ(parse_rule("=admin"), (Rule{"", Access::kAdmin}));
}

TEST(AccessRules, malformed_rules_are_rejected_naming_the_rule) {
  EXPECT_NE(message_of("app/").find("rule 'app/'"), std::string::npos);
  EXPECT_NE(message_of("app/=readwrite").find("'readwrite' is not one of"), std::string::npos);
  EXPECT_NE(message_of("app/=").find("rule 'app/='"), std::string::npos);
  EXPECT_NE(message_of("a\x01=read").find("control character"), std::string::npos);
}

TEST(AccessRules, stored_rules_round_trip_and_malformed_ones_name_their_index) {
  std::vector<Rule> in = {{"app/", Access::kWrite}, {"", Access::kDeny}};
  EXPECT_EQ(rules_from_json(rules_to_json(in)), in);
  try {
    rules_from_json(nlohmann::json::parse(R"([{"prefix":"a","access":"read"},{"prefix":1}])"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rule 1"), std::string::npos) << e.what();
  }
}

TEST(TokenNames, only_plain_names_are_accepted) {
  EXPECT_NO_THROW(validate_token_name("ci-deploy.v2_x"));
  EXPECT_THROW(validate_token_name(""), Error);
  EXPECT_THROW(validate_token_name("-x"), Error);
  EXPECT_THROW(validate_token_name("a b"), Error);
  EXPECT_THROW(validate_token_name(std::string(65, 'a')), Error);
}

TEST(TokenSecrets, are_random_prefixed_and_hashed_to_sha256_hex) {
  std::string a = new_secret(), b = new_secret();
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.starts_with("sct_"));
  EXPECT_EQ(a.size(), 4u + 43u);
  EXPECT_EQ(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hash_secret(a).size(), 64u);
}

TEST(TokenRecords, round_trip_and_a_missing_hash_is_rejected) {
  TokenRecord r{"n", hash_secret("x"), {{"a/", Access::kRead}}, "2026-01-01T00:00:00Z", ""};
  TokenRecord back = record_from_json("n", to_json(r));
  EXPECT_EQ(back.hash, r.hash);
  EXPECT_EQ(back.rules, r.rules);
  EXPECT_FALSE(back.revoked());
  EXPECT_THROW(record_from_json("n", nlohmann::json{{"rules", nlohmann::json::array()}}), Error);
}

}  // namespace
}  // namespace syncconfig::auth
