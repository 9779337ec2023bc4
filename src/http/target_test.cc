// Routing (src/http/target.h): a request's method and target to the route it names, or the
// refusal, without a server or a database. The server answers exactly these (http_server.cc).
#include "http/target.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace syncconfig::service::detail {
namespace {

using Kind = Route::Kind;

const std::vector<std::string> kStores = {"main", "tenant-a"};

// The route of `method` on `target` among kStores; fails the test when it is refused.
Route route_of(const std::string& target, const std::string& method = "GET") {
  auto parsed = parse_target(target, method, kStores);
  if (auto* refused = std::get_if<Refusal>(&parsed)) {
    ADD_FAILURE() << method << " " << target << " refused " << refused->status << ": "
                  << refused->message;
    return Route{};
  }
  return std::get<Route>(std::move(parsed));
}

// The refusal of `method` on `target` among kStores; fails the test when it is routed.
Refusal refusal_of(const std::string& target, const std::string& method = "GET") {
  auto parsed = parse_target(target, method, kStores);
  if (auto* refused = std::get_if<Refusal>(&parsed)) return *refused;
  ADD_FAILURE() << method << " " << target << " was routed, expected a refusal";
  return Refusal{0, "", ""};
}

bool mentions(const Refusal& r, const std::string& what) {
  return r.message.find(what) != std::string::npos;
}

// ---- Routes ------------------------------------------------------------------------------------

TEST(ParseTarget, health_and_metrics_are_get_routes_whatever_the_query) {
  EXPECT_EQ(route_of("/health").kind, Kind::kHealth);
  EXPECT_EQ(route_of("/metrics").kind, Kind::kMetrics);
  EXPECT_EQ(route_of("/health?verbose=1").kind, Kind::kHealth);
  EXPECT_EQ(route_of("/metrics?since=garbage&prefix=%FF").kind, Kind::kMetrics);
  EXPECT_EQ(route_of("/health").store_index, 0u);
}

TEST(ParseTarget, settings_is_the_default_stores_listing_without_a_prefix_unless_given_one) {
  Route all = route_of("/settings");
  EXPECT_EQ(all.kind, Kind::kList);
  EXPECT_EQ(all.store_index, 0u);
  EXPECT_TRUE(all.prefixes.empty());
  EXPECT_FALSE(all.since);

  Route some = route_of("/settings?prefix=feature%3A");
  EXPECT_EQ(some.kind, Kind::kList);
  EXPECT_EQ(some.prefixes, std::vector<std::string>{"feature:"});

  // An empty prefix is every key.
  EXPECT_TRUE(route_of("/settings?prefix=").prefixes.empty());
  EXPECT_TRUE(route_of("/settings?prefix").prefixes.empty());
}

TEST(ParseTarget, a_key_is_the_rest_of_the_path_percent_decoded_once) {
  struct Row {
    const char* target;
    std::string key;
  };
  for (const Row& row : {
           Row{"/settings/feature:new_ui", "feature:new_ui"},
           Row{"/settings/feature%3Anew_ui", "feature:new_ui"},
           Row{"/settings/feature%3anew_ui", "feature:new_ui"},  // Lowercase hex too.
           Row{"/settings/service/db/url", "service/db/url"},
           Row{"/settings/service%2Fdb%2Furl", "service/db/url"},
           Row{"/settings/rate_limit:%2Fapi%2Fsearch", "rate_limit:/api/search"},
           Row{"/settings/discount%2525", "discount%25"},  // Once: "%25", not "%".
           Row{"/settings/caf%C3%A9", "caf\xC3\xA9"},
           Row{"/settings/a+b", "a+b"},               // '+' is a space only in a query.
           Row{"/settings/what%3F", "what?"},         // An encoded '?' is part of the key.
           Row{"/settings/k?prefix=x&since=1", "k"},  // The query is not.
           Row{"/settings//", "/"},
       }) {
    SCOPED_TRACE(row.target);
    Route r = route_of(row.target);
    EXPECT_EQ(r.kind, Kind::kKey);
    EXPECT_EQ(r.key, row.key);
    EXPECT_EQ(r.store_index, 0u);
    EXPECT_TRUE(r.prefixes.empty());
    EXPECT_FALSE(r.since);
  }
}

TEST(ParseTarget, a_key_route_takes_get_put_and_delete_and_leaves_checking_the_key_to_the_server) {
  for (const char* method : {"GET", "PUT", "DELETE"}) {
    Route r = route_of("/settings/k", method);
    EXPECT_EQ(r.kind, Kind::kKey) << method;
    EXPECT_EQ(r.key, "k") << method;
  }
  // Keys that cannot exist are routed: GET answers 404, PUT and DELETE 400 (check_key).
  EXPECT_EQ(route_of("/settings/a%00b", "PUT").key, std::string("a\0b", 3));
  EXPECT_EQ(route_of("/settings/bad%FF", "PUT").key, "bad\xFF");
  EXPECT_EQ(route_of("/settings/" + std::string(300, 'k')).key, std::string(300, 'k'));
}

TEST(ParseTarget, a_stores_routes_are_under_its_name_and_carry_its_index) {
  Route list = route_of("/stores/tenant-a/settings?prefix=db:");
  EXPECT_EQ(list.kind, Kind::kList);
  EXPECT_EQ(list.store_index, 1u);
  EXPECT_EQ(list.prefixes, std::vector<std::string>{"db:"});

  Route key = route_of("/stores/tenant-a/settings/service%2Fdb%2Furl", "PUT");
  EXPECT_EQ(key.kind, Kind::kKey);
  EXPECT_EQ(key.store_index, 1u);
  EXPECT_EQ(key.key, "service/db/url");

  Route watch = route_of("/stores/tenant-a/watch?since=7");
  EXPECT_EQ(watch.kind, Kind::kWatch);
  EXPECT_EQ(watch.store_index, 1u);
  EXPECT_EQ(watch.since, 7);

  // The default store under its own name too.
  Route main_key = route_of("/stores/main/settings/k", "DELETE");
  EXPECT_EQ(main_key.kind, Kind::kKey);
  EXPECT_EQ(main_key.store_index, 0u);
  EXPECT_EQ(main_key.key, "k");
}

TEST(ParseTarget, an_unknown_store_is_404_naming_it_whatever_the_method) {
  for (const char* method : {"GET", "PUT", "POST"}) {
    for (const char* target : {"/stores/tenant-b/settings", "/stores/tenant-b/settings/k",
                               "/stores/tenant-b/watch", "/stores/Main/settings"}) {
      SCOPED_TRACE(std::string(method) + " " + target);
      Refusal r = refusal_of(target, method);
      EXPECT_EQ(r.status, 404);
      EXPECT_TRUE(mentions(r, "unknown store '")) << r.message;
      EXPECT_TRUE(r.allow.empty());
    }
  }
  EXPECT_TRUE(mentions(refusal_of("/stores/tenant-b/settings"), "'tenant-b'"));
}

TEST(ParseTarget, unknown_routes_are_404_naming_the_method_and_path) {
  std::vector<std::string> unknown = {
      "/",       "",         "*",        "/nothing/here", "/setting", "/Settings",  "/watch/",
      "/watchx", "/healthz", "/health/", "/stores",       "/stores/", "settings/k", "/settings/"};
  for (const char* longer :
       {"/stores//settings", "/stores/tenant-a", "/stores/tenant-a/", "/stores/tenant-a/settings/",
        "/stores/tenant-a/health", "/stores/tenant-a/metrics", "http://127.0.0.1:8080/settings"}) {
    unknown.push_back(longer);
  }
  for (const std::string& target : unknown) {
    SCOPED_TRACE(target);
    Refusal r = refusal_of(target);
    EXPECT_EQ(r.status, 404);
    EXPECT_TRUE(r.allow.empty());
    EXPECT_FALSE(r.message.empty());
  }
  Refusal r = refusal_of("/nothing/here?x=1", "PATCH");
  EXPECT_EQ(r.message, "no route for PATCH \"/nothing/here\"");
  // Not a 405: there is no route to allow anything on.
  EXPECT_EQ(refusal_of("/nothing", "DELETE").status, 404);
}

TEST(ParseTarget, a_method_the_route_does_not_take_is_405_with_the_methods_it_does) {
  struct Row {
    const char* method;
    const char* target;
    const char* allow;
  };
  for (const Row& row : {
           Row{"POST", "/settings/k", "GET, PUT, DELETE"},
           Row{"PATCH", "/settings/k", "GET, PUT, DELETE"},
           Row{"HEAD", "/settings/k", "GET, PUT, DELETE"},
           Row{"get", "/settings/k", "GET, PUT, DELETE"},  // Methods are case-sensitive.
           Row{"POST", "/stores/tenant-a/settings/k", "GET, PUT, DELETE"},
           Row{"PUT", "/settings", "GET"},
           Row{"DELETE", "/settings", "GET"},
           Row{"PUT", "/stores/tenant-a/settings", "GET"},
           Row{"POST", "/watch", "GET"},
           Row{"DELETE", "/stores/tenant-a/watch", "GET"},
           Row{"POST", "/health", "GET"},
           Row{"HEAD", "/health", "GET"},
           Row{"PUT", "/metrics", "GET"},
           Row{"", "/metrics", "GET"},
       }) {
    SCOPED_TRACE(std::string(row.method) + " " + row.target);
    Refusal r = refusal_of(row.target, row.method);
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.allow, row.allow);
    EXPECT_TRUE(mentions(r, "is not allowed on")) << r.message;
  }
  // Checked before the query: a bad query on a wrong method is still 405.
  EXPECT_EQ(refusal_of("/watch?since=abc", "POST").status, 405);
}

// ---- Queries -----------------------------------------------------------------------------------

TEST(ParseTarget, watch_takes_repeated_prefixes_and_an_empty_one_means_every_key) {
  Route w = route_of("/watch?prefix=feature%3A&prefix=db:");
  EXPECT_EQ(w.kind, Kind::kWatch);
  EXPECT_EQ(w.prefixes, (std::vector<std::string>{"feature:", "db:"}));
  EXPECT_FALSE(w.since);

  EXPECT_TRUE(route_of("/watch").prefixes.empty());
  EXPECT_TRUE(route_of("/watch?").prefixes.empty());
  EXPECT_TRUE(route_of("/watch?prefix=").prefixes.empty());
  // Every key and some keys is every key, in either order.
  EXPECT_TRUE(route_of("/watch?prefix=a&prefix=").prefixes.empty());
  EXPECT_TRUE(route_of("/watch?prefix=&prefix=a").prefixes.empty());
  EXPECT_TRUE(route_of("/watch?prefix&prefix=a").prefixes.empty());
}

TEST(ParseTarget, a_second_prefix_on_settings_is_400_even_an_empty_one) {
  for (const char* target :
       {"/settings?prefix=a&prefix=b", "/settings?prefix=a&prefix=a",
        "/settings?prefix=a&prefix=", "/settings?prefix=&prefix=a",
        "/settings?prefix=&prefix=", "/stores/tenant-a/settings?prefix=a&x=1&prefix=b"}) {
    SCOPED_TRACE(target);
    Refusal r = refusal_of(target);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.message, "prefix may be given once on /settings");
  }
}

TEST(ParseTarget, since_is_a_revision_a_non_negative_integer_that_fits_int64) {
  EXPECT_EQ(route_of("/watch?since=0").since, 0);
  EXPECT_EQ(route_of("/watch?since=1764205200123456").since, 1764205200123456);
  EXPECT_EQ(route_of("/watch?since=9223372036854775807").since,
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(route_of("/watch?since=007").since, 7);
  Route both = route_of("/stores/tenant-a/watch?prefix=app:&since=42&prefix=db:");
  EXPECT_EQ(both.since, 42);
  EXPECT_EQ(both.prefixes, (std::vector<std::string>{"app:", "db:"}));

  for (const char* target :
       {"/watch?since=9223372036854775808",      // INT64_MAX + 1: overflow.
        "/watch?since=18446744073709551615",     // UINT64_MAX.
        "/watch?since=99999999999999999999999",  // Past uint64.
        "/watch?since=-1", "/watch?since=%2D1", "/watch?since=+1", "/watch?since=%2B1",
        "/watch?since=abc", "/watch?since=1x", "/watch?since=0x10", "/watch?since=1.5",
        "/watch?since=1e3", "/watch?since=%201", "/watch?since=1+", "/watch?since=", "/watch?since",
        "/watch?prefix=a&since=garbage"}) {
    SCOPED_TRACE(target);
    Refusal r = refusal_of(target);
    EXPECT_EQ(r.status, 400);
    EXPECT_TRUE(mentions(r, "since must be an event id")) << r.message;
  }
}

TEST(ParseTarget, changes_take_an_event_id_whose_anchor_is_kept) {
  Route plain = route_of("/changes?since=42");
  EXPECT_EQ(plain.since, 42);
  EXPECT_FALSE(plain.since_anchor);
  Route anchored = route_of("/changes?since=42.40.deadbeef&prefix=app:");
  EXPECT_EQ(anchored.since, 42);
  ASSERT_TRUE(anchored.since_anchor);
  EXPECT_EQ(anchored.since_anchor->revision, 40);
  EXPECT_EQ(anchored.since_anchor->fingerprint, 0xdeadbeefu);
  for (const char* target : {"/changes?since=-1", "/changes?since=42.xyz", "/changes?since=4.5.6",
                             "/changes?since=40.42.deadbeef"}) {  // The anchor above it.
    SCOPED_TRACE(target);
    Refusal r = refusal_of(target);
    EXPECT_EQ(r.status, 400);
    EXPECT_TRUE(mentions(r, "since must be an event id")) << r.message;
  }
  EXPECT_TRUE(mentions(refusal_of("/changes"), "needs since"));
}

TEST(ParseTarget, a_prefix_no_key_can_start_with_is_400_on_watch_and_settings) {
  const std::string too_long(256, 'p');
  for (const std::string& route : {"/watch", "/settings", "/stores/tenant-a/watch"}) {
    for (const std::string& query : {
             std::string("prefix=%FF"),        // Never in UTF-8.
             std::string("prefix=bad%FE"),     //
             std::string("prefix=%C0%AF"),     // Overlong '/'.
             std::string("prefix=%ED%A0%80"),  // A surrogate.
             std::string("prefix=a%00b"),      // NUL.
             std::string("prefix=%00"),        //
             "prefix=" + too_long,             // Longer than any key (255 bytes).
             std::string("prefix=ok&prefix=%FF"),
         }) {
      const std::string target = route + "?" + query;
      SCOPED_TRACE(target.substr(0, 60));
      Refusal r = refusal_of(target);
      EXPECT_EQ(r.status, 400);
      EXPECT_TRUE(mentions(r, "cannot start any key: invalid key: ")) << r.message;
    }
  }
  // The key's message, after the prefix quoted as JSON.
  EXPECT_EQ(refusal_of("/watch?prefix=a%00b").message,
            "prefix \"a\\u0000b\" cannot start any key: invalid key: it contains a NUL byte "
            "(retrying will not help)");
  // What a key can be, a prefix can be: 255 bytes, any valid UTF-8.
  EXPECT_EQ(route_of("/watch?prefix=" + std::string(255, 'p')).prefixes.at(0).size(), 255u);
  EXPECT_EQ(route_of("/watch?prefix=caf%C3%A9").prefixes, std::vector<std::string>{"caf\xC3\xA9"});
  EXPECT_EQ(route_of("/watch?prefix=%E2%82%AC").prefixes, std::vector<std::string>{"\xE2\x82\xAC"});
}

TEST(ParseTarget, a_plus_in_a_query_value_is_a_space_and_an_encoded_plus_is_a_plus) {
  EXPECT_EQ(route_of("/watch?prefix=a+b").prefixes, std::vector<std::string>{"a b"});
  EXPECT_EQ(route_of("/watch?prefix=a%2Bb").prefixes, std::vector<std::string>{"a+b"});
  EXPECT_EQ(route_of("/settings?prefix=+").prefixes, std::vector<std::string>{" "});
  EXPECT_EQ(route_of("/settings?prefix=a%20b").prefixes, std::vector<std::string>{"a b"});
  // Names are decoded the same way.
  EXPECT_EQ(route_of("/watch?pre%66ix=x").prefixes, std::vector<std::string>{"x"});
  EXPECT_EQ(route_of("/watch?%73ince=5").since, 5);
}

TEST(ParseTarget, an_invalid_percent_escape_is_kept_as_it_is) {
  struct Row {
    const char* query;
    std::string prefix;
  };
  for (const Row& row : {
           Row{"prefix=100%", "100%"},
           Row{"prefix=100%25", "100%"},
           Row{"prefix=%zz", "%zz"},
           Row{"prefix=%4", "%4"},
           Row{"prefix=%4g", "%4g"},
           Row{"prefix=a%g1", "a%g1"},
           Row{"prefix=%%41", "%A"},
           Row{"prefix=%+", "% "},
       }) {
    SCOPED_TRACE(row.query);
    EXPECT_EQ(route_of(std::string("/watch?") + row.query).prefixes,
              std::vector<std::string>{row.prefix});
  }
  EXPECT_EQ(route_of("/settings/100%").key, "100%");
  EXPECT_EQ(route_of("/settings/%zz%2").key, "%zz%2");
}

TEST(ParseTarget, unknown_query_parameters_and_since_outside_watch_are_ignored) {
  Route list = route_of("/settings?since=garbage&x=1&&=&prefix=a");
  EXPECT_EQ(list.kind, Kind::kList);
  EXPECT_EQ(list.prefixes, std::vector<std::string>{"a"});
  EXPECT_FALSE(list.since);
  Route watch = route_of("/watch?format=json&since=3&&x");
  EXPECT_EQ(watch.since, 3);
  EXPECT_TRUE(watch.prefixes.empty());
}

// ---- percent_decode ----------------------------------------------------------------------------

TEST(ParseTarget, changes_needs_since_takes_one_prefix_and_only_get) {
  Route r = route_of("/stores/tenant-a/changes?since=41&prefix=app%3A");
  EXPECT_EQ(r.kind, Kind::kChanges);
  EXPECT_EQ(r.store_index, 1u);
  EXPECT_EQ(r.since, 41);
  EXPECT_EQ(r.prefixes, std::vector<std::string>{"app:"});
  EXPECT_EQ(route_of("/changes?since=0").prefixes.size(), 0u);

  Refusal no_since = refusal_of("/changes?prefix=a");
  EXPECT_EQ(no_since.status, 400);
  EXPECT_TRUE(mentions(no_since, "since"));
  EXPECT_EQ(refusal_of("/changes?since=-1").status, 400);
  EXPECT_EQ(refusal_of("/changes?since=1&prefix=a&prefix=b").status, 400);
  Refusal post = refusal_of("/changes?since=1", "POST");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.allow, "GET");
}

TEST(PercentDecode, escapes_decode_once_and_plus_is_a_space_only_when_asked) {
  EXPECT_EQ(percent_decode("", false), "");
  EXPECT_EQ(percent_decode("plain", false), "plain");
  EXPECT_EQ(percent_decode("a%41b%3a%3A", false), "aAb::");
  EXPECT_EQ(percent_decode("%2525", false), "%25");
  EXPECT_EQ(percent_decode("%00", false), std::string(1, '\0'));
  EXPECT_EQ(percent_decode("%FF%fe", false), "\xFF\xFE");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("%2B", true), "+");
  EXPECT_EQ(percent_decode("%20+", true), "  ");
}

TEST(PercentDecode, an_invalid_escape_is_kept_as_it_is_even_at_the_end) {
  for (const char* s : {"%", "%4", "a%", "a%4", "%zz", "%4g", "%g4", "%-1", "%%"}) {
    EXPECT_EQ(percent_decode(s, false), s) << s;
    EXPECT_EQ(percent_decode(s, true), s) << s;
  }
  EXPECT_EQ(percent_decode("%%41", false), "%A");
  EXPECT_EQ(percent_decode("%4%41", false), "%4A");
  EXPECT_EQ(percent_decode("ab%41", false), "abA");  // A valid escape at the very end.
}

TEST(ParseTarget, the_token_routes_are_server_wide_and_take_their_methods) {
  EXPECT_EQ(route_of("/tokens").kind, Kind::kTokens);
  EXPECT_EQ(route_of("/tokens", "POST").kind, Kind::kTokens);
  Route revoke = route_of("/tokens/ci-deploy", "DELETE");
  EXPECT_EQ(revoke.kind, Kind::kTokens);
  EXPECT_EQ(revoke.key, "ci-deploy");
  EXPECT_EQ(refusal_of("/tokens", "DELETE").status, 405);
  EXPECT_EQ(refusal_of("/tokens/ci-deploy").status, 405);
  EXPECT_EQ(refusal_of("/stores/main/tokens").status, 404);
}

TEST(ParseTarget, the_safe_change_routes_take_their_methods_and_queries) {
  EXPECT_EQ(route_of("/txn", "POST").kind, Kind::kTxn);
  EXPECT_EQ(refusal_of("/txn").status, 405);
  EXPECT_EQ(route_of("/rollback", "POST").kind, Kind::kRollback);
  EXPECT_EQ(route_of("/stores/tenant-a/leases", "POST").store_index, 1u);
  Route keep = route_of("/leases/12/keepalive", "POST");
  EXPECT_EQ(keep.kind, Kind::kLease);
  EXPECT_EQ(keep.lease, 12);
  EXPECT_EQ(keep.key, "keepalive");
  EXPECT_EQ(route_of("/leases/12", "DELETE").key, "revoke");
  EXPECT_EQ(refusal_of("/leases/abc", "DELETE").status, 404);
  EXPECT_EQ(refusal_of("/leases/0", "DELETE").status, 404);
  EXPECT_EQ(refusal_of("/leases/12", "POST").status, 405);
  Route entry = route_of("/entries/a%3Ab");
  EXPECT_EQ(entry.kind, Kind::kEntry);
  EXPECT_EQ(entry.key, "a:b");
  Route history = route_of("/history/k?limit=5&before=40");
  EXPECT_EQ(history.kind, Kind::kHistory);
  EXPECT_EQ(history.key, "k");
  EXPECT_EQ(history.limit, 5u);
  EXPECT_EQ(history.before, 40);
  Route by_prefix = route_of("/history?prefix=app%3A");
  EXPECT_TRUE(by_prefix.key.empty());
  ASSERT_EQ(by_prefix.prefixes.size(), 1u);
  EXPECT_EQ(by_prefix.prefixes[0], "app:");
  EXPECT_EQ(refusal_of("/history/k?limit=0").status, 400);
  EXPECT_EQ(*route_of("/settings?at=7").at, 7);
  EXPECT_TRUE(mentions(refusal_of("/settings?at=x"), "at must be"));
  EXPECT_EQ(route_of("/settings/k?lease=9", "PUT").lease, 9);
  EXPECT_EQ(refusal_of("/settings/k?lease=-1", "PUT").status, 400);
  // Only a PUT takes a lease; a GET or DELETE ignores the parameter, as any other.
  EXPECT_EQ(route_of("/settings/k?lease=x", "GET").key, "k");
  EXPECT_EQ(route_of("/settings/k?lease", "DELETE").key, "k");
}

}  // namespace
}  // namespace syncconfig::service::detail
