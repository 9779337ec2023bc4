#include "http/http_server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "http/metrics.h"
#include "http/request.h"
#include "http/store_feed.h"

namespace syncconfig::service {

using detail::StoreFeed;
using httplib::Request;
using httplib::Response;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kJsonType = "application/json";

// JSON text; invalid UTF-8 (possible in keys taken from a URL) is replaced, never thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), kJsonType);
}

void send_error(Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", message}});
}

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout:
    case ErrorCode::kShutdown:
      return 503;
    case ErrorCode::kDatabase:
    case ErrorCode::kInternal:
      break;
  }
  return 500;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// A request path as it may appear in a log line: control bytes escaped.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Sequence numbers of a server run start at its start time in microseconds, so that an event id
// from an earlier run is older than anything this run has and gets a reset, never a wrong replay.
uint64_t first_sequence_number() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string sse_event(uint64_t id, std::string_view type, std::string_view data) {
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", id, type, data);
}

json settings_object(const std::map<std::string, json>& all) {
  json out = json::object();
  for (const auto& [k, v] : all) out[k] = v;
  return out;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(std::vector<ServedStore> stores, HttpOptions options);
  ~Impl() { stop(); }

  void start();
  int port() const { return port_.load(); }
  void stop();

 private:
  // One open /watch stream; lives as long as its response (shared with the content provider).
  struct WatchStream {
    enum class Opening { kNone, kReady, kReset };
    StoreFeed* feed = nullptr;
    std::string prefix;
    uint64_t cursor = 0;  // Every change up to this sequence number was sent (or filtered out).
    Opening opening = Opening::kNone;
    Clock::time_point last_write = Clock::now();
  };

  void install_routes();
  // Wraps a route: maps syncconfig::Error and other exceptions to JSON errors.
  httplib::Server::Handler route(void (Impl::*fn)(const Request&, Response&));
  // The store a request names (`/stores/{name}/...` or the default), or nullptr after a 404.
  StoreFeed* feed_for(const Request& req, Response& res);

  void get_health(const Request& req, Response& res);
  void get_metrics(const Request& req, Response& res);
  void list_settings(const Request& req, Response& res);
  void get_setting(const Request& req, Response& res);
  void put_setting(const Request& req, Response& res);
  void delete_setting(const Request& req, Response& res);
  void watch(const Request& req, Response& res);
  void not_allowed(const Request& req, Response& res);

  bool provide(WatchStream& w, httplib::DataSink& sink);
  std::string reset_event(WatchStream& w);

  HttpOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<StoreFeed>> feeds_;
  std::atomic<int> port_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> watch_streams_{0};

  std::mutex lifecycle_mu_;  // Serializes start() and stop().
  bool started_ = false;     // Guarded by lifecycle_mu_.
  bool stopped_ = false;     // Guarded by lifecycle_mu_.
  std::atomic<bool> listen_returned_{false};
  std::thread listen_thread_;

  httplib::Server server_;  // Destroyed first: its handlers use the members above.
};

HttpServer::Impl::Impl(std::vector<ServedStore> stores, HttpOptions options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()) {
  auto invalid = [](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, "HttpServer: " + what);
  };
  if (stores.empty()) throw invalid("no store to serve");
  std::unordered_set<std::string> names;
  for (const auto& s : stores) {
    if (s.store == nullptr) throw invalid(fmt::format("store '{}' is null", s.name));
    if (s.name.empty()) throw invalid("a store name is empty");
    if (s.name.find('/') != std::string::npos) {
      throw invalid(fmt::format("store name '{}' contains '/'", s.name));
    }
    if (!names.insert(s.name).second) throw invalid(fmt::format("duplicate store '{}'", s.name));
  }
  if (options_.threads < 2) throw invalid("HttpOptions::threads must be at least 2");
  if (options_.max_watch_streams >= options_.threads) {
    throw invalid("HttpOptions::max_watch_streams must be less than HttpOptions::threads");
  }
  if (options_.watch_keepalive <= std::chrono::milliseconds::zero()) {
    throw invalid("HttpOptions::watch_keepalive must be positive");
  }
  if (options_.keep_alive_timeout <= std::chrono::seconds::zero()) {
    throw invalid("HttpOptions::keep_alive_timeout must be positive");
  }
  if (options_.port < 0 || options_.port > 65535) {
    throw invalid(fmt::format("HttpOptions::port {} is out of range", options_.port));
  }

  const uint64_t first_seq = first_sequence_number();
  for (auto& s : stores) {
    feeds_.push_back(std::make_unique<StoreFeed>(s.name, s.store, options_.watch_history,
                                                 options_.watch_history_bytes, first_seq));
  }

  const std::size_t threads = options_.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_.set_payload_max_length(options_.max_body_bytes);
  server_.set_keep_alive_timeout(static_cast<time_t>(options_.keep_alive_timeout.count()));
  server_.set_tcp_nodelay(true);  // /watch writes small events that must not wait.
  // httplib's default sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently share its connections. SO_REUSEADDR only: a busy port is an error.
  server_.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  install_routes();
}

httplib::Server::Handler HttpServer::Impl::route(void (Impl::*fn)(const Request&, Response&)) {
  return [this, fn](const Request& req, Response& res) {
    try {
      (this->*fn)(req, res);
    } catch (const Error& e) {
      int status = status_for(e.code());
      if (status >= 500) {
        log_->warn("http: {} {} failed: {}", req.method, printable(req.path), e.what());
      }
      if (e.retryable()) res.set_header("Retry-After", "1");
      send_error(res, status, e.what());
    }
  };
}

void HttpServer::Impl::install_routes() {
  using httplib::Server;

  // Authorization comes before routing and before the body is read.
  server_.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (options_.token.empty()) return Server::HandlerResponse::Unhandled;
    if (req.get_header_value_count("Authorization") == 1 &&
        constant_time_equal(req.get_header_value("Authorization"), "Bearer " + options_.token)) {
      return Server::HandlerResponse::Unhandled;
    }
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "unauthorized");
    return Server::HandlerResponse::Handled;
  });

  // `/stores/{name}` in front of a store's routes; without it, the default store. httplib has
  // already percent-decoded the path (once): the groups are used as they are.
  const std::string scope = R"((?:/stores/([^/]+))?)";
  const std::string key_route = scope + R"(/settings/([\s\S]+))";
  server_.Get("/health", route(&Impl::get_health));
  server_.Get("/metrics", route(&Impl::get_metrics));
  server_.Get(scope + "/settings", route(&Impl::list_settings));
  server_.Get(key_route, route(&Impl::get_setting));
  server_.Put(key_route, route(&Impl::put_setting));
  server_.Delete(key_route, route(&Impl::delete_setting));
  server_.Get(scope + "/watch", route(&Impl::watch));
  const std::string any = R"([\s\S]*)";
  server_.Post(any, route(&Impl::not_allowed));
  server_.Put(any, route(&Impl::not_allowed));
  server_.Patch(any, route(&Impl::not_allowed));
  server_.Delete(any, route(&Impl::not_allowed));

  // Whatever status >= 400 has no body yet (unknown route, 413 from httplib, a malformed
  // request) gets a JSON one.
  server_.set_error_handler(Server::HandlerWithResponse([this](const Request& req, Response& res) {
    if (!res.body.empty()) return Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 404:
        message = fmt::format("no route for {} {}", req.method, req.path);
        break;
      case 413:
        message = fmt::format("request body larger than {} bytes (max_body_bytes)",
                              options_.max_body_bytes);
        break;
      case 400:
        message = "malformed request";
        break;
      default:
        message = fmt::format("HTTP status {}", res.status);
    }
    send_error(res, res.status, message);
    return Server::HandlerResponse::Handled;
  }));

  server_.set_exception_handler([this](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log_->error("http: {} {} failed: {}", req.method, printable(req.path), what);
    send_error(res, 500, "internal error: " + what);
  });

  // Access log: method, path, status, client. Never bodies or headers (tokens).
  server_.set_logger([this](const Request& req, const Response& res) {
    log_->debug("http: {} {} {} {}:{}", req.method, printable(req.path), res.status,
                req.remote_addr, req.remote_port);
  });
}

StoreFeed* HttpServer::Impl::feed_for(const Request& req, Response& res) {
  if (req.matches.size() < 2 || !req.matches[1].matched) return feeds_.front().get();
  const std::string name = req.matches[1].str();
  for (const auto& f : feeds_) {
    if (f->name() == name) return f.get();
  }
  send_error(res, 404, fmt::format("unknown store '{}'", name));
  return nullptr;
}

void HttpServer::Impl::get_health(const Request&, Response& res) {
  json stores = json::object();
  bool all_connected = true;
  std::optional<Stats> first;
  for (const auto& f : feeds_) {
    Stats s = f->store().stats();
    all_connected = all_connected && s.connected;
    stores[f->name()] = {{"status", s.connected ? "healthy" : "degraded"},
                         {"crc", s.crc},
                         {"count", s.keys},
                         {"connected", s.connected},
                         {"revision", s.revision}};
    if (!first) first = s;
  }
  send_json(res, all_connected ? 200 : 503,
            {{"status", all_connected ? "healthy" : "degraded"},
             {"crc", first->crc},
             {"count", first->keys},
             {"connected", first->connected},
             {"revision", first->revision},
             {"stores", std::move(stores)}});
}

void HttpServer::Impl::get_metrics(const Request&, Response& res) {
  res.status = 200;
  res.set_content(detail::render_metrics(feeds_), detail::kMetricsContentType);
}

void HttpServer::Impl::list_settings(const Request& req, Response& res) {
  StoreFeed* feed = feed_for(req, res);
  if (feed == nullptr) return;
  send_json(res, 200, settings_object(feed->store().get_all(req.get_param_value("prefix"))));
}

void HttpServer::Impl::get_setting(const Request& req, Response& res) {
  StoreFeed* feed = feed_for(req, res);
  if (feed == nullptr) return;
  std::optional<detail::KeyPath> path = detail::parse_key_path(req.path);
  if (!path) return send_error(res, 404, fmt::format("no route for {} {}", req.method, req.path));
  // An invalid key cannot be stored: absent, like any other.
  std::optional<json> value = feed->store().get(path->key);
  if (!value) {
    return send_error(res, 404, fmt::format("key {} not found", detail::quoted(path->key)));
  }
  res.status = 200;
  res.set_content(dump(*value), kJsonType);
}

void HttpServer::Impl::put_setting(const Request& req, Response& res) {
  StoreFeed* feed = feed_for(req, res);
  if (feed == nullptr) return;
  std::optional<detail::KeyPath> path = detail::parse_key_path(req.path);
  if (!path) return send_error(res, 404, fmt::format("no route for {} {}", req.method, req.path));
  const std::string& key = path->key;
  if (auto refused = detail::check_key(key)) {
    return send_error(res, refused->status, refused->message);
  }
  // httplib enforces the size limit on bodies with a Content-Length; this covers chunked ones.
  auto parsed = detail::parse_put_body(key, req.body, options_.max_body_bytes);
  if (auto* refused = std::get_if<detail::Refusal>(&parsed)) {
    return send_error(res, refused->status, refused->message);
  }
  const json& value = std::get<json>(parsed);
  feed->store().set(key, value);
  send_json(res, 200, {{"key", key}, {"value", feed->store().get(key).value_or(json(nullptr))}});
}

void HttpServer::Impl::delete_setting(const Request& req, Response& res) {
  StoreFeed* feed = feed_for(req, res);
  if (feed == nullptr) return;
  std::optional<detail::KeyPath> path = detail::parse_key_path(req.path);
  if (!path) return send_error(res, 404, fmt::format("no route for {} {}", req.method, req.path));
  const std::string& key = path->key;
  if (auto refused = detail::check_key(key)) {
    return send_error(res, refused->status, refused->message);
  }
  if (!feed->store().remove(key)) {
    return send_error(res, 404, fmt::format("key {} not found", detail::quoted(key)));
  }
  send_json(res, 200, {{"key", key}, {"deleted", true}});
}

void HttpServer::Impl::not_allowed(const Request& req, Response& res) {
  static const std::regex key_route(R"((?:/stores/[^/]+)?/settings/[\s\S]+)");
  static const std::regex get_route(R"((?:/stores/[^/]+)?/(settings|watch)|/health|/metrics)");
  if (std::regex_match(req.path, key_route)) {
    res.set_header("Allow", "GET, PUT, DELETE");
  } else if (std::regex_match(req.path, get_route)) {
    res.set_header("Allow", "GET");
  } else {
    return send_error(res, 404, fmt::format("no route for {} {}", req.method, req.path));
  }
  send_error(res, 405, fmt::format("{} is not allowed on {}", req.method, req.path));
}

void HttpServer::Impl::watch(const Request& req, Response& res) {
  StoreFeed* feed = feed_for(req, res);
  if (feed == nullptr) return;

  auto stream = std::make_shared<WatchStream>();
  stream->feed = feed;
  stream->prefix = req.get_param_value("prefix");
  // Resume point: Last-Event-ID (what EventSource sends when reconnecting) wins over ?since=.
  if (req.has_header("Last-Event-ID")) {
    std::optional<uint64_t> id = detail::parse_event_id(req.get_header_value("Last-Event-ID"));
    stream->cursor = id.value_or(0);
    stream->opening = id ? WatchStream::Opening::kNone : WatchStream::Opening::kReset;
  } else if (req.has_param("since")) {
    std::optional<uint64_t> id = detail::parse_event_id(req.get_param_value("since"));
    if (!id) {
      return send_error(res, 400, "since must be an event id (a non-negative integer)");
    }
    stream->cursor = *id;
  } else {
    stream->cursor = feed->current_seq();
    stream->opening = WatchStream::Opening::kReady;
  }
  // A cursor that is no longer (or never was) in the history turns into a reset on the first
  // wait (StoreFeed::wait_after reports it lost).

  if (stopping_.load()) return send_error(res, 503, "the server is stopping");
  if (watch_streams_.fetch_add(1) >= options_.max_watch_streams) {
    watch_streams_.fetch_sub(1);
    return send_error(res, 503,
                      fmt::format("too many /watch streams open (max_watch_streams = {})",
                                  options_.max_watch_streams));
  }
  feed->stream_opened();

  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, stream](std::size_t, httplib::DataSink& sink) { return provide(*stream, sink); },
      [this, feed](bool) {
        feed->stream_closed();
        watch_streams_.fetch_sub(1);
      });
}

std::string HttpServer::Impl::reset_event(WatchStream& w) {
  // Every change up to `seq` is already in the cache (a store applies a change before calling
  // back), so the snapshot holds at least the state at `seq`; it may also hold changes whose
  // events follow. Events carry whole values, so applying them again ends in the same state.
  const uint64_t seq = w.feed->current_seq();
  json data = {{"settings", settings_object(w.feed->store().get_all(w.prefix))}, {"seq", seq}};
  w.cursor = seq;
  return sse_event(seq, "reset", dump(data));
}

// httplib calls this again and again on the connection's worker thread until it returns false
// (connection dropped) or calls sink.done().
bool HttpServer::Impl::provide(WatchStream& w, httplib::DataSink& sink) {
  std::string out;
  switch (w.opening) {
    case WatchStream::Opening::kReady:
      // Tells the client its position: EventSource keeps the id for Last-Event-ID.
      out = sse_event(w.cursor, "ready", dump(json{{"seq", w.cursor}}));
      break;
    case WatchStream::Opening::kReset:
      out = reset_event(w);
      break;
    case WatchStream::Opening::kNone: {
      const Clock::time_point keepalive_at = w.last_write + options_.watch_keepalive;
      StoreFeed::Batch batch = w.feed->wait_after(w.cursor, keepalive_at);
      if (batch.closed) {
        sink.done();
        return true;
      }
      if (batch.lost) {
        out = reset_event(w);
      } else {
        for (const auto& e : batch.events) {
          if (e->key.starts_with(w.prefix)) out += sse_event(e->seq, "change", e->data);
          w.cursor = e->seq;
        }
      }
      if (out.empty() && Clock::now() >= keepalive_at) out = ": keepalive\n\n";
      break;
    }
  }
  w.opening = WatchStream::Opening::kNone;
  if (out.empty()) return true;
  if (!sink.write(out.data(), out.size())) return false;
  w.last_write = Clock::now();
  return true;
}

void HttpServer::Impl::start() {
  std::lock_guard lock(lifecycle_mu_);
  if (stopped_) throw Error(ErrorCode::kShutdown, "HttpServer: start() after stop()");
  if (started_) return;

  for (auto& f : feeds_) f->attach();
  int port = -1;
  if (options_.port == 0) {
    port = server_.bind_to_any_port(options_.host);
  } else if (server_.bind_to_port(options_.host, options_.port)) {
    port = options_.port;
  }
  if (port < 0) {
    const int err = errno;
    for (auto& f : feeds_) f->detach();
    throw Error(ErrorCode::kUnavailable,
                fmt::format("HttpServer: cannot listen on {}:{} ({})", options_.host, options_.port,
                            err != 0 ? std::strerror(err) : "bind failed"));
  }
  port_.store(port);

  listen_thread_ = std::thread([this] {
    if (!server_.listen_after_bind()) log_->error("http: the listener stopped with an error");
    listen_returned_.store(true);
  });
  // httplib's stop() has no effect until the accept loop runs: wait for it.
  while (!server_.is_running() && !listen_returned_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (listen_returned_.load()) {
    listen_thread_.join();
    for (auto& f : feeds_) f->detach();
    throw Error(ErrorCode::kUnavailable,
                fmt::format("HttpServer: the listener on {}:{} failed", options_.host, port));
  }
  started_ = true;
  log_->info("http: serving {} store(s) on http://{}:{}", feeds_.size(), options_.host, port);
}

void HttpServer::Impl::stop() {
  std::lock_guard lock(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  if (started_) {
    server_.stop();                     // Stops accepting; connections end after a request.
    for (auto& f : feeds_) f->close();  // /watch streams end now.
    if (listen_thread_.joinable()) listen_thread_.join();  // Joins the worker pool too.
  }
  for (auto& f : feeds_) f->detach();
}

HttpServer::HttpServer(std::vector<ServedStore> stores, HttpOptions options)
    : impl_(std::make_unique<Impl>(std::move(stores), std::move(options))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() { impl_->start(); }

int HttpServer::port() const { return impl_->port(); }

void HttpServer::stop() { impl_->stop(); }

}  // namespace syncconfig::service
