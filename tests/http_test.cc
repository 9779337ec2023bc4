// The HTTP API (src/http/http_server.h) against real stores on a real PostgreSQL, through real
// sockets: routes, errors, auth, health, metrics, several stores, /watch streams (live, resumed,
// reset) and a database outage.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http/http_server.h"
#include "http/request.h"
#include "http/store_feed.h"
#include "http_support.h"
#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using service::HttpOptions;
using service::HttpServer;
using service::ServedStore;
using namespace std::chrono_literals;

json body_of(const httplib::Result& r) { return json::parse(r->body); }

struct SseEvent {
  std::string id;
  std::string event;
  std::string data;
};

// A /watch stream read on its own thread; events are parsed as they arrive.
class WatchClient {
 public:
  WatchClient(int port, std::string path, httplib::Headers headers = {})
      : client_(client_for(port)) {
    client_->set_read_timeout(30, 0);
    thread_ = std::thread([this, path = std::move(path), headers = std::move(headers)] {
      auto result = client_->Get(
          path, headers,
          [this](const httplib::Response& response) {
            std::lock_guard lock(mu_);
            status_ = response.status;
            content_type_ = response.get_header_value("Content-Type");
            cv_.notify_all();
            return true;
          },
          [this](const char* data, size_t size) {
            std::lock_guard lock(mu_);
            buffer_.append(data, size);
            parse();
            cv_.notify_all();
            return !closing_;
          });
      std::lock_guard lock(mu_);
      finished_ = true;
      cv_.notify_all();
    });
  }
  ~WatchClient() { close(); }

  // Disconnects (idempotent).
  void close() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    client_->stop();
    if (thread_.joinable()) thread_.join();
  }

  bool wait_for_events(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return events_.size() >= n || finished_; });
    return events_.size() >= n;
  }
  // Waits for a change event of `key`.
  bool wait_until_change(const std::string& key, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& e : events_) {
        if (e.event == "change" && json::parse(e.data).at("key") == key) return true;
      }
      return finished_;
    }) && !finished_;
  }
  bool wait_finished(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_; });
  }
  std::vector<SseEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // Only the `event: change` ones.
  std::vector<SseEvent> changes() const {
    std::vector<SseEvent> out;
    for (auto& e : events()) {
      if (e.event == "change") out.push_back(e);
    }
    return out;
  }
  int status() const {
    std::lock_guard lock(mu_);
    return status_;
  }
  int comments() const {
    std::lock_guard lock(mu_);
    return comments_;
  }
  std::string content_type() const {
    std::lock_guard lock(mu_);
    return content_type_;
  }

 private:
  void parse() {  // Under mu_.
    for (std::size_t end; (end = buffer_.find("\n\n")) != std::string::npos;) {
      std::string block = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      SseEvent e;
      std::size_t pos = 0;
      while (pos <= block.size()) {
        std::size_t eol = block.find('\n', pos);
        if (eol == std::string::npos) eol = block.size();
        std::string line = block.substr(pos, eol - pos);
        pos = eol + 1;
        if (line.empty()) continue;
        if (line[0] == ':') {  // Comment (keepalive).
          ++comments_;
          continue;
        }
        std::size_t colon = line.find(": ");
        std::string field = line.substr(0, colon);
        std::string value = colon == std::string::npos ? "" : line.substr(colon + 2);
        if (field == "id") e.id = value;
        if (field == "event") e.event = value;
        if (field == "data") e.data = value;
      }
      if (!e.event.empty()) events_.push_back(std::move(e));
    }
  }

  std::unique_ptr<httplib::Client> client_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  std::vector<SseEvent> events_;
  int status_ = 0;
  int comments_ = 0;
  std::string content_type_;
  bool closing_ = false;
  bool finished_ = false;
  std::thread thread_;
};

std::string key_of(const SseEvent& e) { return json::parse(e.data).at("key"); }

// ---------------------------------------------------------------------------------------------
// Settings routes

TEST(HttpSettings, a_put_value_is_returned_by_get) {
  Served s;
  auto put =
      s.http().Put("/settings/app_name", R"({"name": "demo", "n": 1e3})", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200) << put->body;
  // The stored value as PostgreSQL normalized it, and the write's revision.
  const int64_t revision = s.store().stats().applied_revision;
  EXPECT_GT(revision, 0);
  EXPECT_EQ(body_of(put), (json{{"key", "app_name"},
                                {"value", {{"name", "demo"}, {"n", 1000}}},
                                {"revision", revision}}));
  EXPECT_EQ(put->get_header_value("X-Syncconfig-Revision"), std::to_string(revision));
  EXPECT_EQ(s.store().get("app_name"), (json{{"name", "demo"}, {"n", 1000}}));

  auto get = s.http().Get("/settings/app_name");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(body_of(get), (json{{"name", "demo"}, {"n", 1000}}));
}

// The answer is the write's own outcome: with other writers and a deleter on the same key, each
// PUT answers with the value it sent and a revision of its own (it used to re-read the cache,
// and could answer with another writer's value or null).
TEST(HttpSettings, a_put_answers_with_its_own_write_while_others_write_the_same_key) {
  Served s;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  std::mutex mu;
  std::set<int64_t> revisions;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      auto c = client_for(s.port());
      for (int i = 0; i < 150; ++i) {
        if (t == 2) {
          c->Delete("/settings/contended");
          continue;
        }
        json sent = {{"writer", t}, {"i", i}};
        auto r = c->Put("/settings/contended", sent.dump(), "application/json");
        if (!r || r->status != 200 || body_of(r).at("value") != sent) {
          ++wrong;
          continue;
        }
        std::lock_guard lock(mu);
        if (!revisions.insert(body_of(r).at("revision").get<int64_t>()).second) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(revisions.size(), 300u);
}

TEST(HttpSettings, get_settings_lists_every_key_or_those_with_the_prefix) {
  Served s;
  s.store().set("feature:a", true);
  s.store().set("feature:b", false);
  s.store().set("limit", 10);

  auto all = s.http().Get("/settings");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->status, 200);
  EXPECT_EQ(body_of(all), (json{{"feature:a", true}, {"feature:b", false}, {"limit", 10}}));

  auto some = s.http().Get("/settings?prefix=feature%3A");
  ASSERT_TRUE(some);
  EXPECT_EQ(body_of(some), (json{{"feature:a", true}, {"feature:b", false}}));

  auto none = s.http().Get("/settings?prefix=nothing");
  ASSERT_TRUE(none);
  EXPECT_EQ(body_of(none), json::object());
}

TEST(HttpSettings, keys_lists_the_keys_alone_sorted_with_the_same_revision) {
  Served s;
  s.store().set("feature:b", json::parse(R"({"big": [1, 2, 3]})"));
  s.store().set("feature:a", true);
  const int64_t last = s.store().set("limit", 10);
  for (const char* target : {"/settings?keys", "/settings?keys=true", "/settings?keys=1"}) {
    SCOPED_TRACE(target);
    auto r = s.http().Get(target);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body_of(r), (json{"feature:a", "feature:b", "limit"}));
    EXPECT_GE(std::stoll(r->get_header_value("X-Syncconfig-Revision")), 0);
  }
  auto some = s.http().Get("/settings?prefix=feature%3A&keys");
  ASSERT_TRUE(some);
  EXPECT_EQ(body_of(some), (json{"feature:a", "feature:b"}));
  auto none = s.http().Get("/settings?keys&prefix=nothing");
  ASSERT_TRUE(none);
  EXPECT_EQ(body_of(none), json::array());
  auto past = s.http().Get("/settings?keys&at=" + std::to_string(last - 1));
  ASSERT_TRUE(past);
  EXPECT_EQ(body_of(past), (json{"feature:a", "feature:b"}));
  auto values = s.http().Get("/settings?keys=false");
  ASSERT_TRUE(values);
  EXPECT_TRUE(body_of(values).is_object());
  auto bad = s.http().Get("/settings?keys=maybe");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("keys must be true or false"), std::string::npos) << bad->body;
}

TEST(HttpSettings, an_absent_key_is_404_with_an_error_naming_it) {
  Served s;
  auto r = s.http().Get("/settings/missing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(body_of(r).at("error").get<std::string>().find("missing"), std::string::npos);
}

TEST(HttpSettings, delete_is_200_then_404) {
  Served s;
  s.store().set("gone", 1);
  auto first = s.http().Delete("/settings/gone");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(
      body_of(first),
      (json{{"key", "gone"}, {"deleted", true}, {"revision", s.store().stats().applied_revision}}));
  EXPECT_FALSE(s.store().contains("gone"));

  auto second = s.http().Delete("/settings/gone");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 404);
  EXPECT_TRUE(body_of(second).contains("error"));
}

TEST(HttpSettings, percent_encoded_keys_are_decoded_exactly_once) {
  Served s;
  auto put = s.http().Put("/settings/feature%3Anew_ui", "true", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(s.store().get("feature:new_ui"), json(true));
  // Encoded or not, the same key.
  auto plain = s.http().Get("/settings/feature:new_ui");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200);
  EXPECT_EQ(plain->body, "true");

  // "%2525" is "%25" once decoded, "%" if decoded twice.
  auto pct = s.http().Put("/settings/discount%2525", "5", "application/json");
  ASSERT_TRUE(pct);
  EXPECT_EQ(pct->status, 200) << pct->body;
  EXPECT_EQ(body_of(pct).at("key"), "discount%25");
  EXPECT_EQ(s.store().get("discount%25"), json(5));
  EXPECT_FALSE(s.store().contains("discount%"));
}

TEST(HttpSettings, a_key_may_contain_slashes_encoded_or_not) {
  Served s;
  auto raw = s.http().Put("/settings/service/db/url", R"("postgres://x")", "application/json");
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->status, 200) << raw->body;
  EXPECT_EQ(s.store().get_string("service/db/url"), "postgres://x");

  auto encoded = s.http().Get("/settings/service%2Fdb%2Furl");
  ASSERT_TRUE(encoded);
  EXPECT_EQ(encoded->status, 200);
  EXPECT_EQ(body_of(encoded), "postgres://x");

  auto del = s.http().Delete("/settings/service/db/url");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
}

TEST(HttpSettings, a_body_that_is_not_json_is_400_and_writes_nothing) {
  Served s;
  auto r = s.http().Put("/settings/x", "{not json", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(body_of(r).at("error").get<std::string>().find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(s.store().contains("x"));

  auto empty = s.http().Put("/settings/x", "", "application/json");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 400);
}

TEST(HttpSettings, an_invalid_key_is_400_with_the_store_error) {
  Served s;
  auto r = s.http().Put("/settings/" + std::string(300, 'k'), "1", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_FALSE(body_of(r).at("error").get<std::string>().empty());
  EXPECT_EQ(s.store().size(), 0u);
}

TEST(HttpSettings, json_nested_too_deep_is_400_and_does_not_crash) {
  Served s;
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto r = s.http().Put("/settings/deep", deep, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(body_of(r).at("error").get<std::string>().find("512"), std::string::npos);
  EXPECT_FALSE(s.store().contains("deep"));

  std::string nested = std::string(500, '[') + "\"[{\"" + std::string(500, ']');
  auto ok = s.http().Put("/settings/nested", nested, "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(s.store().get("nested"), json::parse(nested));
}

TEST(HttpSettings, a_body_over_the_limit_is_413) {
  HttpOptions o;
  o.max_body_bytes = 1024;
  Served s(o);
  auto r = s.http().Put("/settings/big", "\"" + std::string(4096, 'x') + "\"", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(body_of(r).at("error").get<std::string>().find("1024"), std::string::npos);
  EXPECT_FALSE(s.store().contains("big"));

  // Just under the limit passes, and the server still answers.
  auto ok = s.http().Put("/settings/big", "\"" + std::string(1000, 'x') + "\"", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST(HttpSettings, unknown_routes_are_404_and_wrong_methods_405_in_json) {
  Served s;
  auto r = s.http().Get("/nothing/here");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(body_of(r).contains("error"));

  auto post = s.http().Post("/settings/x", "1", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, PUT, DELETE");
  EXPECT_TRUE(body_of(post).contains("error"));
}

TEST(HttpSettings, a_very_long_path_does_not_crash_the_server) {
  Served s;
  auto r = s.http().Get("/settings/" + std::string(8000, 'k'));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  auto longer = s.http().Get("/settings/" + std::string(20000, 'k'));  // Over httplib's limit.
  if (longer) {
    EXPECT_GE(longer->status, 400);
  }
  auto health = s.http().Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// ---------------------------------------------------------------------------------------------
// Auth

TEST(HttpAuth, with_a_token_every_route_requires_the_exact_bearer_header) {
  HttpOptions o;
  o.token = "s3cret";
  Served s(o);
  s.store().set("x", 1);

  for (const char* path : {"/settings/x", "/settings", "/health", "/metrics"}) {
    auto none = s.http().Get(path);
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 401) << path;
    EXPECT_EQ(body_of(none), (json{{"error", "unauthorized"}})) << path;

    auto wrong = s.http().Get(path, {{"Authorization", "Bearer wrong"}});
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 401) << path;

    for (const char* almost : {"Bearer s3cre", "Bearer s3cretX", "s3cret", "Basic s3cret"}) {
      auto r = s.http().Get(path, {{"Authorization", almost}});
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 401) << path << " with " << almost;
    }

    auto right = s.http().Get(path, {{"Authorization", "Bearer s3cret"}});
    ASSERT_TRUE(right);
    EXPECT_EQ(right->status, 200) << path;
  }

  auto put = s.http().Put("/settings/y", "2", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 401);
  EXPECT_FALSE(s.store().contains("y"));
}

TEST(HttpLog, the_access_log_names_method_path_and_status_never_bodies_or_tokens) {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>(
      "http_test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_level(spdlog::level::debug);
  HttpOptions o;
  o.token = "tok3n";
  o.logger = logger;
  Served s(o);
  auto r = s.http().Put("/settings/logged", {{"Authorization", "Bearer tok3n"}},
                        R"("very-private-value")", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  s.server().stop();  // Joins the workers: every log line is written.
  const std::string log = out.str();
  EXPECT_NE(log.find("PUT /settings/logged 200"), std::string::npos) << log;
  EXPECT_EQ(log.find("very-private-value"), std::string::npos) << log;
  EXPECT_EQ(log.find("tok3n"), std::string::npos) << log;
}

// ---------------------------------------------------------------------------------------------
// Health and metrics

// ---------------------------------------------------------------------------------------------
// The web console's files

TEST(HttpConsole, the_console_is_served_at_ui_with_headers_that_confine_it) {
  Served s;
  auto page = s.http().Get("/ui/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_TRUE(page->body.find("app.js") != std::string::npos) << page->body.substr(0, 200);
  EXPECT_TRUE(page->get_header_value("Content-Security-Policy").starts_with("default-src 'self'"));
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(s.http().Get("/ui")->body, page->body);
  EXPECT_EQ(s.http().Get("/ui/index.html")->body, page->body);
  auto script = s.http().Get("/ui/app.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_EQ(script->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_GT(script->body.size(), 1000u);
  EXPECT_EQ(s.http().Get("/ui/app.css")->get_header_value("Content-Type"),
            "text/css; charset=utf-8");
  EXPECT_EQ(s.http().Get("/ui/secret.txt")->status, 404);
  auto post = s.http().Post("/ui/", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
}

TEST(HttpConsole, whoami_without_named_tokens_says_the_caller_may_do_everything) {
  Served s;
  auto r = s.http().Get("/whoami");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  json body = body_of(r);
  EXPECT_EQ(body.at("auth"), false);
  EXPECT_TRUE(body.at("name").is_null());
  EXPECT_EQ(body.at("rules"), json::parse(R"([{"prefix":"","access":"admin"}])"));
  EXPECT_EQ(body.at("stores"), json::array({"main"}));
}

TEST(HttpHealth, health_reports_the_store_crc_count_and_revision) {
  Served s;
  s.store().set("a", 1);
  s.store().set("b", "two");
  // The revision the store is complete to moves on its own (its writes' notifications arrive
  // later): equal to the store's once it settles.
  ASSERT_TRUE(wait_until([&] {
    auto h = s.http().Get("/health");
    return h && body_of(h).at("revision").get<int64_t>() == s.store().stats().revision;
  }));
  auto r = s.http().Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  json h = body_of(r);
  EXPECT_EQ(h.at("status"), "healthy");
  EXPECT_EQ(h.at("count"), 2);
  EXPECT_EQ(h.at("crc").get<uint32_t>(), s.store().get_crc());
  EXPECT_EQ(h.at("connected"), true);
  EXPECT_EQ(h.at("stores").at("main").at("crc").get<uint32_t>(), s.store().get_crc());
}

TEST(HttpMetrics, metrics_are_prometheus_text_with_gauges_counters_and_the_lag_histogram) {
  Served s;
  // A write from another instance arrives through a notification: it feeds the lag histogram.
  auto other = Store::open(dsn(), test_options(s.table()));
  other->set("remote", 1);
  s.store().set("local", 2);
  ASSERT_TRUE(wait_until([&] {
    auto r = s.http().Get("/metrics");
    return r && r->body.find("syncconfig_notification_lag_seconds_count{store=\"main\"} 0") ==
                    std::string::npos;
  }));

  auto r = s.http().Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
  const std::string& m = r->body;
  for (const char* line : {
           "# TYPE syncconfig_keys gauge",
           "syncconfig_keys{store=\"main\"} 2",
           "syncconfig_connected{store=\"main\"} 1",
           "# TYPE syncconfig_writes_total counter",
           "syncconfig_writes_total{store=\"main\"} 1",
           "syncconfig_deletes_total{store=\"main\"} 0",
           "syncconfig_notifications_applied_total{store=\"main\"}",
           "syncconfig_notifications_ignored_total{store=\"main\"}",
           "syncconfig_resyncs_total{store=\"main\"}",
           "syncconfig_crc_mismatches_total{store=\"main\"}",
           "syncconfig_reconnects_total{store=\"main\"}",
           "syncconfig_callback_errors_total{store=\"main\"}",
           "# TYPE syncconfig_callback_queue_depth gauge",
           "syncconfig_callback_queue_depth{store=\"main\"}",
           "syncconfig_callback_queue_peak{store=\"main\"}",
           "# TYPE syncconfig_notification_lag_seconds histogram",
           "syncconfig_notification_lag_seconds_bucket{store=\"main\",le=\"0.0005\"}",
           "syncconfig_notification_lag_seconds_bucket{store=\"main\",le=\"5\"}",
           "syncconfig_notification_lag_seconds_bucket{store=\"main\",le=\"+Inf\"}",
           "syncconfig_notification_lag_seconds_sum{store=\"main\"}",
           "syncconfig_notification_lag_seconds_count{store=\"main\"}",
       }) {
    EXPECT_NE(m.find(line), std::string::npos) << "missing: " << line << "\n" << m;
  }
  EXPECT_NE(m.find("syncconfig_crc{store=\"main\"} " + std::to_string(s.store().get_crc())),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Several stores

TEST(HttpStores, each_served_store_has_its_own_routes_and_the_first_is_the_default) {
  auto a = Store::open(dsn(), test_options(unique_name("t_http_a")));
  auto b = Store::open(dsn(), test_options(unique_name("t_http_b")));
  HttpOptions o;
  o.port = 0;
  HttpServer server({{"a", a.get()}, {"b", b.get()}}, o);
  server.start();
  auto http = client_for(server.port());

  auto put = http->Put("/stores/b/settings/x", "\"in b\"", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(b->get_string("x"), "in b");
  EXPECT_FALSE(a->contains("x"));

  a->set("x", "in a");
  auto from_default = http->Get("/settings/x");
  ASSERT_TRUE(from_default);
  EXPECT_EQ(body_of(from_default), "in a");
  auto from_a = http->Get("/stores/a/settings/x");
  ASSERT_TRUE(from_a);
  EXPECT_EQ(body_of(from_a), "in a");
  auto from_b = http->Get("/stores/b/settings");
  ASSERT_TRUE(from_b);
  EXPECT_EQ(body_of(from_b), (json{{"x", "in b"}}));

  auto unknown = http->Get("/stores/c/settings/x");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(body_of(unknown).at("error").get<std::string>().find("'c'"), std::string::npos);

  auto health = http->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(body_of(health).at("stores").at("b").at("count"), 1);
  EXPECT_EQ(body_of(health).at("stores").at("b").at("crc").get<uint32_t>(), b->get_crc());

  auto metrics = http->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("syncconfig_keys{store=\"a\"} 1"), std::string::npos);
  EXPECT_NE(metrics->body.find("syncconfig_keys{store=\"b\"} 1"), std::string::npos);
}

TEST(HttpStores, unusable_store_lists_are_refused_when_constructing) {
  auto a = Store::open(dsn(), test_options(unique_name("t_http_bad")));
  EXPECT_THROW(HttpServer({}, {}), Error);
  EXPECT_THROW(HttpServer({{"a", nullptr}}, {}), Error);
  EXPECT_THROW(HttpServer({{"a", a.get()}, {"a", a.get()}}, {}), Error);
  EXPECT_THROW(HttpServer({{"a/b", a.get()}}, {}), Error);
  HttpOptions o;
  o.io_threads = 0;
  EXPECT_THROW(HttpServer({{"a", a.get()}}, o), Error);
  o = HttpOptions{};
  o.watch_progress_interval = 0ms;
  EXPECT_THROW(HttpServer({{"a", a.get()}}, o), Error);
}

TEST(HttpServerLifecycle, a_busy_port_is_an_unavailable_error_naming_the_address) {
  Served s;
  HttpOptions o;
  o.port = s.port();
  HttpServer second({{"main", &s.store()}}, o);
  try {
    second.start();
    FAIL() << "bound a port already in use";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find(std::to_string(s.port())), std::string::npos);
  }
  second.stop();
}

// ---------------------------------------------------------------------------------------------
// /watch

HttpOptions watch_options() {
  HttpOptions o;
  o.watch_keepalive = 200ms;  // Keeps streams talking, so that clients can hang up quickly.
  return o;
}

int64_t id_of(const SseEvent& e) { return std::stoll(e.id); }
int64_t revision_of(const SseEvent& e) { return json::parse(e.data).at("revision"); }

// Per key, the revisions a stream delivered never go back; ids strictly increase.
void expect_ordered(const std::vector<SseEvent>& events) {
  std::map<std::string, int64_t> last;
  int64_t last_id = -1;
  for (const auto& e : events) {
    if (e.event != "change") continue;
    EXPECT_GT(id_of(e), last_id) << e.data;
    last_id = id_of(e);
    EXPECT_EQ(id_of(e), revision_of(e)) << e.data;
    std::string key = key_of(e);
    if (last.count(key)) EXPECT_GT(id_of(e), last[key]) << key;
    last[key] = id_of(e);
  }
}

TEST(HttpWatch, a_write_by_another_instance_arrives_as_a_change_whose_id_is_its_revision) {
  Served s(watch_options());
  // Compression would hold events back in the compressor: streams are never compressed.
  WatchClient w(s.port(), "/watch", {{"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_TRUE(w.wait_for_events(1));  // `ready`, carrying the position.
  EXPECT_EQ(w.status(), 200);
  EXPECT_EQ(w.content_type(), "text/event-stream");
  EXPECT_EQ(w.events()[0].event, "ready");
  EXPECT_EQ(id_of(w.events()[0]), s.store().stats().revision);

  auto other = Store::open(dsn(), test_options(s.table()));
  other->set("feature:x", json{{"on", true}});
  ASSERT_TRUE(w.wait_for_events(2));
  SseEvent e = w.events()[1];
  EXPECT_EQ(e.event, "change");
  json data = json::parse(e.data);
  EXPECT_EQ(data.at("key"), "feature:x");
  EXPECT_EQ(data.at("value"), (json{{"on", true}}));
  EXPECT_EQ(data.at("deleted"), false);
  EXPECT_EQ(id_of(e), data.at("revision").get<int64_t>());
  EXPECT_GT(id_of(e), id_of(w.events()[0]));

  other->remove("feature:x");
  ASSERT_TRUE(w.wait_for_events(3));
  json deleted = json::parse(w.events()[2].data);
  EXPECT_EQ(deleted.at("deleted"), true);
  EXPECT_TRUE(deleted.at("value").is_null());
  EXPECT_GT(id_of(w.events()[2]), id_of(e));
}

TEST(HttpWatch, prefixes_filter_the_events_and_may_be_repeated) {
  Served s(watch_options());
  WatchClient w(s.port(), "/watch?prefix=feature%3A&prefix=db:");
  ASSERT_TRUE(w.wait_for_events(1));
  s.store().set("other", 1);
  s.store().set("feature:a", 2);
  s.store().set("db:b", 3);
  ASSERT_TRUE(w.wait_for_events(3));
  ASSERT_EQ(w.changes().size(), 2u);
  EXPECT_EQ(key_of(w.changes()[0]), "feature:a");
  EXPECT_EQ(key_of(w.changes()[1]), "db:b");
}

TEST(HttpWatch, a_snapshot_says_the_revision_a_watch_continues_after) {
  Served s(watch_options());
  s.store().set("a", 1);
  auto listing = s.http().Get("/settings");
  ASSERT_TRUE(listing);
  ASSERT_TRUE(listing->has_header("X-Syncconfig-Revision"));
  const std::string revision = listing->get_header_value("X-Syncconfig-Revision");
  EXPECT_EQ(body_of(listing), (json{{"a", 1}}));
  s.store().set("b", 2);
  WatchClient w(s.port(), "/watch?since=" + revision);
  ASSERT_TRUE(w.wait_until_change("b"));
  EXPECT_EQ(w.events()[0].event, "ready");
  EXPECT_EQ(id_of(w.events()[0]), std::stoll(revision));
  // The snapshot is complete to its revision and may hold a later change too (this instance's
  // own write, before the listener confirmed that nothing older was in flight): such a change
  // comes again, with the value the snapshot had. Nothing the snapshot lacked is skipped.
  for (const auto& e : w.changes()) {
    if (key_of(e) == "b") continue;
    EXPECT_EQ(json::parse(e.data).at("value"), body_of(listing).at(key_of(e))) << e.data;
  }
}

TEST(HttpWatch, resuming_with_last_event_id_replays_exactly_the_missed_changes_in_order) {
  Served s(watch_options());
  auto other = Store::open(dsn(), test_options(s.table()));
  WatchClient witness(s.port(), "/watch");
  ASSERT_TRUE(witness.wait_for_events(1));

  std::string last_id;
  {
    WatchClient first(s.port(), "/watch");
    ASSERT_TRUE(first.wait_for_events(1));
    other->set("before", 0);
    ASSERT_TRUE(first.wait_for_events(2));
    last_id = first.events().back().id;
  }
  other->set("m1", 1);
  other->set("m2", 2);
  other->remove("before");
  ASSERT_TRUE(witness.wait_for_events(5));

  WatchClient resumed(s.port(), "/watch", {{"Last-Event-ID", last_id}});
  ASSERT_TRUE(resumed.wait_for_events(4));  // ready + 3
  other->set("after", 3);                   // A live change after the replay: no gap, no duplicate.
  ASSERT_TRUE(resumed.wait_for_events(5));

  std::vector<SseEvent> got = resumed.events();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].event, "ready");
  EXPECT_EQ(got[0].id, last_id);
  std::vector<std::string> keys;
  for (std::size_t i = 1; i < got.size(); ++i) keys.push_back(key_of(got[i]));
  EXPECT_EQ(keys, (std::vector<std::string>{"m1", "m2", "before", "after"}));
  EXPECT_TRUE(json::parse(got[3].data).at("deleted").get<bool>());
  expect_ordered(got);
  // The same events, ids included, as the witness saw live.
  ASSERT_TRUE(witness.wait_for_events(6));
  std::vector<SseEvent> live = witness.changes();
  ASSERT_EQ(live.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(live[i + 1].id, got[i + 1].id);
    EXPECT_EQ(live[i + 1].data, got[i + 1].data);
  }
}

TEST(HttpWatch, bad_since_last_event_id_or_prefix_is_400_naming_it) {
  Served s(watch_options());
  for (const char* path : {"/watch?since=abc", "/watch?since=-1", "/watch?since=1x",
                           "/watch?prefix=%FF", "/watch?prefix=a%00b"}) {
    auto r = s.http().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 400) << path;
    std::string error = body_of(r).at("error");
    EXPECT_TRUE(error.find("since") != std::string::npos ||
                error.find("prefix") != std::string::npos)
        << path << ": " << error;
  }
  auto r = s.http().Get("/watch", {{"Last-Event-ID", "garbage"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(body_of(r).at("error").get<std::string>().find("Last-Event-ID"), std::string::npos);
}

TEST(HttpWatch, an_id_older_than_the_memory_history_is_resumed_from_the_table) {
  HttpOptions o = watch_options();
  o.watch_history = 2;
  Served s(o);
  WatchClient witness(s.port(), "/watch");
  ASSERT_TRUE(witness.wait_for_events(1));
  const std::string start = witness.events()[0].id;
  for (int i = 0; i < 5; ++i) {
    s.store().set("k" + std::to_string(i), i);
    ASSERT_TRUE(witness.wait_for_events(2 + i));
  }
  s.store().remove("k1");
  ASSERT_TRUE(witness.wait_for_events(7));

  WatchClient resumed(s.port(), "/watch", {{"Last-Event-ID", start}});
  ASSERT_TRUE(resumed.wait_for_events(6));  // ready + 5 (k1 only as its deletion)
  EXPECT_EQ(resumed.events()[0].event, "ready");
  std::vector<std::string> keys;
  for (const auto& e : resumed.changes()) keys.push_back(key_of(e));
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k2", "k3", "k4", "k1"}));
  expect_ordered(resumed.events());
  s.store().set("k5", 5);  // Live from there on.
  ASSERT_TRUE(resumed.wait_for_events(7));
  EXPECT_EQ(key_of(resumed.events()[6]), "k5");
  ASSERT_TRUE(witness.wait_for_events(8));
  EXPECT_EQ(witness.changes().back().id, resumed.events()[6].id);
}

TEST(HttpWatch, a_stream_resumes_on_another_server_and_after_that_server_restarts) {
  Served a(watch_options());
  auto writer = Store::open(dsn(), test_options(a.table()));
  auto store_b = Store::open(dsn(), test_options(a.table()));
  HttpOptions ob = watch_options();
  ob.port = 0;
  auto server_b =
      std::make_unique<HttpServer>(std::vector<ServedStore>{{"main", store_b.get()}}, ob);
  server_b->start();

  std::string last_id;
  {
    WatchClient on_a(a.port(), "/watch");
    ASSERT_TRUE(on_a.wait_for_events(1));
    writer->set("x", 1);
    writer->set("y", 1);
    ASSERT_TRUE(on_a.wait_for_events(3));
    last_id = on_a.events().back().id;
  }
  writer->set("x", 2);
  writer->remove("y");
  WatchClient on_b(server_b->port(), "/watch", {{"Last-Event-ID", last_id}});
  ASSERT_TRUE(on_b.wait_for_events(3));
  ASSERT_EQ(on_b.changes().size(), 2u);
  EXPECT_EQ(json::parse(on_b.changes()[0].data).at("value"), 2);
  EXPECT_TRUE(json::parse(on_b.changes()[1].data).at("deleted").get<bool>());
  expect_ordered(on_b.events());
  last_id = on_b.events().back().id;
  on_b.close();

  // B restarts: a new store and server on the same table know nothing in memory.
  server_b.reset();
  store_b.reset();
  writer->set("z", 3);
  store_b = Store::open(dsn(), test_options(a.table()));
  server_b = std::make_unique<HttpServer>(std::vector<ServedStore>{{"main", store_b.get()}}, ob);
  server_b->start();
  WatchClient again(server_b->port(), "/watch", {{"Last-Event-ID", last_id}});
  ASSERT_TRUE(again.wait_for_events(2));
  EXPECT_EQ(again.events()[0].event, "ready");
  ASSERT_EQ(again.changes().size(), 1u);
  EXPECT_EQ(key_of(again.changes()[0]), "z");
  // The id is the revision every server gives that change.
  WatchClient on_a(a.port(), "/watch?since=" + last_id);
  ASSERT_TRUE(on_a.wait_for_events(2));
  EXPECT_EQ(on_a.changes().at(0).id, again.changes()[0].id);
}

TEST(HttpWatch, an_id_beyond_the_table_or_before_pruned_deletions_gets_a_reset_not_stale_data) {
  Served s(watch_options());
  s.store().set("k", 1);
  const int64_t newest = s.store().stats().revision;
  WatchClient ahead(s.port(), "/watch", {{"Last-Event-ID", std::to_string(newest + 1000)}});
  ASSERT_TRUE(ahead.wait_for_events(1));
  EXPECT_EQ(ahead.events()[0].event, "reset");
  EXPECT_EQ(json::parse(ahead.events()[0].data).at("settings"), (json{{"k", 1}}));
  EXPECT_NE(json::parse(ahead.events()[0].data).at("reason").get<std::string>().find("beyond"),
            std::string::npos);

  // Deletions after revision 1 pruned: the table cannot say what changed since then. A server
  // that started later has nothing in memory either.
  s.store().set("gone", 1);
  s.store().remove("gone");
  Sql sql(dsn());
  sql.exec("INSERT INTO " + s.table() + "_changes (revision, key, op) VALUES (" +
           std::to_string(s.store().stats().revision) +
           ", NULL, 'compact') ON CONFLICT (revision) "
           "DO UPDATE SET op = 'compact', key = NULL");
  auto later_store = Store::open(dsn(), test_options(s.table()));
  HttpOptions o = watch_options();
  o.port = 0;
  HttpServer later({{"main", later_store.get()}}, o);
  later.start();
  WatchClient old(later.port(), "/watch?since=1");
  ASSERT_TRUE(old.wait_for_events(1));
  EXPECT_EQ(old.events()[0].event, "reset");
  EXPECT_EQ(json::parse(old.events()[0].data).at("settings"), (json{{"k", 1}}));
  s.store().set("after", 2);  // Live after the reset.
  ASSERT_TRUE(old.wait_for_events(2));
  EXPECT_EQ(key_of(old.events()[1]), "after");
  EXPECT_GT(id_of(old.events()[1]), id_of(old.events()[0]));
}

TEST(HttpWatch, a_truncate_after_the_id_is_resumed_exactly_from_the_change_log) {
  Served s(watch_options());
  s.store().set("a", 1);
  const std::string before = std::to_string(s.store().stats().revision);
  Sql(dsn()).exec("TRUNCATE " + s.table());
  s.store().set("b", 2);
  ASSERT_TRUE(wait_until([&] { return !s.store().contains("a") && s.store().contains("b"); }));
  // Restarted servers know nothing in memory: only the table answers, and its change log
  // recorded every key the TRUNCATE removed (protocol 2), so no reset is needed.
  auto store = Store::open(dsn(), test_options(s.table()));
  HttpOptions o = watch_options();
  o.port = 0;
  HttpServer fresh({{"main", store.get()}}, o);
  fresh.start();
  WatchClient w(fresh.port(), "/watch", {{"Last-Event-ID", before}});
  ASSERT_TRUE(w.wait_until_change("b"));
  for (const auto& e : w.events()) EXPECT_NE(e.event, "reset");
  std::vector<SseEvent> changes = w.changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(json::parse(changes[0].data).at("key"), "a");
  EXPECT_EQ(json::parse(changes[0].data).at("deleted"), true);
  EXPECT_EQ(json::parse(changes[1].data).at("key"), "b");
}

TEST(HttpWatch, a_recreated_table_resets_open_streams) {
  Served s(watch_options());
  // More revisions than the new table will have: its revisions are seen to go backwards.
  for (int i = 0; i < 10; ++i) s.store().set("old", i);
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));
  // Drop and recreate the table behind the store's back: its revisions start over.
  auto other = Store::open(dsn(), test_options(s.table()));
  other.reset();
  Sql sql(dsn());
  sql.exec("DROP TABLE " + s.table() + " CASCADE; DROP TABLE " + s.table() +
           "_changes; DROP SEQUENCE " + s.table() + "_revision_seq");
  auto recreated = Store::open(dsn(), test_options(s.table()));
  recreated->set("new", 2);
  // The server's store notices when its listener reconnects (or at its heartbeat).
  sql.exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
      "'syncconfig-listener' AND pid <> pg_backend_pid()");
  auto has_reset = [&] {
    for (const auto& e : w.events()) {
      if (e.event == "reset") return true;
    }
    return false;
  };
  wait_until(has_reset, 15s);
  std::vector<SseEvent> events = w.events();
  auto reset = std::find_if(events.begin(), events.end(),
                            [](const SseEvent& e) { return e.event == "reset"; });
  std::string seen;
  for (const auto& e : events) seen += e.event + " " + e.id + " " + e.data + "\n";
  ASSERT_NE(reset, events.end()) << seen;
  EXPECT_EQ(json::parse(reset->data).at("settings"), (json{{"new", 2}}));
}

// Event ids carry an anchor: the revision and a fingerprint of the newest change the server had
// released (docs/protocol.md, "Resume tokens"). A server checks it before resuming: against its
// memory, or against the change log when its memory does not reach back.
TEST(HttpWatch, a_resume_token_is_checked_against_the_history_and_a_mismatch_is_a_history_reset) {
  Served s(watch_options());
  std::string token;
  {
    WatchClient w(s.port(), "/watch");
    ASSERT_TRUE(w.wait_for_events(1));
    s.store().set("a", 1);
    s.store().set("b", 2);
    ASSERT_TRUE(w.wait_until_change("b"));
    token = w.changes().back().id;
  }
  std::optional<service::detail::ResumePoint> point = service::detail::parse_resume_point(token);
  ASSERT_TRUE(point && point->anchor) << token;
  EXPECT_EQ(point->anchor->revision, point->revision);  // A change's id is anchored at itself.
  EXPECT_EQ(point->anchor->fingerprint, service::detail::change_fingerprint("b", json(2)));
  // The same revision naming another change: what a client of a diverged history holds.
  const std::string other = service::detail::format_event_id(
      point->revision,
      service::detail::ResumeAnchor{point->revision, point->anchor->fingerprint ^ 1u});
  s.store().set("c", 3);
  const json everything = {{"a", 1}, {"b", 2}, {"c", 3}};

  auto later_store = Store::open(dsn(), test_options(s.table()));
  HttpOptions o = watch_options();
  o.port = 0;
  HttpServer later({{"main", later_store.get()}}, o);  // Nothing of the past in memory.
  later.start();
  for (int port : {s.port(), later.port()}) {
    SCOPED_TRACE(port == s.port() ? "from memory" : "from the change log");
    {
      WatchClient w(port, "/watch", {{"Last-Event-ID", token}});
      ASSERT_TRUE(w.wait_until_change("c"));
      EXPECT_EQ(w.events()[0].event, "ready");
      EXPECT_EQ(id_of(w.events()[0]), point->revision);
      ASSERT_EQ(w.changes().size(), 1u);
    }
    {
      WatchClient w(port, "/watch", {{"Last-Event-ID", other}});
      ASSERT_TRUE(w.wait_for_events(1));
      EXPECT_EQ(w.events()[0].event, "reset");
      const json d = json::parse(w.events()[0].data);
      EXPECT_TRUE(d.at("history_reset").get<bool>()) << d;
      EXPECT_EQ(d.at("settings"), everything);
    }
  }
  // Ready (and progress) events are anchored too: at the newest change at or below them.
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));
  std::optional<service::detail::ResumePoint> ready =
      service::detail::parse_resume_point(w.events()[0].id);
  ASSERT_TRUE(ready && ready->anchor) << w.events()[0].id;
  EXPECT_EQ(ready->anchor->fingerprint, service::detail::change_fingerprint("c", json(3)));
}

// A client that resumes from a snapshot (GET /settings, or a snapshot file written from one)
// names the last change it holds, as an event id does, and /changes checks it.
TEST(HttpChanges, settings_say_where_to_resume_and_changes_check_an_anchored_since) {
  Served s(watch_options());
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));
  s.store().set("a", 1);
  const int64_t b = s.store().set("b", 2);
  ASSERT_TRUE(w.wait_until_change("b"));  // The server's feed has released b.

  auto settings = s.http().Get("/settings");
  ASSERT_TRUE(settings);
  ASSERT_EQ(settings->status, 200);
  ASSERT_TRUE(settings->has_header("X-Syncconfig-Resume-Id"));
  const std::string id = settings->get_header_value("X-Syncconfig-Resume-Id");
  std::optional<service::detail::ResumePoint> point = service::detail::parse_resume_point(id);
  ASSERT_TRUE(point && point->anchor) << id;
  EXPECT_EQ(point->revision, b);
  EXPECT_EQ(point->revision, std::stoll(settings->get_header_value("X-Syncconfig-Revision")));
  EXPECT_EQ(point->anchor->fingerprint, service::detail::change_fingerprint("b", json(2)));

  const int64_t c = s.store().set("c", 3);
  auto changes = [&](const std::string& since) {
    auto r = s.http().Get("/changes?since=" + since);
    EXPECT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body);
  };
  const json same = changes(id);
  EXPECT_TRUE(same.at("complete").get<bool>()) << same;
  EXPECT_FALSE(same.value("history_reset", false));
  ASSERT_EQ(same.at("changes").size(), 1u) << same;
  EXPECT_EQ(same.at("changes")[0].at("key"), "c");
  EXPECT_EQ(same.at("changes")[0].at("revision"), c);

  // The same number naming another change: a client of another history.
  const std::string other = service::detail::format_event_id(
      point->revision,
      service::detail::ResumeAnchor{point->anchor->revision, point->anchor->fingerprint ^ 1u});
  // Checked in memory by this server, and in the change log by one that has no past in memory.
  auto later_store = Store::open(dsn(), test_options(s.table()));
  HttpOptions o = watch_options();
  o.port = 0;
  HttpServer later({{"main", later_store.get()}}, o);
  later.start();
  auto later_client = client_for(later.port());
  for (httplib::Client* http : {&s.http(), later_client.get()}) {
    auto r = http->Get("/changes?since=" + other);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json diverged = json::parse(r->body);
    EXPECT_FALSE(diverged.at("complete").get<bool>()) << diverged;
    EXPECT_TRUE(diverged.at("history_reset").get<bool>()) << diverged;
    EXPECT_TRUE(diverged.at("changes").empty());
    EXPECT_NE(diverged.at("reason").get<std::string>().find(std::to_string(point->revision)),
              std::string::npos)
        << diverged;
  }
  auto bad = s.http().Get("/changes?since=" + std::to_string(b) + ".xyz");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  later.stop();
}

// A client that catches up with /changes (a RemoteStore that started stale) resumes its stream
// from a checked id, so that a failover right after the catch-up is still detected.
TEST(HttpChanges, a_complete_answer_says_where_to_resume_from_it) {
  Served s(watch_options());
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));
  s.store().set("a", 1);
  const int64_t c = s.store().set("c", 3);
  ASSERT_TRUE(w.wait_until_change("c"));  // The server's feed has released c.

  auto r = s.http().Get("/changes?since=0");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(json::parse(r->body).at("complete").get<bool>()) << r->body;
  ASSERT_TRUE(r->has_header("X-Syncconfig-Resume-Id"));
  const std::string id = r->get_header_value("X-Syncconfig-Resume-Id");
  std::optional<service::detail::ResumePoint> point = service::detail::parse_resume_point(id);
  ASSERT_TRUE(point && point->anchor) << id;
  EXPECT_EQ(point->revision, c);
  EXPECT_EQ(point->revision, std::stoll(r->get_header_value("X-Syncconfig-Revision")));
  EXPECT_EQ(point->anchor->fingerprint, service::detail::change_fingerprint("c", json(3)));

  // Resuming from it: nothing missed, and the id is accepted as this history's.
  auto again = s.http().Get("/changes?since=" + id);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->status, 200) << again->body;
  const json body = json::parse(again->body);
  EXPECT_TRUE(body.at("complete").get<bool>()) << body;
  EXPECT_FALSE(body.value("history_reset", false));
  EXPECT_TRUE(body.at("changes").empty()) << body;

  // An answer that is not complete (another history) gives no point to resume from.
  const std::string other = service::detail::format_event_id(
      point->revision,
      service::detail::ResumeAnchor{point->anchor->revision, point->anchor->fingerprint ^ 1u});
  auto diverged = s.http().Get("/changes?since=" + other);
  ASSERT_TRUE(diverged);
  ASSERT_EQ(diverged->status, 200);
  EXPECT_TRUE(json::parse(diverged->body).at("history_reset").get<bool>()) << diverged->body;
  EXPECT_FALSE(diverged->has_header("X-Syncconfig-Resume-Id"));
}

// The case a revision number cannot tell: the table was recreated (or a failover lost commits)
// and its new history has since passed the revision the client holds.
TEST(HttpWatch, a_token_of_a_recreated_table_resets_even_once_the_new_table_passed_its_revision) {
  std::string table;
  std::string token;
  {
    Served s(watch_options());
    table = s.table();
    WatchClient w(s.port(), "/watch");
    ASSERT_TRUE(w.wait_for_events(1));
    s.store().set("old", 1);
    s.store().set("old", 2);
    ASSERT_TRUE(w.wait_for_events(3));
    token = w.events()[2].id;
  }
  ASSERT_TRUE(service::detail::parse_resume_point(token)->anchor) << token;
  Sql(dsn()).exec("DROP TABLE " + table + " CASCADE; DROP TABLE " + table +
                  "_changes; DROP SEQUENCE " + table + "_revision_seq");
  Served fresh(watch_options(), "t_http", table);
  for (int i = 0; i < 10; ++i) fresh.store().set("new" + std::to_string(i % 3), i);
  const int64_t revision = service::detail::parse_resume_point(token)->revision;
  ASSERT_GT(fresh.store().stats().revision, revision);

  WatchClient w(fresh.port(), "/watch", {{"Last-Event-ID", token}});
  ASSERT_TRUE(w.wait_for_events(1));
  EXPECT_EQ(w.events()[0].event, "reset");
  const json d = json::parse(w.events()[0].data);
  EXPECT_TRUE(d.at("history_reset").get<bool>()) << d;
  EXPECT_EQ(d.at("settings"), (json{{"new0", 9}, {"new1", 7}, {"new2", 8}}));
  // By its number alone the same point resumes (what clients without the anchor get).
  WatchClient by_number(fresh.port(), "/watch", {{"Last-Event-ID", std::to_string(revision)}});
  ASSERT_TRUE(by_number.wait_for_events(1));
  EXPECT_EQ(by_number.events()[0].event, "ready");
}

TEST(HttpWatch, idle_streams_get_progress_events_and_keepalive_comments) {
  HttpOptions o;
  o.watch_progress_interval = 100ms;
  o.watch_keepalive = 150ms;
  Served s(o);
  WatchClient w(s.port(), "/watch?prefix=mine:");
  ASSERT_TRUE(w.wait_for_events(1));
  s.store().set("theirs", 1);  // Filtered out: only a progress event says it was passed.
  const int64_t revision = s.store().stats().revision;
  ASSERT_TRUE(wait_until([&] {
    for (const auto& e : w.events()) {
      if (e.event == "progress" && id_of(e) >= revision) return true;
    }
    return false;
  }));
  for (const auto& e : w.events()) {
    if (e.event == "progress") EXPECT_EQ(json::parse(e.data).at("revision"), id_of(e));
  }
  ASSERT_TRUE(wait_until([&] { return w.comments() >= 1; }));
  EXPECT_TRUE(w.changes().empty());
}

TEST(HttpWatch, ten_thousand_is_not_a_thread_count_hundreds_of_streams_and_health_still_answers) {
  Served s(watch_options());
  std::vector<std::unique_ptr<WatchClient>> streams;
  for (int i = 0; i < 300; ++i) {
    streams.push_back(std::make_unique<WatchClient>(s.port(), "/watch"));
  }
  for (auto& w : streams) ASSERT_TRUE(w->wait_for_events(1));
  auto health = s.http().Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  s.store().set("fan", "out");
  for (auto& w : streams) {
    ASSERT_TRUE(w->wait_for_events(2));
    EXPECT_EQ(key_of(w->changes().at(0)), "fan");
  }
}

// A raw client socket: for clients that misbehave on purpose.
class RawSocket {
 public:
  explicit RawSocket(int port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawSocket() { ::close(fd_); }
  bool ok() const { return ok_; }
  bool send(std::string_view data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Whether the server closed the connection (reads and discards what is pending).
  bool closed_by_peer() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST(HttpWatch, a_client_that_stops_reading_is_disconnected_and_counted) {
  HttpOptions o = watch_options();
  // Bounds the stalled client passes by far (15 MB behind, a write stuck for good) while a client
  // that reads, on a loaded machine, keeps well within them: 64 KB, less than one event, once
  // cut off the healthy client too.
  o.watch_write_timeout = 2s;
  o.watch_max_lag_bytes = 4 << 20;
  Served s(o);
  RawSocket stalled(s.port(), /*receive_buffer=*/4096);
  ASSERT_TRUE(stalled.ok());
  ASSERT_TRUE(stalled.send("GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"));
  WatchClient healthy(s.port(), "/watch");
  ASSERT_TRUE(healthy.wait_for_events(1));
  // Far more than the stalled client's and the kernel's buffers hold (15 MB; a socket's send
  // buffer grows to 4 MB at most here).
  const std::string big(100000, 'x');
  for (int i = 0; i < 150; ++i)
    s.store().set("big" + std::to_string(i % 5), big + std::to_string(i));
  ASSERT_TRUE(wait_until([&] {
    auto m = s.http().Get("/metrics");
    return m && m->body.find("syncconfig_watch_slow_disconnects_total{store=\"main\"} 1") !=
                    std::string::npos;
  })) << s.http().Get("/metrics")->body
      << " healthy got " << healthy.events().size();
  // The others are not held back (15 MB to read: generous for sanitizer builds).
  ASSERT_TRUE(healthy.wait_for_events(151, 30s));
  // The stalled client finds its stream closed once it reads (after what was sent before).
  std::string ignored;
  EXPECT_TRUE(wait_until([&] { return stalled.closed_by_peer(); }));
}

TEST(HttpServerLimits, slow_header_senders_hold_a_socket_not_a_thread_and_are_cut_off) {
  HttpOptions o;
  o.header_timeout = 1500ms;
  Served s(o);
  std::vector<std::unique_ptr<RawSocket>> trickle;
  for (int i = 0; i < 40; ++i) {
    trickle.push_back(std::make_unique<RawSocket>(s.port()));
    ASSERT_TRUE(trickle.back()->ok());
    ASSERT_TRUE(trickle.back()->send("GET /health HTTP/1.1\r\n"));
  }
  // While they trickle a header line every 200 ms, /health keeps answering.
  int answered = 0;
  auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    for (auto& t : trickle) t->send("X-Slow: 1\r\n");
    auto h = s.http().Get("/health");
    answered += h && h->status == 200;
    std::this_thread::sleep_for(200ms);  // The attacker's pace, not a wait for the server.
  }
  EXPECT_GE(answered, 4);
  // Past header_timeout from their first byte, the server has closed every one of them.
  EXPECT_TRUE(wait_until(
      [&] {
        for (auto& t : trickle) {
          t->send("X-Slow: 1\r\n");
          if (!t->closed_by_peer()) return false;
        }
        return true;
      },
      5s));
}

TEST(HttpServerLimits, a_header_over_the_limit_is_431_and_an_idle_connection_is_closed) {
  HttpOptions o;
  o.max_header_bytes = 1024;
  o.idle_timeout = 300ms;
  Served s(o);
  auto r = s.http().Get("/health", {{"X-Big", std::string(4000, 'a')}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  // Kept alive after a request, then idle: closed after idle_timeout.
  RawSocket idle(s.port());
  ASSERT_TRUE(idle.ok());
  ASSERT_TRUE(idle.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(wait_until([&] { return idle.closed_by_peer(); }, 5s));
  // A new connection that never sends a request is closed after header_timeout (10 s here),
  // not kept for idle_timeout: checked with a short one in the connection-flood test below.
}

// A flood of connections that send nothing (or half a request) takes every connection slot: the
// excess is answered 503 and closed at once, idle ones are cut off after header_timeout, and
// streams already open keep receiving changes all along. Once the flood stops, new clients are
// served again.
TEST(HttpServerLimits, a_connection_flood_does_not_starve_open_watchers_and_passes) {
  HttpOptions o = watch_options();
  o.max_connections = 64;
  o.header_timeout = 2s;
  Served s(o);
  WatchClient watcher(s.port(), "/watch");
  ASSERT_TRUE(watcher.wait_for_events(1));
  std::vector<std::unique_ptr<RawSocket>> flood;
  for (int i = 0; i < 300; ++i) {
    flood.push_back(std::make_unique<RawSocket>(s.port()));
    if (i % 2 == 0) flood.back()->send("GET /settings HTTP/1.1\r\nHost: x\r\n");  // Half a request.
  }
  // The excess was refused: some of the flood's sockets are closed by the server at once.
  EXPECT_TRUE(wait_until([&] {
    int closed = 0;
    for (auto& f : flood) closed += f->closed_by_peer();
    return closed >= 300 - 64;
  }));
  // While the slots are taken, the open stream gets every change.
  for (int i = 0; i < 20; ++i) s.store().set("during-flood", i);
  EXPECT_TRUE(watcher.wait_for_events(21));
  // header_timeout later every flood connection is gone (a new connection must send its first
  // request within it, like the rest of a request's head), and new clients get answers.
  EXPECT_TRUE(wait_until(
      [&] {
        for (auto& f : flood) {
          if (!f->closed_by_peer()) return false;
        }
        return true;
      },
      10s));
  flood.clear();
  EXPECT_TRUE(wait_until([&] {
    auto h = s.http().Get("/health");
    return h && h->status == 200;
  }));
}

// Without named tokens a client is its address (here every client: 127.0.0.1).
TEST(HttpServerLimits, a_client_over_the_rate_limit_gets_429_with_retry_after_but_health_answers) {
  HttpOptions o;
  o.rate_limit = 2;  // Slow enough that a loaded machine cannot refill it during the loop.
  o.rate_limit_burst = 5;
  Served s(o);
  s.store().set("k", 1);
  int ok = 0, limited = 0;
  std::string retry_after, error;
  for (int i = 0; i < 12; ++i) {
    auto r = s.http().Get("/settings/k");
    ASSERT_TRUE(r);
    if (r->status == 200) ++ok;
    if (r->status == 429) {
      ++limited;
      retry_after = r->get_header_value("Retry-After");
      error = body_of(r).at("error").get<std::string>();
    }
  }
  EXPECT_GE(ok, 5);
  EXPECT_LT(ok, 12);
  EXPECT_EQ(ok + limited, 12);
  EXPECT_EQ(retry_after, "1");
  EXPECT_NE(error.find("address 127.0.0.1 is over the rate limit"), std::string::npos) << error;
  // Liveness probes are never refused for someone else's load.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.http().Get("/health")->status, 200);
  auto m = s.http().Get("/metrics");
  if (m->status == 200) {
    EXPECT_NE(m->body.find("syncconfig_http_rate_limited_total " + std::to_string(limited)),
              std::string::npos);
  }
  // The bucket refills at its rate.
  EXPECT_TRUE(wait_until([&] { return s.http().Get("/settings/k")->status == 200; }));
}

TEST(HttpWatch, stop_returns_promptly_and_ends_open_streams) {
  HttpOptions o;  // Default 15 s keepalive: the stream is idle when stop() comes.
  Served s(o);
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));

  auto begin = std::chrono::steady_clock::now();
  s.server().stop();
  auto took = std::chrono::steady_clock::now() - begin;
  EXPECT_LT(took, 1s);
  EXPECT_TRUE(w.wait_finished(1s));
  s.server().stop();  // Idempotent.
  EXPECT_FALSE(s.http().Get("/health"));
}

// The feed alone, driven the way the store's dispatcher drives it (one change, then the progress
// past it) while a stream reads on another thread, as streams do at any moment: every change
// released reaches the reader, whenever it reads.
TEST(HttpWatchFeed, a_reader_reading_while_changes_are_released_misses_none_of_them) {
  auto store = Store::open(dsn(), test_options(unique_name("t_http_feed")));
  service::detail::StoreFeed feed("main", store.get(), 1'000'000, 1u << 30);
  struct Nothing : service::detail::StoreFeed::Waiter {
    void wake() override {}
  };
  auto waker = std::make_shared<Nothing>();
  feed.attach();
  ASSERT_TRUE(wait_until([&] { return feed.start(waker).ready; }));
  feed.detach();  // From here on only this test feeds it.
  const service::detail::StoreFeed::Start start = feed.start(waker);

  constexpr int64_t kChanges = 20000;
  const int64_t last = start.position + kChanges;
  std::thread dispatcher([&] {
    for (int64_t r = start.position + 1; r <= last; ++r) {
      feed.on_change(Change{"k" + std::to_string(r % 10), json(r), r, ChangeOrigin::kRemote, {}});
      feed.on_progress(Progress{r, false});
    }
  });
  std::vector<int64_t> read;
  std::vector<service::detail::WatchEventPtr> events;
  int64_t cursor = start.position;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (cursor < last && std::chrono::steady_clock::now() < deadline) {
    auto r = feed.read(cursor, start.generation, 1 << 20, nullptr, events);
    ASSERT_EQ(r.status, service::detail::StoreFeed::Read::Status::kOk);
    for (const auto& e : events) read.push_back(e->revision);
    cursor = r.cursor;
  }
  dispatcher.join();
  EXPECT_EQ(cursor, last);
  std::vector<int64_t> skipped;
  for (int64_t r = start.position + 1, i = 0; r <= last; ++r) {
    if (i < static_cast<int64_t>(read.size()) && read[i] == r) {
      ++i;
    } else {
      skipped.push_back(r);
    }
  }
  EXPECT_EQ(read.size(), static_cast<std::size_t>(kChanges))
      << skipped.size() << " changes never read, e.g. revision "
      << (skipped.empty() ? 0 : skipped.front())
      << ": the reader's cursor passed them before they were in the history";
}

// ---------------------------------------------------------------------------------------------
// A database outage

TEST(HttpOutage, writes_get_503_and_health_degrades_while_the_database_is_down_then_recover) {
  EmbeddedPostgres pg;
  pg.start();
  Options options = test_options(unique_name("t_http_outage"));
  options.reconnect_interval = 200ms;
  options.db_timeout = 2s;
  auto store = Store::open(pg.dsn(), options);
  store->set("cached", "yes");
  HttpOptions o;
  o.port = 0;
  HttpServer server({{"main", store.get()}}, o);
  server.start();
  auto http = client_for(server.port());

  pg.stop();
  ASSERT_TRUE(wait_until([&] {
    auto r = http->Get("/health");
    return r && r->status == 503;
  }));
  auto health = http->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(body_of(health).at("status"), "degraded");
  EXPECT_EQ(body_of(health).at("connected"), false);

  auto put = http->Put("/settings/during", "1", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 503) << put->body;
  EXPECT_TRUE(body_of(put).contains("error"));
  auto cached = http->Get("/settings/cached");  // Reads keep serving the cache.
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->status, 200);
  EXPECT_EQ(body_of(cached), "yes");

  pg.start();
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = http->Get("/health");
        return r && r->status == 200;
      },
      20s));
  auto after = http->Put("/settings/after", "2", "application/json");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
  EXPECT_EQ(store->get_int("after"), 2);
  server.stop();
}

}  // namespace
}  // namespace syncconfig::testing

namespace syncconfig::testing {
namespace {

// --- Safe changes over HTTP (docs/safe-changes-http.md) ---

TEST(HttpSafeChanges, etag_and_if_match_make_a_put_a_compare_and_set) {
  Served s;
  auto created = s.http().Put("/settings/k", httplib::Headers{{"If-None-Match", "*"}}, "1",
                              "application/json");
  ASSERT_EQ(created->status, 200) << created->body;
  const int64_t r1 = body_of(created).at("revision");
  EXPECT_EQ(created->get_header_value("ETag"), "\"" + std::to_string(r1) + "\"");
  auto get = s.http().Get("/settings/k");
  EXPECT_EQ(get->get_header_value("ETag"), "\"" + std::to_string(r1) + "\"");
  EXPECT_EQ(body_of(get), 1);  // The bare value, as before.

  auto again = s.http().Put("/settings/k", httplib::Headers{{"If-None-Match", "*"}}, "2",
                            "application/json");
  EXPECT_EQ(again->status, 412);
  EXPECT_EQ(body_of(again).at("revision"), r1);
  EXPECT_EQ(body_of(again).at("value"), 1);

  auto next =
      s.http().Put("/settings/k", httplib::Headers{{"If-Match", "\"" + std::to_string(r1) + "\""}},
                   "2", "application/json");
  ASSERT_EQ(next->status, 200) << next->body;
  const int64_t r2 = body_of(next).at("revision");
  auto stale =
      s.http().Put("/settings/k", httplib::Headers{{"If-Match", "\"" + std::to_string(r1) + "\""}},
                   "3", "application/json");
  EXPECT_EQ(stale->status, 412);
  EXPECT_EQ(body_of(stale).at("revision"), r2);
  EXPECT_EQ(s.store().get("k"), 2);

  auto bad = s.http().Put("/settings/k", httplib::Headers{{"If-Match", "\"abc\""}}, "3",
                          "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(body_of(bad).at("error").get<std::string>().find("If-Match"), std::string::npos);

  auto wrong_delete = s.http().Delete(
      "/settings/k", httplib::Headers{{"If-Match", "\"" + std::to_string(r1) + "\""}});
  EXPECT_EQ(wrong_delete->status, 412);
  auto del = s.http().Delete("/settings/k",
                             httplib::Headers{{"If-Match", "\"" + std::to_string(r2) + "\""}});
  EXPECT_EQ(del->status, 200);
  EXPECT_FALSE(s.store().get("k"));
}

TEST(HttpSafeChanges, a_transaction_commits_whole_or_is_409_naming_the_guard) {
  Served s;
  const int64_t ra = s.store().set("a", 1);
  json txn = {{"guards", {{{"key", "a"}, {"revision", ra}}, {{"key", "b"}, {"absent", true}}}},
              {"operations",
               {{{"op", "set"}, {"key", "a"}, {"value", 2}},
                {{"op", "set"}, {"key", "b"}, {"value", "x"}}}},
              {"comment", "pair"}};
  auto ok = s.http().Post("/txn", txn.dump(), "application/json");
  ASSERT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(body_of(ok).at("committed"), true);
  EXPECT_EQ(s.store().get("b"), "x");
  EXPECT_EQ(s.store().history("b")[0].comment, "pair");

  auto again = s.http().Post("/txn", txn.dump(), "application/json");  // a moved on.
  ASSERT_EQ(again->status, 409) << again->body;
  json body = body_of(again);
  EXPECT_EQ(body.at("failed_guard"), 0);
  EXPECT_EQ(body.at("current")[0].at("key"), "a");
  EXPECT_EQ(body.at("current")[0].at("value"), 2);

  auto dup = s.http().Post(
      "/txn",
      json{{"operations",
            {{{"op", "set"}, {"key", "z"}, {"value", 1}}, {{"op", "delete"}, {"key", "z"}}}}}
          .dump(),
      "application/json");
  EXPECT_EQ(dup->status, 400);
  EXPECT_NE(body_of(dup).at("error").get<std::string>().find("two operations"), std::string::npos);
  auto empty = s.http().Post("/txn", R"({"operations": []})", "application/json");
  EXPECT_EQ(empty->status, 400);
  auto bad_revision = s.http().Post(
      "/txn",
      R"({"guards": [{"key": "a", "revision": "7"}], "operations": [{"op": "delete", "key": "a"}]})",
      "application/json");
  EXPECT_EQ(bad_revision->status, 400);
  EXPECT_NE(body_of(bad_revision).at("error").get<std::string>().find("guard 0"),
            std::string::npos);
  EXPECT_FALSE(s.store().get("z"));
  EXPECT_EQ(s.store().get("a"), 2);
}

TEST(HttpSafeChanges, a_transaction_over_the_body_limit_is_413) {
  HttpOptions o;
  o.max_txn_bytes = 4096;
  Served s(o);
  json ops = json::array();
  for (int i = 0; i < 200; ++i)
    ops.push_back({{"op", "set"}, {"key", "k" + std::to_string(i)}, {"value", i}});
  auto r = s.http().Post("/txn", json{{"operations", ops}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(s.store().size(), 0u);
}

TEST(HttpSafeChanges, history_state_at_and_rollback_round_trip) {
  Served s;
  const int64_t good = s.store().set("cfg", 10);
  auto put = s.http().Put(
      "/settings/cfg",
      httplib::Headers{{"X-Syncconfig-Comment", "raise%20it"}, {"X-Syncconfig-Actor", "alice"}},
      "20", "application/json");
  ASSERT_EQ(put->status, 200);
  auto h = s.http().Get("/history/cfg");
  ASSERT_EQ(h->status, 200) << h->body;
  json list = body_of(h).at("history");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].at("comment"), "raise it");
  EXPECT_EQ(list[0].at("actor"), "http:alice");
  EXPECT_EQ(list[0].at("previous_value"), 10);
  EXPECT_EQ(list[0].at("value"), 20);
  EXPECT_EQ(list[0].at("changed_at").get<std::string>().back(), 'Z');

  auto at = s.http().Get("/settings?at=" + std::to_string(good));
  ASSERT_EQ(at->status, 200) << at->body;
  EXPECT_EQ(body_of(at), (json{{"cfg", 10}}));

  auto rb =
      s.http().Post("/rollback", json{{"key", "cfg"}, {"to", good}, {"comment", "undo"}}.dump(),
                    "application/json");
  ASSERT_EQ(rb->status, 200) << rb->body;
  EXPECT_EQ(s.store().get("cfg"), 10);
  auto prefix = s.http().Get("/history?prefix=cf&limit=1");
  EXPECT_EQ(body_of(prefix).at("history").size(), 1u);
  EXPECT_EQ(body_of(prefix).at("history")[0].at("comment"), "undo");

  auto beyond = s.http().Get("/settings?at=999999");
  EXPECT_EQ(beyond->status, 410);
  auto entry = s.http().Get("/entries/cfg");
  ASSERT_EQ(entry->status, 200);
  EXPECT_EQ(body_of(entry).at("value"), 10);
  EXPECT_EQ(s.http().Get("/entries/none")->status, 404);
}

TEST(HttpSafeChanges, leases_are_granted_kept_alive_and_revoked) {
  Served s;
  auto grant = s.http().Post("/leases", R"({"ttl": 30})", "application/json");
  ASSERT_EQ(grant->status, 200) << grant->body;
  const int64_t id = body_of(grant).at("id");
  auto put = s.http().Put("/settings/svc?lease=" + std::to_string(id), "1", "application/json");
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(s.store().get_entry("svc")->lease, id);
  auto keep = s.http().Post("/leases/" + std::to_string(id) + "/keepalive", "", "application/json");
  EXPECT_EQ(keep->status, 200);
  EXPECT_EQ(s.http().Delete("/leases/" + std::to_string(id))->status, 200);
  EXPECT_FALSE(s.store().get("svc"));
  EXPECT_EQ(s.store().history("svc")[0].op, "expire");
  EXPECT_EQ(s.http().Delete("/leases/" + std::to_string(id))->status, 404);
  auto unknown = s.http().Put("/settings/x?lease=999999", "1", "application/json");
  EXPECT_EQ(unknown->status, 400);
}

TEST(HttpSafeChanges, a_watch_sends_a_transaction_as_consecutive_events_marked_until_its_last) {
  Served s(watch_options());
  WatchClient w(s.port(), "/watch");
  ASSERT_TRUE(w.wait_for_events(1));  // ready
  Transaction txn;
  txn.set("t1", 1).set("t2", 2).set("t3", 3);
  ASSERT_TRUE(s.store().commit(txn));
  ASSERT_TRUE(w.wait_until_change("t3"));
  std::vector<SseEvent> changes = w.changes();
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(json::parse(changes[0].data).value("more", false), true);
  EXPECT_EQ(json::parse(changes[1].data).value("more", false), true);
  EXPECT_FALSE(json::parse(changes[2].data).contains("more"));
}

}  // namespace
}  // namespace syncconfig::testing
