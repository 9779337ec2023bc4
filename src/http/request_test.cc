// What the HTTP service does with a path and a body before it reaches a store
// (src/http/request.h), without a server or a database.
#include "http/request.h"

#include <gtest/gtest.h>

#include <string>

namespace syncconfig::service::detail {
namespace {

using nlohmann::json;

const Refusal* refusal(const std::variant<json, Refusal>& r) { return std::get_if<Refusal>(&r); }

TEST(ParseKeyPath, the_key_is_the_rest_of_the_path_and_the_store_is_optional) {
  auto plain = parse_key_path("/settings/feature:new_ui");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->store, "");
  EXPECT_EQ(plain->key, "feature:new_ui");
  auto scoped = parse_key_path("/stores/tenant-a/settings/service/db/url");
  ASSERT_TRUE(scoped);
  EXPECT_EQ(scoped->store, "tenant-a");
  EXPECT_EQ(scoped->key, "service/db/url");
}

TEST(ParseKeyPath, paths_that_are_not_key_routes_give_nothing) {
  for (const char* p : {"/settings", "/settings/", "/stores//settings/k", "/stores/a/settings/",
                        "/stores/a", "/health", "", "settings/k", "/stores/a/watch"}) {
    EXPECT_FALSE(parse_key_path(p)) << p;
  }
}

TEST(CheckKey, what_store_set_refuses_is_400_naming_the_problem) {
  EXPECT_FALSE(check_key("ok"));
  auto r = check_key(std::string(256, 'k'));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->message.find("256 bytes"), std::string::npos) << r->message;
  ASSERT_TRUE(check_key(std::string("a\0b", 3)));
  ASSERT_TRUE(check_key("bad\xff"));
}

TEST(ParsePutBody, json_bodies_parse_and_bad_ones_are_refused_with_the_right_status) {
  auto ok = parse_put_body("k", R"({"a": [1, 2.5, null]})", 1024);
  ASSERT_FALSE(refusal(ok));
  EXPECT_EQ(std::get<json>(ok), json::parse(R"({"a": [1, 2.5, null]})"));

  struct Row {
    std::string body;
    int status;
    const char* mention;
  };
  for (const Row& row :
       {Row{std::string(5000, ' ') + "1", 413, "4096 bytes"},
        Row{"{not json", 400, "not valid JSON"}, Row{"", 400, "not valid JSON"},
        Row{"NaN", 400, "not valid JSON"}, Row{"1e999", 400, "number overflow"},
        Row{"[-1e999]", 400, "number overflow"}, Row{"\"bad\xff\"", 400, "not valid JSON"},
        Row{std::string(513, '[') + std::string(513, ']'), 400, "512 levels"}}) {
    SCOPED_TRACE(row.body.substr(0, 40));
    auto r = parse_put_body("k", row.body, 4096);
    ASSERT_TRUE(refusal(r));
    EXPECT_EQ(refusal(r)->status, row.status);
    EXPECT_NE(refusal(r)->message.find(row.mention), std::string::npos) << refusal(r)->message;
  }
  // 512 levels are accepted; brackets inside strings do not count.
  EXPECT_FALSE(refusal(parse_put_body("k", std::string(512, '[') + std::string(512, ']'), 4096)));
  EXPECT_FALSE(refusal(parse_put_body("k", "\"" + std::string(600, '[') + "\"", 4096)));
}

TEST(ParsePutBody, a_key_that_is_not_utf8_is_quoted_in_messages_without_throwing) {
  for (const char* body : {"{", "1e999", "[[[["}) {
    auto r = parse_put_body("bad\xff", body, 2);
    ASSERT_TRUE(refusal(r));
    EXPECT_FALSE(refusal(r)->message.empty());
  }
}

TEST(ParseEventId, only_plain_non_negative_integers_are_ids) {
  EXPECT_EQ(parse_event_id("0"), 0u);
  EXPECT_EQ(parse_event_id("1764205200123456"), 1764205200123456u);
  for (const char* s : {"", "-1", "+1", " 1", "1 ", "1x", "99999999999999999999999", "0x10"}) {
    EXPECT_FALSE(parse_event_id(s)) << s;
  }
}

TEST(ResumePoint, event_ids_carry_an_anchor_that_parses_back_to_the_same_point) {
  EXPECT_EQ(format_event_id(42, std::nullopt), "42");
  EXPECT_EQ(format_event_id(42, ResumeAnchor{42, 0x00ab01ff}), "42.00ab01ff");
  EXPECT_EQ(format_event_id(42, ResumeAnchor{40, 0xdeadbeef}), "42.40.deadbeef");
  for (std::string id : {"0", "42", "42.00ab01ff", "42.40.deadbeef", "42.0.00000000"}) {
    std::optional<ResumePoint> p = parse_resume_point(id);
    ASSERT_TRUE(p) << id;
    EXPECT_EQ(format_event_id(p->revision, p->anchor), id);
  }
  std::optional<ResumePoint> upper = parse_resume_point("7.DEADBEEF");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->anchor, (ResumeAnchor{7, 0xdeadbeef}));
}

TEST(ResumePoint, malformed_ids_and_anchors_above_their_revision_are_refused) {
  for (const char* s : {"", ".", "42.", "42..deadbeef", "42.deadbee", "42.deadbeef0", "42.xdeadbee",
                        "42.43.deadbeef", "-1.deadbeef", "42.-1.deadbeef", "42.40.deadbeef.1",
                        "42.40", "9223372036854775808.deadbeef", "42.+eadbeef", "42.40.-eadbeef"}) {
    EXPECT_FALSE(parse_resume_point(s)) << s;
  }
}

TEST(ResumePoint, the_fingerprint_tells_key_operation_and_value_apart) {
  const uint32_t set = change_fingerprint("a", json(1));
  EXPECT_EQ(set, change_fingerprint("a", json::parse("1")));  // Deterministic.
  EXPECT_NE(set, change_fingerprint("b", json(1)));
  EXPECT_NE(set, change_fingerprint("a", json(2)));
  EXPECT_NE(set, change_fingerprint("a", std::nullopt));
  EXPECT_NE(change_fingerprint("a", json("x")), change_fingerprint("a", json::parse("[\"x\"]")));
  // Object members in any order are one value (as in jsonb).
  EXPECT_EQ(change_fingerprint("k", json::parse(R"({"x":1,"y":2})")),
            change_fingerprint("k", json::parse(R"({"y":2,"x":1})")));
}

}  // namespace
}  // namespace syncconfig::service::detail
