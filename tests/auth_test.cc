// Access control with named tokens (docs/access-control.md) through real sockets on a real
// PostgreSQL: a matrix of tokens x routes x prefixes, filtered lists and watches, transactions
// with one forbidden key, the actor in the history, and revocation seen by two servers.
#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth/tokens.h"
#include "http/http_server.h"
#include "http_support.h"
#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using service::HttpOptions;
using service::HttpServer;
using service::ServedStore;
using namespace std::chrono_literals;

std::vector<auth::Rule> rules(std::initializer_list<const char*> texts) {
  std::vector<auth::Rule> out;
  for (const char* t : texts) out.push_back(auth::parse_rule(t));
  return out;
}

// The token table of a test: its own table and channel.
Options token_options(const std::string& table) {
  Options o = auth::token_store_options("public");
  o.table_name = table;
  o.channel = table;
  return o;
}

// One server over a store on `table`, enforcing the tokens of a token table.
class Server {
 public:
  Server(const std::string& table, const std::string& token_table, HttpOptions options = {})
      : tokens_(Store::open(dsn(), token_options(token_table))),
        registry_(std::make_shared<auth::TokenRegistry>(*tokens_)),
        served_(with_tokens(std::move(options), registry_), "", table) {}

  Store& store() { return served_.store(); }
  Store& tokens() { return *tokens_; }
  int port() const { return served_.port(); }

 private:
  static HttpOptions with_tokens(HttpOptions o, std::shared_ptr<auth::TokenRegistry> registry) {
    o.tokens = std::move(registry);
    return o;
  }
  std::unique_ptr<Store> tokens_;
  std::shared_ptr<auth::TokenRegistry> registry_;
  Served served_;  // Last: stopped before the token registry goes.
};

httplib::Headers bearer(const std::string& secret) {
  if (secret.empty()) return {};
  return {{"Authorization", "Bearer " + secret}};
}

// The fixture of the matrix: keys app/x, app/secret/k, db/y and these tokens.
class AccessMatrix : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(unique_name("t_acl"), unique_name("t_acl_tokens"));
    Store& s = server_->store();
    first_ = s.set("app/x", 1);
    s.set("app/secret/k", "s3cret");
    s.set("db/y", 2);
    secrets_["admin"] = auth::create_token(server_->tokens(), "admin", rules({"=admin"}));
    secrets_["writer"] = auth::create_token(server_->tokens(), "writer", rules({"app/=write"}));
    secrets_["reader"] = auth::create_token(server_->tokens(), "reader", rules({"app/=read"}));
    secrets_["carved"] =
        auth::create_token(server_->tokens(), "carved", rules({"app/=write", "app/secret/=deny"}));
    secrets_["revoked"] = auth::create_token(server_->tokens(), "revoked", rules({"=admin"}));
    ASSERT_TRUE(auth::revoke_token(server_->tokens(), "revoked"));
    secrets_["unknown"] = auth::new_secret();
    secrets_["missing"] = "";
    client_ = client_for(server_->port());
    // The server's registry follows its token store: every active token works once it is seen.
    ASSERT_TRUE(wait_until([&] {
      return get("carved", "/settings/app/x") == 200 && get("revoked", "/settings/app/x") == 401;
    }));
  }

  int get(const std::string& token, const std::string& path) {
    auto r = client_->Get(path, bearer(secrets_.at(token)));
    return r ? r->status : -1;
  }
  httplib::Result request(const std::string& token, const std::string& method,
                          const std::string& path, const std::string& body = "") {
    httplib::Headers h = bearer(secrets_.at(token));
    if (method == "GET") return client_->Get(path, h);
    if (method == "PUT") return client_->Put(path, h, body, "application/json");
    if (method == "POST") return client_->Post(path, h, body, "application/json");
    return client_->Delete(path, h);
  }

  std::unique_ptr<Server> server_;
  std::map<std::string, std::string> secrets_;
  std::unique_ptr<httplib::Client> client_;
  int64_t first_ = 0;
};

struct Case {
  const char* token;
  const char* method;
  std::string path;
  std::string body;
  int status;
};

TEST_F(AccessMatrix, every_route_answers_each_token_as_its_rules_say) {
  const std::string rollback_prefix = json{{"prefix", "app/"}, {"to", first_}}.dump();
  const std::string rollback_key = json{{"key", "app/x"}, {"to", first_}}.dump();
  const std::vector<Case> cases = {
      // A single key: read.
      {"admin", "GET", "/settings/app/x", "", 200},
      {"writer", "GET", "/settings/app/x", "", 200},
      {"reader", "GET", "/settings/app/x", "", 200},
      {"carved", "GET", "/settings/app/x", "", 200},
      {"revoked", "GET", "/settings/app/x", "", 401},
      {"unknown", "GET", "/settings/app/x", "", 401},
      {"missing", "GET", "/settings/app/x", "", 401},
      {"reader", "GET", "/settings/app/secret/k", "", 200},
      {"carved", "GET", "/settings/app/secret/k", "", 403},
      {"carved", "GET", "/entries/app/secret/k", "", 403},
      {"writer", "GET", "/settings/db/y", "", 403},
      {"reader", "GET", "/settings/db/y", "", 403},
      {"admin", "GET", "/settings/db/y", "", 200},
      // A denied key is 403 even when it is absent (no probing for keys).
      {"writer", "GET", "/settings/db/absent", "", 403},
      {"writer", "GET", "/settings/app/absent", "", 404},
      // A single key: write.
      {"writer", "PUT", "/settings/app/x", "5", 200},
      {"carved", "PUT", "/settings/app/x", "6", 200},
      {"reader", "PUT", "/settings/app/x", "7", 403},
      {"revoked", "PUT", "/settings/app/x", "7", 401},
      {"missing", "PUT", "/settings/app/x", "7", 401},
      {"carved", "PUT", "/settings/app/secret/k", "7", 403},
      {"writer", "PUT", "/settings/app/secret/k", "\"w\"", 200},
      {"writer", "PUT", "/settings/db/y", "7", 403},
      {"admin", "PUT", "/settings/db/y", "3", 200},
      {"reader", "DELETE", "/settings/app/gone", "", 403},
      {"writer", "DELETE", "/settings/app/gone", "", 404},
      {"writer", "DELETE", "/settings/db/y", "", 403},
      // Lists, changes and watches over a prefix: nothing readable under it is 403.
      {"reader", "GET", "/settings?prefix=app/", "", 200},
      {"carved", "GET", "/settings?prefix=app/", "", 200},
      {"writer", "GET", "/settings?prefix=db/", "", 403},
      {"writer", "GET", "/settings", "", 200},
      {"carved", "GET", "/settings?prefix=app/secret/", "", 403},
      {"carved", "GET", "/changes?since=0&prefix=app/", "", 200},
      {"reader", "GET", "/changes?since=0&prefix=db/", "", 403},
      {"writer", "GET", "/watch?prefix=db/", "", 403},
      {"unknown", "GET", "/watch?prefix=app/", "", 401},
      // History.
      {"reader", "GET", "/history/app/x", "", 200},
      {"reader", "GET", "/history/db/y", "", 403},
      {"carved", "GET", "/history/app/secret/k", "", 403},
      {"carved", "GET", "/history?prefix=app/", "", 200},
      {"writer", "GET", "/history?prefix=db/", "", 403},
      // Rollback: a key needs write on it, a whole prefix admin on every key under it.
      {"reader", "POST", "/rollback", rollback_key, 403},
      {"writer", "POST", "/rollback", rollback_key, 200},
      {"writer", "POST", "/rollback", rollback_prefix, 403},
      {"carved", "POST", "/rollback", rollback_prefix, 403},
      {"admin", "POST", "/rollback", rollback_prefix, 200},
      // Leases: granting needs write somewhere; revoking (it deletes the lease's keys) admin.
      {"reader", "POST", "/leases", R"({"ttl": 60})", 403},
      {"writer", "POST", "/leases", R"({"ttl": 60})", 200},
      {"writer", "DELETE", "/leases/999999", "", 403},
      {"admin", "DELETE", "/leases/999999", "", 404},
      // Health is open; metrics need an active token.
      {"missing", "GET", "/health", "", 200},
      {"revoked", "GET", "/health", "", 200},
      {"missing", "GET", "/metrics", "", 401},
      {"revoked", "GET", "/metrics", "", 401},
      {"reader", "GET", "/metrics", "", 200},
  };
  for (const Case& c : cases) {
    auto r = request(c.token, c.method, c.path, c.body);
    ASSERT_TRUE(r) << c.method << " " << c.path;
    EXPECT_EQ(r->status, c.status)
        << c.token << " " << c.method << " " << c.path << ": " << r->body;
    if (r->status == 401) EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  }
}

TEST_F(AccessMatrix, whoami_names_the_callers_token_and_rules_and_the_console_needs_none) {
  auto me = request("carved", "GET", "/whoami");
  ASSERT_TRUE(me);
  ASSERT_EQ(me->status, 200) << me->body;
  json body = json::parse(me->body);
  EXPECT_EQ(body.at("auth"), true);
  EXPECT_EQ(body.at("name"), "carved");
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& r : body.at("rules")) {
    got.insert({r.at("prefix").get<std::string>(), r.at("access").get<std::string>()});
  }
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{"app/", "write"},
                                                                {"app/secret/", "deny"}}));
  EXPECT_EQ(body.at("stores").size(), 1u);
  EXPECT_EQ(get("missing", "/whoami"), 401);
  EXPECT_EQ(get("revoked", "/whoami"), 401);
  // The console's page loads without a token (it then asks for one); its files hold no data.
  for (const char* path : {"/ui", "/ui/", "/ui/app.js", "/ui/app.css"}) {
    EXPECT_EQ(get("missing", path), 200) << path;
  }
  EXPECT_EQ(get("missing", "/ui/../settings/app/x"), 404);
}

TEST_F(AccessMatrix, a_list_over_a_prefix_returns_only_readable_keys_and_says_it_was_filtered) {
  auto carved = request("carved", "GET", "/settings?prefix=app/");
  ASSERT_EQ(carved->status, 200);
  EXPECT_EQ(json::parse(carved->body), (json{{"app/x", 1}}));
  EXPECT_EQ(carved->get_header_value("X-Syncconfig-Filtered"), "true");

  auto reader = request("reader", "GET", "/settings?prefix=app/");
  EXPECT_EQ(json::parse(reader->body), (json{{"app/secret/k", "s3cret"}, {"app/x", 1}}));
  EXPECT_FALSE(reader->has_header("X-Syncconfig-Filtered"));

  auto everything = request("writer", "GET", "/settings");
  EXPECT_EQ(json::parse(everything->body), (json{{"app/secret/k", "s3cret"}, {"app/x", 1}}));
  EXPECT_EQ(everything->get_header_value("X-Syncconfig-Filtered"), "true");

  auto changes = request("carved", "GET", "/changes?since=0&prefix=app/");
  ASSERT_EQ(changes->status, 200);
  const json changes_body = json::parse(changes->body);  // Outlives the loop over its member.
  for (const auto& c : changes_body.at("changes")) EXPECT_EQ(c.at("key"), "app/x");
  EXPECT_EQ(changes->get_header_value("X-Syncconfig-Filtered"), "true");

  auto history = request("carved", "GET", "/history?prefix=app/");
  ASSERT_EQ(history->status, 200);
  EXPECT_FALSE(json::parse(history->body).at("history").empty());
  const json history_body = json::parse(history->body);
  for (const auto& h : history_body.at("history")) EXPECT_EQ(h.at("key"), "app/x");
  EXPECT_EQ(history->get_header_value("X-Syncconfig-Filtered"), "true");
}

TEST_F(AccessMatrix, a_transaction_with_one_forbidden_key_is_403_naming_it_and_writes_nothing) {
  json txn = {{"operations",
               {{{"op", "set"}, {"key", "app/x"}, {"value", 10}},
                {{"op", "set"}, {"key", "app/secret/k"}, {"value", "stolen"}},
                {{"op", "set"}, {"key", "app/new"}, {"value", true}}}}};
  auto r = request("carved", "POST", "/txn", txn.dump());
  ASSERT_EQ(r->status, 403) << r->body;
  EXPECT_NE(json::parse(r->body).at("error").get<std::string>().find("app/secret/k"),
            std::string::npos)
      << r->body;
  EXPECT_EQ(server_->store().get("app/x"), 1);
  EXPECT_EQ(server_->store().get("app/secret/k"), "s3cret");
  EXPECT_FALSE(server_->store().get("app/new"));

  // A guard reads: a guard on a key it may not read is refused too.
  json guarded = {{"guards", {{{"key", "db/y"}, {"revision", 1}}}},
                  {"operations", {{{"op", "set"}, {"key", "app/x"}, {"value", 11}}}}};
  auto g = request("writer", "POST", "/txn", guarded.dump());
  EXPECT_EQ(g->status, 403) << g->body;
  EXPECT_EQ(server_->store().get("app/x"), 1);

  json allowed = {{"operations",
                   {{{"op", "set"}, {"key", "app/x"}, {"value", 12}},
                    {{"op", "set"}, {"key", "app/new"}, {"value", true}}}}};
  auto ok = request("carved", "POST", "/txn", allowed.dump());
  ASSERT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(server_->store().get("app/x"), 12);
  EXPECT_EQ(server_->store().history("app/new")[0].actor, "token:carved");
}

TEST_F(AccessMatrix, a_write_is_recorded_in_the_history_under_the_tokens_name) {
  auto r = client_->Put("/settings/app/x",
                        {{"Authorization", "Bearer " + secrets_.at("writer")},
                         {"X-Syncconfig-Actor", "someone-else"}},
                        "42", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(server_->store().history("app/x")[0].actor, "token:writer");
  // A rollback is a write like any other: the console's "restore" is attributed to its token.
  auto back = client_->Post("/rollback", bearer(secrets_.at("writer")),
                            json({{"key", "app/x"}, {"to", first_}, {"comment", "undo"}}).dump(),
                            "application/json");
  ASSERT_EQ(back->status, 200) << back->body;
  HistoryRecord restored = server_->store().history("app/x")[0];
  EXPECT_EQ(restored.actor, "token:writer");
  EXPECT_EQ(restored.comment, "undo");
  EXPECT_EQ(restored.value, json(1));
}

// A /watch stream read on its own thread.
class Watch {
 public:
  Watch(int port, const std::string& path, const std::string& secret) : client_(client_for(port)) {
    client_->set_read_timeout(30, 0);
    thread_ = std::thread([this, path, secret] {
      client_->Get(
          path, bearer(secret),
          [this](const httplib::Response& response) {
            std::lock_guard lock(mu_);
            status_ = response.status;
            filtered_header_ = response.get_header_value("X-Syncconfig-Filtered");
            return true;
          },
          [this](const char* data, size_t size) {
            std::lock_guard lock(mu_);
            text_.append(data, size);
            cv_.notify_all();
            return !closing_;
          });
      std::lock_guard lock(mu_);
      finished_ = true;
      cv_.notify_all();
    });
  }
  ~Watch() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    client_->stop();
    thread_.join();
  }
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return text_.find(needle) != std::string::npos || finished_;
    }) && text_.find(needle) != std::string::npos;
  }
  bool wait_finished(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_; });
  }
  std::string text() const {
    std::lock_guard lock(mu_);
    return text_;
  }
  std::string filtered_header() const {
    std::lock_guard lock(mu_);
    return filtered_header_;
  }

 private:
  std::unique_ptr<httplib::Client> client_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::string filtered_header_;
  int status_ = 0;
  bool closing_ = false;
  bool finished_ = false;
};

TEST_F(AccessMatrix, a_watch_sends_only_readable_changes_and_says_it_is_filtered) {
  Watch w(server_->port(), "/watch?prefix=app/", secrets_.at("carved"));
  ASSERT_TRUE(w.wait_for("event: ready"));
  EXPECT_NE(w.text().find("\"filtered\":true"), std::string::npos) << w.text();
  EXPECT_EQ(w.filtered_header(), "true");
  server_->store().set("app/secret/k", "rotated");
  server_->store().set("app/visible", 1);
  // Changes go out in revision order: once the later one arrived, the earlier would have too.
  ASSERT_TRUE(w.wait_for("\"key\":\"app/visible\"")) << w.text();
  EXPECT_EQ(w.text().find("app/secret"), std::string::npos) << w.text();
  EXPECT_EQ(w.text().find("rotated"), std::string::npos) << w.text();
}

TEST_F(AccessMatrix, a_watch_over_a_fully_readable_prefix_is_not_marked_filtered) {
  Watch w(server_->port(), "/watch?prefix=app/", secrets_.at("reader"));
  ASSERT_TRUE(w.wait_for("event: ready"));
  EXPECT_EQ(w.text().find("filtered"), std::string::npos) << w.text();
  server_->store().set("app/secret/k", "rotated");
  EXPECT_TRUE(w.wait_for("rotated")) << w.text();
}

TEST(AccessControl, the_access_log_names_the_token_and_never_shows_its_secret) {
  auto out = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*out);
  auto logger = std::make_shared<spdlog::logger>("acl_log", sink);
  logger->set_level(spdlog::level::debug);
  HttpOptions o;
  o.logger = logger;
  Server server(unique_name("t_acl_log"), unique_name("t_acl_log_tokens"), o);
  const std::string secret = auth::create_token(server.tokens(), "logged", rules({"app/=write"}));
  auto c = client_for(server.port());
  ASSERT_TRUE(wait_until([&] {
    auto r = c->Put("/settings/app/k", bearer(secret), "1", "application/json");
    return r && r->status == 200;
  }));
  auto denied = c->Get("/settings/db/k", bearer(secret));
  ASSERT_EQ(denied->status, 403);
  logger->flush();
  const std::string log = out->str();
  EXPECT_NE(log.find("PUT /settings/app/k 200"), std::string::npos) << log;
  EXPECT_NE(log.find("GET /settings/db/k 403"), std::string::npos) << log;
  EXPECT_NE(log.find("token=logged"), std::string::npos) << log;
  EXPECT_EQ(log.find(secret), std::string::npos) << log;
  EXPECT_EQ(log.find(secret.substr(4)), std::string::npos) << log;
}

// The rate limit is per token: one token over it gets 429, another token (from the same
// address) is not held back.
TEST(AccessControl, the_rate_limit_is_per_token) {
  HttpOptions o;
  o.rate_limit = 2;
  o.rate_limit_burst = 4;
  Server server(unique_name("t_acl_rate"), unique_name("t_acl_rate_tokens"), o);
  const std::string busy = auth::create_token(server.tokens(), "busy", rules({"=read"}));
  const std::string quiet = auth::create_token(server.tokens(), "quiet", rules({"=read"}));
  auto c = client_for(server.port());
  // Both tokens are seen (each probe costs one request of its bucket).
  ASSERT_TRUE(wait_until([&] {
    auto r = c->Get("/settings", bearer(busy));
    return r && r->status == 200;
  }));
  ASSERT_TRUE(wait_until([&] {
    auto r = c->Get("/settings", bearer(quiet));
    return r && r->status == 200;
  }));
  int limited = 0;
  for (int i = 0; i < 10; ++i) limited += c->Get("/settings", bearer(busy))->status == 429;
  EXPECT_GE(limited, 5);
  auto other = c->Get("/settings", bearer(quiet));
  EXPECT_EQ(other->status, 200) << other->body;
  auto refused = c->Get("/settings", bearer(busy));
  EXPECT_EQ(refused->status, 429);
  EXPECT_NE(refused->body.find("token busy"), std::string::npos) << refused->body;
}

TEST(AccessControl, a_shared_token_and_named_tokens_together_are_refused) {
  auto store = Store::open(dsn(), test_options(unique_name("t_acl_both")));
  auto tokens = Store::open(dsn(), token_options(unique_name("t_acl_both_tokens")));
  HttpOptions o;
  o.token = "shared";
  o.tokens = std::make_shared<auth::TokenRegistry>(*tokens);
  EXPECT_THROW(HttpServer({{"main", store.get()}}, o), Error);
}

// Revocation: tokens are managed on the token table (as `syncconfig token ... --dsn` does) and
// every server follows it: within auth::kTokenHeartbeat even if a notification were lost.
TEST(AccessControl, a_revoked_token_stops_working_on_every_server_within_the_bound) {
  const std::string table = unique_name("t_acl_two");
  const std::string token_table = unique_name("t_acl_two_tokens");
  HttpOptions o;
  o.watch_keepalive = 200ms;  // Open streams check their token at every tick.
  Server one(table, token_table, o);
  Server two(table, token_table, o);
  auto admin = Store::open(dsn(), token_options(token_table));
  const std::string secret = auth::create_token(*admin, "ci", rules({"=write"}));
  auto c1 = client_for(one.port());
  auto c2 = client_for(two.port());
  auto status = [&](httplib::Client& c) {
    auto r = c.Get("/settings", bearer(secret));
    return r ? r->status : -1;
  };
  // Creation propagates too (no restart).
  ASSERT_TRUE(
      wait_until([&] { return status(*c1) == 200 && status(*c2) == 200; }, auth::kTokenHeartbeat));
  Watch stream(two.port(), "/watch", secret);
  ASSERT_TRUE(stream.wait_for("event: ready"));

  ASSERT_TRUE(auth::revoke_token(*admin, "ci"));
  EXPECT_FALSE(auth::revoke_token(*admin, "ci"));  // Already revoked.
  const auto deadline = auth::kTokenHeartbeat + 1s;
  EXPECT_TRUE(wait_until([&] { return status(*c1) == 401 && status(*c2) == 401; }, deadline));
  EXPECT_TRUE(stream.wait_finished(deadline)) << "the revoked token's stream is still open";

  // The name can be given to a new token; the old secret stays dead.
  const std::string again = auth::create_token(*admin, "ci", rules({"=read"}));
  EXPECT_NE(again, secret);
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = c1->Get("/settings", bearer(again));
        return r && r->status == 200;
      },
      deadline));
  EXPECT_EQ(status(*c1), 401);
}

TEST(AccessControl, tokens_are_stored_as_hashes_and_an_active_name_cannot_be_taken_twice) {
  auto tokens = Store::open(dsn(), token_options(unique_name("t_acl_store")));
  const std::string secret = auth::create_token(*tokens, "svc", rules({"app/=read"}));
  EXPECT_EQ(tokens->get("svc")->dump().find(secret), std::string::npos);
  EXPECT_EQ(tokens->get("svc")->at("hash"), auth::hash_secret(secret));
  EXPECT_THROW(auth::create_token(*tokens, "svc", rules({"=admin"})), Error);
  EXPECT_THROW(auth::create_token(*tokens, "bad name", rules({"=admin"})), Error);
  EXPECT_THROW(auth::create_token(*tokens, "empty", {}), Error);
  auto listed = auth::list_tokens(*tokens);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, "svc");
  EXPECT_FALSE(listed[0].revoked());
}

}  // namespace
}  // namespace syncconfig::testing
