#include "http/http_server.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "auth/tokens.h"
#include "http/metrics.h"
#include "http/rate_limiter.h"
#include "http/request.h"
#include "http/safe_json.h"
#include "http/store_feed.h"
#include "http/target.h"
#include "http/watch_stream.h"
#include "ui/ui_assets.h"
#include "util/mutex.h"

namespace syncconfig::service {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using detail::StoreFeed;
using detail::WatchStream;
using nlohmann::json;
using Response = http::response<http::string_body>;
namespace ssl = boost::asio::ssl;
using detail::PlainStream;
using detail::TlsStream;

// Who made a request: with named tokens, its token (never null then); otherwise nobody in
// particular (every route allowed).
struct Caller {
  std::shared_ptr<const auth::Token> token;
};

namespace {

constexpr const char* kJsonType = "application/json";
constexpr const char* kFilteredHeader = "X-Syncconfig-Filtered";
constexpr const char* kResumeIdHeader = "X-Syncconfig-Resume-Id";

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

// JSON text; invalid UTF-8 (possible in keys taken from a URL) is replaced, never thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The feed's position and its anchor, taken before a read that holds at least every change up
// to that position: the answer's X-Syncconfig-Resume-Id, an event id a client resumes /watch or
// /changes with, checked against the history like any event's (docs/protocol.md, "Resume tokens").
struct ResumeMark {
  int64_t position = 0;
  std::optional<detail::ResumeAnchor> anchor;
  // The id for an answer complete to `revision`; none past it or without an anchor.
  std::optional<std::string> id_for(int64_t revision) const {
    if (!anchor || position > revision) return std::nullopt;
    return detail::format_event_id(position, anchor);
  }
};
ResumeMark resume_mark(const StoreFeed& feed) {
  const int64_t position = feed.position();
  return {position, position > 0 ? feed.anchor_at(position) : std::nullopt};
}

Response json_response(int status, const json& body) {
  Response res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, kJsonType);
  res.body() = dump(body);
  return res;
}

Response error_response(int status, const std::string& message) {
  return json_response(status, {{"error", message}});
}

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout:
    case ErrorCode::kShutdown:
      return 503;
    case ErrorCode::kOutOfRange:
      return 410;
    case ErrorCode::kDatabase:
    case ErrorCode::kInternal:
      break;
  }
  return 500;
}

Response error_response(const Error& e) {
  Response res = error_response(status_for(e.code()), e.what());
  if (e.retryable()) res.set(http::field::retry_after, "1");
  return res;
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

double to_unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::string etag(int64_t revision) { return "\"" + std::to_string(revision) + "\""; }

// A successful write's answer: the value as stored and its revision, in the body and the ETag.
Response written(const std::string& key, const json& value, int64_t revision) {
  Response res = json_response(200, {{"key", key}, {"value", value}, {"revision", revision}});
  res.set("X-Syncconfig-Revision", std::to_string(revision));
  res.set(http::field::etag, etag(revision));
  return res;
}

// 412: the key is not at the revision the request named; its current state instead.
Response precondition_failed(const std::string& key, const CasResult& r) {
  Response res = json_response(
      412,
      {{"error", r.revision == 0 ? fmt::format("key {} is absent", detail::quote_for_message(key))
                                 : fmt::format("key {} is at revision {}",
                                               detail::quote_for_message(key), r.revision)},
       {"key", key},
       {"revision", r.revision},
       {"value", r.value.value_or(json(nullptr))}});
  if (r.revision != 0) res.set(http::field::etag, etag(r.revision));
  return res;
}

// Who an HTTP write is recorded as in the history: with named tokens "token:<name>"; otherwise
// the client's own name (X-Syncconfig-Actor, else its User-Agent), prefixed with "http:".
std::string actor_of(const http::request<http::string_body>& req, const Caller& caller) {
  if (caller.token) return "token:" + caller.token->name;
  std::string_view named = sv(req["X-Syncconfig-Actor"]);
  if (named.empty()) named = sv(req[http::field::user_agent]);
  std::string out = "http:";
  out += named.substr(0, 190);
  return out;
}

json settings_object(const std::map<std::string, json>& all) {
  json out = json::object();
  for (const auto& [k, v] : all) out[k] = v;
  return out;
}

// GET /settings?keys: the keys alone, sorted (what a tree of keys needs, at a fraction of the
// bytes of every value).
json settings_keys(const std::map<std::string, json>& all) {
  json out = json::array();
  for (const auto& kv : all) out.push_back(kv.first);
  return out;
}

json settings_body(const detail::Route& route, const std::map<std::string, json>& all) {
  return route.keys_only ? settings_keys(all) : settings_object(all);
}

}  // namespace

// A connection the server can close (a Session over plain TCP or TLS).
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void close() = 0;
};

template <class Stream>
class Session;

// The TLS context of `cert_file` and `key_file` (PEM), TLS 1.2 at least. Throws
// Error(kInvalidArgument) naming the file that cannot be used and why.
static std::shared_ptr<ssl::context> make_tls_context(const std::string& cert_file,
                                                      const std::string& key_file) {
  auto fail = [](const std::string& what, const std::string& file, const std::string& why) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("HttpServer: cannot use the TLS {} file '{}': {}", what, file, why));
  };
  auto readable = [&](const std::string& what, const std::string& file) {
    std::ifstream in(file);
    if (!in) throw fail(what, file, std::strerror(errno));
  };
  readable("certificate", cert_file);
  readable("key", key_file);
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) throw fail("certificate", cert_file, ec.message() + " (not a PEM certificate chain?)");
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) throw fail("key", key_file, ec.message() + " (not a PEM private key?)");
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw fail("key", key_file, "it does not match the certificate in '" + cert_file + "'");
  }
  return ctx;
}

class HttpServer::Impl : public detail::StreamHost {
 public:
  Impl(std::vector<ServedStore> stores, HttpOptions options);
  ~Impl() { stop(); }

  void start();
  int port() const { return port_.load(); }
  void stop();

  // --- used by sessions and streams ---
  const HttpOptions& options() const override { return options_; }
  spdlog::logger& log() override { return *log_; }
  bool stopping() const { return stopping_.load(); }
  void run_blocking(std::function<void()> work) override {
    net::post(blocking_pool_, std::move(work));
  }
  // The answer to an ordinary request (not /watch), or std::nullopt when `route` needs the
  // blocking pool (the caller then calls respond_blocking there).
  std::optional<Response> respond_now(const detail::Route& route,
                                      const http::request<http::string_body>& req,
                                      const Caller& caller);
  // GET /ui...: the console's file, built in or read from HttpOptions::ui_dir.
  Response respond_ui(const std::string& file) const;
  Response respond_blocking(const detail::Route& route, const http::request<http::string_body>& req,
                            const Caller& caller);
  // The safe-changes routes (entries, txn, history, rollback, leases); std::nullopt for others.
  std::optional<Response> respond_safe(const detail::Route& route,
                                       const http::request<http::string_body>& req, Config& store,
                                       const std::string& prefix, const Caller& caller);
  // GET/POST /tokens, DELETE /tokens/{name} (authorized: a full admin).
  Response respond_tokens(const detail::Route& route, const http::request<http::string_body>& req);
  // The route of a request target, or a refusal (404 for unknown stores and routes).
  std::variant<detail::Route, Response> route(const http::request<http::string_body>& req);
  // The caller, or 401. With named tokens, GET /health needs none.
  std::variant<Caller, Response> check_auth(const http::request<http::string_body>& req) const;
  // 429 when `client` (a token's name, or an address) is over HttpOptions::rate_limit.
  std::optional<Response> check_rate(const http::request<http::string_body>& req,
                                     const std::string& client);
  // 403 when the caller's token may not use `route` (the checks that need no body: a
  // transaction's and a rollback's are made in respond_safe, before anything is written).
  std::optional<Response> authorize(const detail::Route& route,
                                    const http::request<http::string_body>& req,
                                    const Caller& caller) const;
  // The stream's access control, or nullptr without named tokens.
  std::shared_ptr<const detail::WatchAccess> watch_access(const detail::Route& route,
                                                          const Caller& caller) const;

  void add(const std::shared_ptr<Connection>& s);
  void remove(Connection* s);
  // The TLS context for new connections (nullptr: plain HTTP).
  std::shared_ptr<ssl::context> tls_context() {
    internal::MutexLock lock(tls_mu_);
    return tls_;
  }
  void reload_tls();
  void add(const std::shared_ptr<WatchStream>& w) override;
  void remove(WatchStream* w) override;

 private:
  void accept();
  void tick(net::steady_timer& timer, std::chrono::milliseconds interval, bool progress);

  HttpOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<StoreFeed>> feeds_;
  internal::Mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_ SC_GUARDED_BY(tls_mu_);  // Null for plain HTTP.
  std::atomic<int> port_{0};
  std::atomic<bool> stopping_{false};

  // Declared before the event loop: handlers it destroys last still unregister their sessions.
  internal::Mutex registry_mu_;
  // Sessions, plain and TLS.
  std::unordered_map<Connection*, std::weak_ptr<Connection>> sessions_ SC_GUARDED_BY(registry_mu_);
  std::unordered_map<WatchStream*, std::weak_ptr<WatchStream>> streams_ SC_GUARDED_BY(registry_mu_);
  internal::CondVar registry_cv_;  // One ended.

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  net::thread_pool blocking_pool_;
  std::unique_ptr<detail::RateLimiter> limiter_;  // Null: no rate limit.
  std::atomic<uint64_t> rate_limited_{0};         // Requests answered 429.
  // The acceptor and the two timers are not thread-safe and the loop runs on several threads:
  // every handler that touches them runs on this strand.
  net::strand<net::io_context::executor_type> control_;
  tcp::acceptor acceptor_;
  net::steady_timer progress_timer_;
  net::steady_timer keepalive_timer_;
  std::vector<std::thread> io_threads_;

  internal::Mutex lifecycle_mu_;  // Serializes start() and stop().
  bool started_ SC_GUARDED_BY(lifecycle_mu_) = false;
  bool stopped_ SC_GUARDED_BY(lifecycle_mu_) = false;

  template <class Stream>
  friend class Session;
};

// ---------------------------------------------------------------------------------------------
// Session: one connection serving requests one at a time (HTTP/1.1 keep-alive), until it becomes
// a /watch stream, is idle too long, or the server stops. One code path for both kinds of
// connection: `Stream` is PlainStream (a beast::tcp_stream) or TlsStream (an ssl_stream over
// one), whose lowest layer carries the timeouts; a TLS session first completes its handshake
// within header_timeout (a client that never handshakes holds a socket, never a thread).
template <class Stream>
class Session : public Connection, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(HttpServer::Impl& server, tcp::socket socket) requires(!kTls)
      : server_(server), stream_(std::move(socket)) {}
  Session(HttpServer::Impl& server, tcp::socket socket,
          std::shared_ptr<ssl::context> tls) requires(kTls)
      : server_(server), tls_(std::move(tls)), stream_(std::move(socket), *tls_) {}
  ~Session() override { server_.remove(this); }

  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

  void start() {
    server_.add(shared_from_this());
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->handshake_then([](Session& s) { s.wait_for_request(); });
    });
  }

  void close() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (!self->busy_) self->shut();
    });
  }

  // Answers 503 and closes (over max_connections).
  void refuse(std::string message) {
    auto res = std::make_shared<Response>(error_response(503, message));
    res->set(http::field::connection, "close");
    res->prepare_payload();
    handshake_then([res](Session& s) {
      s.lowest().expires_after(s.server_.options().watch_write_timeout);
      http::async_write(
          s.stream_, *res,
          [self = s.shared_from_this(), res](beast::error_code, std::size_t) { self->shut(); });
    });
  }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  // TLS: the server side of the handshake, within header_timeout, then `next`; a failed
  // handshake (a plain HTTP client, an untrusting client, a timeout) closes the connection.
  // Plain: `next` at once.
  template <class Next>
  void handshake_then(Next next) {
    if constexpr (kTls) {
      lowest().expires_after(server_.options().header_timeout);
      stream_.async_handshake(
          ssl::stream_base::server,
          [self = shared_from_this(), next = std::move(next)](beast::error_code ec) {
            if (ec) {
              self->server_.log().debug("http: TLS handshake failed: {}", ec.message());
              return self->shut();
            }
            next(*self);
          });
    } else {
      next(*this);
    }
  }

  // Idle until the next request's first byte (a new connection's first request within
  // header_timeout: idle_timeout is for keep-alive between requests, and a flood of sockets that
  // never send would otherwise hold their slots for that long); then its head within
  // header_timeout.
  void wait_for_request() {
    if (closing_ || server_.stopping()) return shut();
    busy_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options().max_header_bytes));
    body_limit_ = std::max(server_.options().max_body_bytes, server_.options().max_txn_bytes);
    parser_->body_limit(body_limit_);
    if (buffer_.size() > 0) return read_head();  // A pipelined request is already here.
    lowest().expires_after(served_any_ ? server_.options().idle_timeout
                                       : server_.options().header_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (ec) return self->shut();
                              self->buffer_.commit(n);
                              self->read_head();
                            });
  }

  void read_head() {
    busy_ = true;
    lowest().expires_after(server_.options().header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->on_read_error(ec);
                              self->read_body();
                            });
  }

  void read_body() {
    // The bound of this request's body: a transaction may carry many values. The parser was
    // given the larger of the two (it checks a Content-Length against it with the headers).
    std::string_view target = sv(parser_->get().target());
    target = target.substr(0, target.find('?'));
    const bool txn = parser_->get().method() == http::verb::post && target.ends_with("/txn");
    body_limit_ = txn ? server_.options().max_txn_bytes : server_.options().max_body_bytes;
    if (parser_->content_length() && *parser_->content_length() > body_limit_) {
      return on_read_error(http::error::body_limit);
    }
    parser_->body_limit(body_limit_);
    if (parser_->is_done()) return handle();
    lowest().expires_after(server_.options().body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->on_read_error(ec);
                       self->handle();
                     });
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return send_and_close(
          error_response(413, fmt::format("request body larger than {} bytes", body_limit_)));
    }
    if (ec == http::error::header_limit) {
      return send_and_close(error_response(
          431, fmt::format("request line and headers larger than {} bytes (max_header_bytes)",
                           server_.options().max_header_bytes)));
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
      return send_and_close(error_response(400, "malformed request: " + ec.message()));
    }
    shut();  // Timeout, the client went away, the server stops.
  }

  void handle() {
    served_any_ = true;
    lowest().expires_never();
    auto req = std::make_shared<http::request<http::string_body>>(parser_->release());
    parser_.reset();
    auto authenticated = server_.check_auth(*req);
    caller_name_.clear();
    if (auto* refused = std::get_if<Response>(&authenticated)) {
      return send(std::move(*refused), *req);
    }
    auto caller = std::make_shared<Caller>(std::get<Caller>(std::move(authenticated)));
    if (caller->token) caller_name_ = caller->token->name;
    if (auto limited = server_.check_rate(
            *req, caller->token ? "token " + caller->token->name : "address " + peer_address())) {
      return send(std::move(*limited), *req);
    }
    auto routed = server_.route(*req);
    if (auto* res = std::get_if<Response>(&routed)) return send(std::move(*res), *req);
    auto route = std::make_shared<detail::Route>(std::get<detail::Route>(std::move(routed)));
    if (auto refused = server_.authorize(*route, *req, *caller)) {
      return send(std::move(*refused), *req);
    }
    if (route->kind == detail::Route::Kind::kWatch) return start_watch(*route, *req, *caller);
    if (auto res = server_.respond_now(*route, *req, *caller)) {
      return send(std::move(*res), *req);
    }
    server_.run_blocking([self = shared_from_this(), route, req, caller] {
      Response res = self->server_.respond_blocking(*route, *req, *caller);
      net::post(self->stream_.get_executor(),
                [self, req, res = std::move(res)]() mutable { self->send(std::move(res), *req); });
    });
  }

  void start_watch(const detail::Route& route, const http::request<http::string_body>& req,
                   const Caller& caller) {
    log_access(req, 200);
    buffer_.consume(buffer_.size());
    buffer_.shrink_to_fit();
    lowest().expires_never();
    std::optional<detail::ResumePoint> since;
    if (route.since) since = detail::ResumePoint{*route.since, route.since_anchor};
    detail::open_watch_stream(server_, std::move(stream_), *route.feed, route.prefixes, since,
                              server_.watch_access(route, caller));
    // This session ends here; the stream owns the connection now.
  }

  void send(Response res, const http::request<http::string_body>& req) {
    log_access(req, res.result_int());
    const bool keep_alive = req.keep_alive() && !closing_ && !server_.stopping();
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto shared = std::make_shared<Response>(std::move(res));
    lowest().expires_after(server_.options().watch_write_timeout);
    http::async_write(
        stream_, *shared,
        [self = shared_from_this(), shared, keep_alive](beast::error_code ec, std::size_t) {
          if (ec || !keep_alive) return self->shut();
          self->wait_for_request();
        });
  }

  void send_and_close(Response res) {
    closing_ = true;
    res.keep_alive(false);
    res.prepare_payload();
    auto shared = std::make_shared<Response>(std::move(res));
    lowest().expires_after(server_.options().watch_write_timeout);
    http::async_write(
        stream_, *shared,
        [self = shared_from_this(), shared](beast::error_code, std::size_t) { self->shut(); });
  }

  std::string peer_address() {
    beast::error_code ec;
    auto endpoint = lowest().socket().remote_endpoint(ec);
    return ec ? std::string("?") : endpoint.address().to_string();
  }

  void log_access(const http::request<http::string_body>& req, int status) {
    beast::error_code ec;
    auto endpoint = lowest().socket().remote_endpoint(ec);
    // The token's name, never its secret.
    server_.log().debug("http: {} {} {} {}{}", sv(req.method_string()), printable(sv(req.target())),
                        status,
                        ec ? std::string("?")
                           : endpoint.address().to_string() + ":" + std::to_string(endpoint.port()),
                        caller_name_.empty() ? std::string() : " token=" + caller_name_);
  }

  void shut() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

  HttpServer::Impl& server_;
  std::shared_ptr<ssl::context> tls_;  // TLS: the context this connection began with.
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::size_t body_limit_ = 0;  // Of the request being read.
  bool busy_ = false;           // A request is being read or answered.
  bool served_any_ = false;     // A request was read: idle_timeout applies between requests.
  std::string caller_name_;     // The request's token (named tokens), for the access log.
  bool closing_ = false;        // Close once the request in progress is answered.
};

// ---------------------------------------------------------------------------------------------

HttpServer::Impl::Impl(std::vector<ServedStore> stores, HttpOptions options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      ioc_(static_cast<int>(std::max<std::size_t>(options_.io_threads, 1))),
      blocking_pool_(std::max<std::size_t>(options_.blocking_threads, 1)),
      control_(net::make_strand(ioc_)),
      acceptor_(control_),
      progress_timer_(control_),
      keepalive_timer_(control_) {
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
  auto positive = [&](std::chrono::milliseconds d, const char* name) {
    if (d <= std::chrono::milliseconds::zero()) {
      throw invalid(fmt::format("HttpOptions::{} must be positive", name));
    }
  };
  positive(options_.idle_timeout, "idle_timeout");
  positive(options_.header_timeout, "header_timeout");
  positive(options_.body_timeout, "body_timeout");
  positive(options_.watch_write_timeout, "watch_write_timeout");
  positive(options_.watch_progress_interval, "watch_progress_interval");
  positive(options_.watch_keepalive, "watch_keepalive");
  if (options_.io_threads == 0) throw invalid("HttpOptions::io_threads must be at least 1");
  if (options_.blocking_threads == 0) {
    throw invalid("HttpOptions::blocking_threads must be at least 1");
  }
  if (options_.watch_history == 0) throw invalid("HttpOptions::watch_history must be at least 1");
  if (!(options_.rate_limit >= 0) || !(options_.rate_limit_burst >= 0)) {
    throw invalid("HttpOptions::rate_limit and rate_limit_burst must be 0 (none) or positive");
  }
  if (options_.rate_limit > 0) {
    limiter_ = std::make_unique<detail::RateLimiter>(
        options_.rate_limit,
        options_.rate_limit_burst > 0 ? options_.rate_limit_burst : options_.rate_limit);
  }
  if (options_.tokens && !options_.token.empty()) {
    throw invalid(
        "HttpOptions::token (a single shared token) and HttpOptions::tokens (named tokens, "
        "--auth) cannot be used together");
  }
  if (options_.port < 0 || options_.port > 65535) {
    throw invalid(fmt::format("HttpOptions::port {} is out of range", options_.port));
  }
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
    throw invalid(options_.tls_cert_file.empty()
                      ? "HttpOptions::tls_key_file is set without tls_cert_file"
                      : "HttpOptions::tls_cert_file is set without tls_key_file");
  }
  if (!options_.tls_cert_file.empty()) {
    tls_ = make_tls_context(options_.tls_cert_file, options_.tls_key_file);
  }
  for (auto& s : stores) {
    feeds_.push_back(std::make_unique<StoreFeed>(s.name, s.store, options_.watch_history,
                                                 options_.watch_history_bytes));
  }
}

std::optional<Response> HttpServer::Impl::check_rate(const http::request<http::string_body>& req,
                                                     const std::string& client) {
  if (!limiter_) return std::nullopt;
  if (req.method() == http::verb::get && sv(req.target()).substr(0, 7) == "/health" &&
      (req.target().size() == 7 || req.target()[7] == '?')) {
    return std::nullopt;  // Liveness probes must not be refused for someone else's load.
  }
  std::chrono::milliseconds wait{0};
  if (limiter_->admit(client, std::chrono::steady_clock::now(), &wait)) return std::nullopt;
  rate_limited_.fetch_add(1);
  Response res = error_response(
      429, fmt::format("too many requests: {} is over the rate limit ({} per second)", client,
                       options_.rate_limit));
  res.set(http::field::retry_after,
          std::to_string(std::max<int64_t>(1, (wait.count() + 999) / 1000)));
  return res;
}

std::variant<Caller, Response> HttpServer::Impl::check_auth(
    const http::request<http::string_body>& req) const {
  auto unauthorized = [](const char* message) {
    Response res = error_response(401, message);
    res.set(http::field::www_authenticate, "Bearer");
    return res;
  };
  auto [first, last] = req.equal_range(http::field::authorization);
  std::string_view path = sv(req.target());
  path = path.substr(0, path.find('?'));
  // The console's files hold no data: the page loads, then asks for a token to read any.
  if (detail::is_console_path(path) && req.method() == http::verb::get) {
    return Caller{};
  }
  if (options_.tokens) {
    if (path == "/health" && req.method() == http::verb::get) return Caller{};  // Open.
    if (first == last || std::next(first) != last) return unauthorized("unauthorized: no token");
    std::string_view value = sv(first->value());
    if (!value.starts_with("Bearer ")) return unauthorized("unauthorized: no bearer token");
    std::shared_ptr<const auth::Token> token = options_.tokens->authenticate(value.substr(7));
    if (!token) return unauthorized("unauthorized: unknown or revoked token");
    return Caller{std::move(token)};
  }
  if (options_.token.empty()) return Caller{};
  if (first != last && std::next(first) == last &&
      constant_time_equal(sv(first->value()), "Bearer " + options_.token)) {
    return Caller{};
  }
  return unauthorized("unauthorized");
}

std::optional<Response> HttpServer::Impl::authorize(const detail::Route& route,
                                                    const http::request<http::string_body>& req,
                                                    const Caller& caller) const {
  if (!caller.token) return std::nullopt;
  using Kind = detail::Route::Kind;
  using auth::Access;
  const auth::Rules& rules = caller.token->rules;
  auto forbidden = [&](const std::string& what) {
    return error_response(403, fmt::format("token '{}' {}", caller.token->name, what));
  };
  auto read_under = [&](const std::vector<std::string>& prefixes) -> std::optional<Response> {
    if (prefixes.empty()) {
      if (!rules.reaches("", Access::kRead)) return forbidden("may read no key");
      return std::nullopt;
    }
    for (const std::string& p : prefixes) {
      if (!rules.reaches(p, Access::kRead)) {
        return forbidden(
            fmt::format("may read no key under prefix {}", detail::quote_for_message(p)));
      }
    }
    return std::nullopt;
  };
  switch (route.kind) {
    case Kind::kHealth:
    case Kind::kUi:
    case Kind::kWhoami:   // The caller's own token: any active token.
    case Kind::kMetrics:  // Counts and revisions, no key or value: any active token.
    case Kind::kTxn:      // Checked key by key once its body is parsed (respond_safe).
    case Kind::kRollback:
      return std::nullopt;
    case Kind::kKey:
    case Kind::kEntry:
      if (route.kind == Kind::kEntry || req.method() == http::verb::get) {
        if (!rules.can_read(route.key)) {
          return forbidden(
              fmt::format("may not read key {}", detail::quote_for_message(route.key)));
        }
      } else if (!rules.can_write(route.key)) {
        return forbidden(fmt::format("may not write key {}", detail::quote_for_message(route.key)));
      }
      return std::nullopt;
    case Kind::kHistory:
      if (!route.key.empty()) {
        if (!rules.can_read(route.key)) {
          return forbidden(
              fmt::format("may not read key {}", detail::quote_for_message(route.key)));
        }
        return std::nullopt;
      }
      return read_under(route.prefixes);
    case Kind::kList:
    case Kind::kChanges:
    case Kind::kWatch:
      return read_under(route.prefixes);
    case Kind::kLeases:
      if (!rules.any(Access::kWrite)) return forbidden("may write no key (needed for leases)");
      return std::nullopt;
    case Kind::kTokens:
      if (!rules.covers("", Access::kAdmin)) {
        return forbidden("is not an admin of every key (needed to manage tokens)");
      }
      return std::nullopt;
    case Kind::kLease:
      if (route.key == "keepalive") {
        if (!rules.any(Access::kWrite)) return forbidden("may write no key (needed for leases)");
        return std::nullopt;
      }
      // Revoking a lease deletes its keys, whoever wrote them.
      if (!rules.covers("", Access::kAdmin)) {
        return forbidden("is not an admin of every key (needed to revoke a lease)");
      }
      return std::nullopt;
  }
  return forbidden("may not use this route");
}

std::shared_ptr<const detail::WatchAccess> HttpServer::Impl::watch_access(
    const detail::Route& route, const Caller& caller) const {
  if (!caller.token) return nullptr;
  auto access = std::make_shared<detail::WatchAccess>();
  std::shared_ptr<const auth::Token> token = caller.token;
  access->readable = [token](std::string_view key) { return token->rules.can_read(key); };
  access->active = [registry = options_.tokens, token] { return registry->active(token); };
  if (route.prefixes.empty()) {
    access->filtered = !token->rules.covers("", auth::Access::kRead);
  } else {
    for (const auto& p : route.prefixes) {
      if (!token->rules.covers(p, auth::Access::kRead)) access->filtered = true;
    }
  }
  return access;
}

std::variant<detail::Route, Response> HttpServer::Impl::route(
    const http::request<http::string_body>& req) {
  std::vector<std::string> names;
  names.reserve(feeds_.size());
  for (const auto& f : feeds_) names.push_back(f->name());
  auto parsed = detail::parse_target(sv(req.target()), sv(req.method_string()), names);
  if (auto* refusal = std::get_if<detail::Refusal>(&parsed)) {
    Response res = error_response(refusal->status, refusal->message);
    if (!refusal->allow.empty()) res.set(http::field::allow, refusal->allow);
    return res;
  }
  detail::Route route = std::get<detail::Route>(std::move(parsed));
  using Kind = detail::Route::Kind;
  if (route.kind != Kind::kHealth && route.kind != Kind::kMetrics && route.kind != Kind::kUi &&
      route.kind != Kind::kWhoami) {
    route.feed = feeds_[route.store_index].get();
  }
  if (route.kind == detail::Route::Kind::kWatch) {
    // Last-Event-ID (what EventSource sends when reconnecting) wins over ?since=.
    auto last_id = req.find("Last-Event-ID");
    if (last_id != req.end()) {
      std::optional<detail::ResumePoint> point = detail::parse_resume_point(sv(last_id->value()));
      if (!point) return error_response(400, detail::bad_event_id("Last-Event-ID"));
      route.since = point->revision;
      route.since_anchor = point->anchor;
    }
    if (stopping_.load()) return error_response(503, "the server is stopping");
  }
  return route;
}

Response HttpServer::Impl::respond_ui(const std::string& file) const {
  Response res{http::status::ok, 11};
  if (options_.ui_dir.empty()) {
    std::optional<detail::UiAsset> asset = detail::builtin_ui_asset(file);
    if (!asset) return error_response(404, fmt::format("no console file '{}'", file));
    res.body() = asset->body;
  } else {
    // Development: the files as they are now (a small blocking read on the event loop).
    std::ifstream in(options_.ui_dir + "/" + file, std::ios::binary);
    if (!in) {
      return error_response(404, fmt::format("no console file '{}' in ui_dir", file));
    }
    res.body().assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  res.set(http::field::content_type, std::string(detail::ui_content_type(file)));
  res.set(http::field::cache_control, "no-cache");
  // The page runs only its own script and talks only to this server.
  res.set("Content-Security-Policy",
          "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
          "form-action 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  return res;
}

std::optional<Response> HttpServer::Impl::respond_now(const detail::Route& route,
                                                      const http::request<http::string_body>& req,
                                                      const Caller& caller) {
  using Kind = detail::Route::Kind;
  switch (route.kind) {
    case Kind::kUi:
      return respond_ui(route.key);
    case Kind::kWhoami: {
      json stores = json::array();
      for (const auto& f : feeds_) stores.push_back(f->name());
      // Without named tokens, whoever got through may do everything.
      json rules = caller.token ? auth::rules_to_json(caller.token->rules.rules())
                                : json::array({{{"prefix", ""}, {"access", "admin"}}});
      return json_response(200, {{"auth", options_.tokens != nullptr},
                                 {"name", caller.token ? json(caller.token->name) : json(nullptr)},
                                 {"rules", std::move(rules)},
                                 {"stores", std::move(stores)}});
    }
    case Kind::kHealth: {
      // healthy: every store follows its source; stale: one serves its snapshot file (reads
      // work, writes are refused); degraded: one has lost its source. 200 only when healthy.
      json stores = json::object();
      const char* overall = "healthy";
      std::optional<Stats> first;
      for (const auto& f : feeds_) {
        Stats s = f->store().stats();
        const char* status = s.stale ? "stale" : s.connected ? "healthy" : "degraded";
        if (std::string_view(status) == "degraded" ||
            (std::string_view(status) == "stale" && std::string_view(overall) == "healthy")) {
          overall = status;
        }
        json entry = {{"status", status},
                      {"crc", s.crc},
                      {"count", s.keys},
                      {"connected", s.connected},
                      {"revision", s.revision},
                      // Clients following this store through this server: RemoteStores,
                      // relays, consoles.
                      {"watch_streams", f->open_streams.load()}};
        if (s.stale_as_of) entry["stale_as_of_unix"] = to_unix_seconds(*s.stale_as_of);
        stores[f->name()] = std::move(entry);
        if (!first) first = s;
      }
      const bool healthy = std::string_view(overall) == "healthy";
      return json_response(healthy ? 200 : 503, {{"status", overall},
                                                 {"crc", first->crc},
                                                 {"count", first->keys},
                                                 {"connected", first->connected},
                                                 {"revision", first->revision},
                                                 {"stores", std::move(stores)}});
    }
    case Kind::kMetrics: {
      Response res{http::status::ok, 11};
      res.set(http::field::content_type, detail::kMetricsContentType);
      res.body() = detail::render_metrics(feeds_);
      res.body() += fmt::format(
          "# HELP syncconfig_http_rate_limited_total Requests answered 429 (over rate_limit).\n"
          "# TYPE syncconfig_http_rate_limited_total counter\n"
          "syncconfig_http_rate_limited_total {}\n",
          rate_limited_.load());
      return res;
    }
    case Kind::kKey:
      if (req.method() != http::verb::get) return std::nullopt;
      {
        // An invalid key cannot be stored: absent, like any other.
        std::optional<Config::Versioned> entry = route.feed->store().get_versioned(route.key);
        if (!entry) {
          return error_response(
              404, fmt::format("key {} not found", detail::quote_for_message(route.key)));
        }
        Response res{http::status::ok, 11};
        res.set(http::field::content_type, kJsonType);
        res.set(http::field::etag, etag(entry->revision));
        res.body() = dump(entry->value);
        return res;
      }
    default:
      break;
  }
  return std::nullopt;  // A whole listing, or database work: the blocking pool.
}

namespace {

// A JSON object body, or a 400 naming the problem.
std::variant<json, Response> object_body(const http::request<http::string_body>& req) {
  json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return error_response(400, "the body must be a JSON object");
  }
  return body;
}

Response txn_response(const TxnResult& r) {
  Response res = json_response(r.committed ? 200 : 409, http_json::to_json(r));
  if (r.committed) res.set("X-Syncconfig-Revision", std::to_string(r.revision));
  return res;
}

}  // namespace

std::optional<Response> HttpServer::Impl::respond_safe(const detail::Route& route,
                                                       const http::request<http::string_body>& req,
                                                       Config& store, const std::string& prefix,
                                                       const Caller& caller) {
  using Kind = detail::Route::Kind;
  auto forbidden = [&](const std::string& what) {
    return error_response(403, fmt::format("token '{}' {}", caller.token->name, what));
  };
  switch (route.kind) {
    case Kind::kEntry: {
      std::optional<KeyEntry> e = store.get_entry(route.key);
      if (!e)
        return error_response(
            404, fmt::format("key {} not found", detail::quote_for_message(route.key)));
      Response res = json_response(200, http_json::to_json(route.key, *e));
      res.set(http::field::etag, etag(e->revision));
      return res;
    }
    case Kind::kHistory: {
      Config::HistoryQuery q;
      q.prefix = route.key.empty();
      q.key = q.prefix ? prefix : route.key;
      q.limit = route.limit;
      q.before = route.before;
      json list = json::array();
      for (const HistoryRecord& h : store.history(q)) {
        if (caller.token && !caller.token->rules.can_read(h.key)) continue;
        list.push_back(http_json::to_json(h));
      }
      Response res =
          json_response(200, {{q.prefix ? "prefix" : "key", q.key}, {"history", std::move(list)}});
      if (caller.token && q.prefix && !caller.token->rules.covers(q.key, auth::Access::kRead)) {
        res.set(kFilteredHeader, "true");
      }
      return res;
    }
    case Kind::kTxn: {
      auto body = object_body(req);
      if (auto* refused = std::get_if<Response>(&body)) return std::move(*refused);
      Transaction txn = http_json::transaction_from_json(std::get<json>(body));
      if (txn.operations.size() > kMaxTransactionOperations) {
        return error_response(413, fmt::format("{} operations, at most {}", txn.operations.size(),
                                               kMaxTransactionOperations));
      }
      if (caller.token) {
        // Every key before anything is written: one forbidden key refuses the whole transaction.
        const auth::Rules& rules = caller.token->rules;
        for (const Operation& op : txn.operations) {
          if (!rules.can_write(op.key)) {
            return forbidden(
                fmt::format("may not write key {}", detail::quote_for_message(op.key)));
          }
        }
        for (const Guard& g : txn.guards) {
          if (g.kind == Guard::Kind::kRevision ? !rules.can_read(g.key)
                                               : !rules.covers(g.key, auth::Access::kRead)) {
            return forbidden(
                g.kind == Guard::Kind::kRevision
                    ? fmt::format("may not read key {} (a guard)", detail::quote_for_message(g.key))
                    : fmt::format("may not read every key under prefix {} (a guard)",
                                  detail::quote_for_message(g.key)));
          }
        }
      }
      if (txn.comment.empty()) {
        txn.comment = detail::percent_decode(sv(req["X-Syncconfig-Comment"]), false);
      }
      txn.actor = actor_of(req, caller);
      return txn_response(store.commit(txn));
    }
    case Kind::kRollback: {
      auto parsed = object_body(req);
      if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
      const json& body = std::get<json>(parsed);
      auto to = body.find("to");
      if (to == body.end() || !to->is_number_integer() || to->get<int64_t>() < 0) {
        return error_response(400, "\"to\" must be a revision (a non-negative integer)");
      }
      const bool whole_prefix = body.contains("prefix");
      auto target = body.find(whole_prefix ? "prefix" : "key");
      if (target == body.end() || !target->is_string()) {
        return error_response(400, "name what to roll back: \"key\" or \"prefix\" (a string)");
      }
      std::string comment = body.value("comment", std::string());
      if (caller.token) {
        const std::string& what = target->get_ref<const std::string&>();
        if (whole_prefix && !caller.token->rules.covers(what, auth::Access::kAdmin)) {
          return forbidden(fmt::format(
              "is not an admin of every key under prefix {} (needed to roll back a prefix)",
              detail::quote_for_message(what)));
        }
        if (!whole_prefix && !caller.token->rules.can_write(what)) {
          return forbidden(fmt::format("may not write key {}", detail::quote_for_message(what)));
        }
      }
      WriteOptions recorded;
      recorded.comment = std::move(comment);
      recorded.actor = actor_of(req, caller);  // As for every other write through the server.
      return txn_response(
          store.rollback(target->get<std::string>(), whole_prefix, to->get<int64_t>(), recorded));
    }
    case Kind::kLeases: {
      auto parsed = object_body(req);
      if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
      auto ttl = std::get<json>(parsed).find("ttl");
      if (ttl == std::get<json>(parsed).end() || !ttl->is_number_integer()) {
        return error_response(400, "\"ttl\" must be a number of seconds");
      }
      return json_response(
          200, http_json::to_json(store.grant_lease(std::chrono::seconds(ttl->get<int64_t>()))));
    }
    case Kind::kLease: {
      if (route.key == "keepalive") {
        std::optional<Lease> lease = store.keep_alive(route.lease);
        if (!lease)
          return error_response(404, fmt::format("lease {} expired or unknown", route.lease));
        return json_response(200, http_json::to_json(*lease));
      }
      if (!store.revoke_lease(route.lease)) {
        return error_response(404, fmt::format("lease {} expired or unknown", route.lease));
      }
      return json_response(200, {{"id", route.lease}, {"revoked", true}});
    }
    default:
      return std::nullopt;
  }
}

Response HttpServer::Impl::respond_tokens(const detail::Route& route,
                                          const http::request<http::string_body>& req) {
  if (!options_.tokens) {
    return error_response(404, "named tokens are not enabled on this server (serve --auth)");
  }
  Config& tokens = options_.tokens->store();
  if (req.method() == http::verb::get) {
    json list = json::array();
    for (const auth::TokenRecord& r : auth::list_tokens(tokens)) {
      json j = auth::to_json(r);
      j.erase("hash");  // Not a secret, but nobody needs it.
      j["name"] = r.name;
      list.push_back(std::move(j));
    }
    return json_response(200, {{"tokens", std::move(list)}});
  }
  if (req.method() == http::verb::delete_) {
    if (!auth::revoke_token(tokens, route.key)) {
      return error_response(
          404, fmt::format("no active token named {}", detail::quote_for_message(route.key)));
    }
    return json_response(200, {{"name", route.key}, {"revoked", true}});
  }
  auto parsed = object_body(req);
  if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
  const json& body = std::get<json>(parsed);
  auto name = body.find("name");
  auto rules = body.find("rules");
  if (name == body.end() || !name->is_string() || rules == body.end()) {
    return error_response(
        400, "the body must be {\"name\": NAME, \"rules\": [{\"prefix\", \"access\"}]}");
  }
  // create_token throws kInvalidArgument (400) naming a bad name, rule, or a taken name.
  std::string secret =
      auth::create_token(tokens, name->get<std::string>(), auth::rules_from_json(*rules));
  // The only time the secret exists outside the client: in this answer, never in a log.
  Response res = json_response(200, {{"name", *name}, {"secret", secret}});
  res.set(http::field::cache_control, "no-store");
  return res;
}

Response HttpServer::Impl::respond_blocking(const detail::Route& route,
                                            const http::request<http::string_body>& req,
                                            const Caller& caller) {
  try {
    Config& store = route.feed->store();
    const std::string prefix = route.prefixes.empty() ? "" : route.prefixes.front();
    // With named tokens: only the keys the token may read, and a header saying so when it may
    // not read every key under the prefix (whether or not such a key exists now).
    const bool filtered = caller.token && !caller.token->rules.covers(prefix, auth::Access::kRead);
    auto filter = [&](std::map<std::string, json>& values) {
      if (filtered) {
        std::erase_if(values,
                      [&](const auto& kv) { return !caller.token->rules.can_read(kv.first); });
      }
    };
    if (route.kind == detail::Route::Kind::kList && route.at) {
      Snapshot past = store.snapshot_at(*route.at, prefix);
      filter(past.values);
      Response res = json_response(200, settings_body(route, past.values));
      res.set("X-Syncconfig-Revision", std::to_string(past.revision));
      if (filtered) res.set(kFilteredHeader, "true");
      return res;
    }
    if (route.kind == detail::Route::Kind::kTokens) return respond_tokens(route, req);
    if (auto res = respond_safe(route, req, store, prefix, caller)) return std::move(*res);
    if (route.kind == detail::Route::Kind::kList) {
      const ResumeMark mark = resume_mark(*route.feed);  // Before the snapshot.
      Snapshot snap = store.snapshot(prefix);
      filter(snap.values);
      // Read after the snapshot, so at least the highest revision it can hold: a change applied
      // before older ones had arrived is in it although above its revision. A client that
      // numbers changes (a relay) must not number those as its own.
      const int64_t newest = std::max(snap.revision, store.stats().applied_revision);
      Response res = json_response(200, settings_body(route, snap.values));
      res.set("X-Syncconfig-Revision", std::to_string(snap.revision));
      res.set("X-Syncconfig-Newest-Revision", std::to_string(newest));
      if (auto id = mark.id_for(snap.revision)) res.set(kResumeIdHeader, *id);
      if (filtered) res.set(kFilteredHeader, "true");
      return res;
    }
    if (route.kind == detail::Route::Kind::kChanges) {
      // An anchored `since` first: from another history (a failover lost the change it names,
      // or the table was recreated), the changes after its number are another history's.
      if (route.since_anchor) {
        // Throws what Config::history throws (the database unreachable: 503).
        const std::optional<std::string> diverged = route.feed->anchor_problem(*route.since_anchor);
        if (diverged) {
          const int64_t now = store.stats().revision;
          Response res = json_response(200, {{"complete", false},
                                             {"reason", *diverged},
                                             {"history_reset", true},
                                             {"revision", now},
                                             {"changes", json::array()}});
          res.set("X-Syncconfig-Revision", std::to_string(now));
          return res;
        }
      }
      // As for GET /settings: a client that applied these changes resumes from a checked id.
      const ResumeMark mark = resume_mark(*route.feed);
      ChangesSince c =
          store.changes_since(*route.since, route.prefixes.empty() ? "" : route.prefixes.front());
      json changes = json::array();
      for (const Change& ch : c.changes) {
        if (filtered && !caller.token->rules.can_read(ch.key)) continue;
        changes.push_back({{"key", ch.key},
                           {"value", ch.value.value_or(json(nullptr))},
                           {"deleted", !ch.value.has_value()},
                           {"revision", ch.revision}});
      }
      Response res = json_response(200, {{"complete", c.complete},
                                         {"reason", c.reason},
                                         {"revision", c.revision},
                                         {"changes", std::move(changes)}});
      res.set("X-Syncconfig-Revision", std::to_string(c.revision));
      if (auto id = mark.id_for(c.revision); id && c.complete) res.set(kResumeIdHeader, *id);
      if (filtered) res.set(kFilteredHeader, "true");
      return res;
    }
    // put() and erase() validate the key (an invalid one is kInvalidArgument: 400). The answer
    // is the write's own outcome, never a re-read of the cache (another write may be there).
    auto condition = detail::parse_write_condition(sv(req[http::field::if_match]),
                                                   sv(req[http::field::if_none_match]));
    if (auto* refused = std::get_if<detail::Refusal>(&condition)) {
      return error_response(refused->status, refused->message);
    }
    const std::optional<int64_t> expected = std::get<std::optional<int64_t>>(condition);
    WriteOptions write_options;
    write_options.comment = detail::percent_decode(sv(req["X-Syncconfig-Comment"]), false);
    write_options.actor = actor_of(req, caller);
    write_options.lease = route.lease;
    if (req.method() == http::verb::put) {
      auto parsed = detail::parse_put_body(route.key, req.body(), options_.max_body_bytes);
      if (auto* refused = std::get_if<detail::Refusal>(&parsed)) {
        return error_response(refused->status, refused->message);
      }
      if (expected) {
        CasResult r = store.set_if(route.key, std::get<json>(parsed), *expected, write_options);
        if (!r) return precondition_failed(route.key, r);
        return written(route.key, r.value.value_or(json(nullptr)), r.revision);
      }
      WriteResult w = store.put(route.key, std::get<json>(parsed), write_options);
      return written(route.key, w.value.value_or(json(nullptr)), w.revision);
    }
    if (expected) {
      if (*expected == 0) {
        return error_response(400,
                              "If-None-Match: * on DELETE: a key cannot be deleted only if "
                              "it is absent");
      }
      CasResult r = store.remove_if(route.key, *expected, write_options);
      if (!r) return precondition_failed(route.key, r);
      Response res =
          json_response(200, {{"key", route.key}, {"deleted", true}, {"revision", r.revision}});
      res.set("X-Syncconfig-Revision", std::to_string(r.revision));
      res.set(http::field::etag, etag(r.revision));
      return res;
    }
    WriteResult w = store.erase(route.key, write_options);
    if (w.revision == 0) {
      return error_response(404,
                            fmt::format("key {} not found", detail::quote_for_message(route.key)));
    }
    Response res =
        json_response(200, {{"key", route.key}, {"deleted", true}, {"revision", w.revision}});
    res.set("X-Syncconfig-Revision", std::to_string(w.revision));
    res.set(http::field::etag, etag(w.revision));
    return res;
  } catch (const Error& e) {
    if (status_for(e.code()) >= 500) {
      log_->warn("http: {} {} failed: {}", sv(req.method_string()), printable(sv(req.target())),
                 e.what());
    }
    return error_response(e);
  } catch (const std::exception& e) {
    log_->error("http: {} {} failed: {}", sv(req.method_string()), printable(sv(req.target())),
                e.what());
    return error_response(500, std::string("internal error: ") + e.what());
  }
}

void HttpServer::Impl::add(const std::shared_ptr<Connection>& s) {
  internal::MutexLock lock(registry_mu_);
  sessions_.emplace(s.get(), s);
}
void HttpServer::Impl::remove(Connection* s) {
  internal::MutexLock lock(registry_mu_);
  sessions_.erase(s);
  registry_cv_.notify_all();
}
void HttpServer::Impl::add(const std::shared_ptr<WatchStream>& w) {
  internal::MutexLock lock(registry_mu_);
  streams_.emplace(w.get(), w);
}
void HttpServer::Impl::remove(WatchStream* w) {
  internal::MutexLock lock(registry_mu_);
  streams_.erase(w);
  registry_cv_.notify_all();
}

void HttpServer::Impl::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);  // Small events must not wait.
      std::size_t open;
      {
        internal::MutexLock lock(registry_mu_);
        open = sessions_.size() + streams_.size();
      }
      auto serve = [&](auto session) {
        if (open >= options_.max_connections) {
          session->refuse(
              fmt::format("too many connections (max_connections = {})", options_.max_connections));
        } else {
          session->start();
        }
      };
      if (auto tls = tls_context()) {
        serve(std::make_shared<Session<TlsStream>>(*this, std::move(socket), std::move(tls)));
      } else {
        serve(std::make_shared<Session<PlainStream>>(*this, std::move(socket)));
      }
    } else if (ec == net::error::no_descriptors) {
      // Out of file descriptors: let connections close before accepting again.
      log_->warn("http: accept failed: {}", ec.message());
      auto timer = std::make_shared<net::steady_timer>(control_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](beast::error_code) { accept(); });
      return;
    }
    accept();
  });
}

void HttpServer::Impl::tick(net::steady_timer& timer, std::chrono::milliseconds interval,
                            bool progress) {
  timer.expires_after(interval);
  timer.async_wait([this, &timer, interval, progress](beast::error_code ec) {
    if (ec || stopping_.load()) return;
    std::vector<std::shared_ptr<WatchStream>> streams;
    {
      internal::MutexLock lock(registry_mu_);
      streams.reserve(streams_.size());
      for (auto& [ptr, weak] : streams_) {
        if (auto s = weak.lock()) streams.push_back(std::move(s));
      }
    }
    for (auto& s : streams) s->tick(progress);
    tick(timer, interval, progress);
  });
}

void HttpServer::Impl::start() {
  internal::MutexLock lock(lifecycle_mu_);
  if (stopped_) throw Error(ErrorCode::kShutdown, "HttpServer: start() after stop()");
  if (started_) return;
  try {
    auto address =
        net::ip::make_address(options_.host == "localhost" ? "127.0.0.1" : options_.host);
    tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
    acceptor_.open(endpoint.protocol());
    // SO_REUSEADDR only (not SO_REUSEPORT): a port another server holds is an error.
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    beast::error_code ignored;
    acceptor_.close(ignored);
    throw Error(ErrorCode::kUnavailable,
                fmt::format("HttpServer: cannot listen on {}:{} ({})", options_.host, options_.port,
                            e.code().message()));
  }
  port_.store(acceptor_.local_endpoint().port());
  for (auto& f : feeds_) f->attach();
  work_.emplace(ioc_.get_executor());
  net::post(control_, [this] {
    accept();
    tick(progress_timer_, options_.watch_progress_interval, /*progress=*/true);
    tick(keepalive_timer_, options_.watch_keepalive, /*progress=*/false);
  });
  for (std::size_t i = 0; i < options_.io_threads; ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          // A handler threw: log it and keep serving the other connections.
          log_->error("http: unexpected error in the event loop: {}", e.what());
        }
      }
    });
  }
  started_ = true;
  log_->info("http: serving {} store(s) on {}://{}:{}", feeds_.size(),
             tls_context() ? "https" : "http", options_.host, port());
  log_->info("http: web console at {}://{}:{}/ui/{}", tls_context() ? "https" : "http",
             options_.host, port(), options_.ui_dir.empty() ? "" : " (files from ui_dir)");
}

void HttpServer::Impl::stop() {
  internal::MutexLock lock(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  if (started_) {
    net::post(control_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      progress_timer_.cancel();
      keepalive_timer_.cancel();
    });
    for (auto& f : feeds_) f->close();  // Streams end now.
    // Requests waiting on the database finish (bounded by the stores' db_timeout) and post their
    // answers to the loop, which is still running.
    blocking_pool_.join();
    std::vector<std::shared_ptr<Connection>> sessions;
    std::vector<std::shared_ptr<WatchStream>> streams;
    {
      internal::MutexLock registry(registry_mu_);
      for (auto& [p, w] : sessions_) {
        if (auto s = w.lock()) sessions.push_back(std::move(s));
      }
      for (auto& [p, w] : streams_) {
        if (auto s = w.lock()) streams.push_back(std::move(s));
      }
    }
    for (auto& s : sessions) s->close();
    for (auto& s : streams) s->close();
    sessions.clear();
    streams.clear();
    {
      // Answers being written finish; then every connection is gone.
      internal::MutexLock registry(registry_mu_);
      const auto until = std::chrono::steady_clock::now() + options_.watch_write_timeout;
      while (!(sessions_.empty() && streams_.empty()) && registry_cv_.wait_until(registry, until)) {
      }
    }
    work_.reset();
    ioc_.stop();
    for (auto& t : io_threads_) t.join();
    io_threads_.clear();
    // ioc_.stop() drops handlers still queued: under load the close posted above may never have
    // run, which left the port bound (a client's connection then waited for its whole timeout,
    // and a server started again on the port could not bind it). No io thread runs now.
    beast::error_code ec;
    acceptor_.close(ec);
  } else {
    blocking_pool_.join();
  }
  for (auto& f : feeds_) f->detach();
}

HttpServer::HttpServer(std::vector<ServedStore> stores, HttpOptions options)
    : impl_(std::make_unique<Impl>(std::move(stores), std::move(options))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() { impl_->start(); }

int HttpServer::port() const { return impl_->port(); }

void HttpServer::stop() { impl_->stop(); }

void HttpServer::reload_tls() { impl_->reload_tls(); }

void HttpServer::Impl::reload_tls() {
  if (options_.tls_cert_file.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "HttpServer: reload_tls() on a server without TLS (no tls_cert_file)");
  }
  std::shared_ptr<ssl::context> fresh;
  try {
    fresh = make_tls_context(options_.tls_cert_file, options_.tls_key_file);
  } catch (const Error& e) {
    log_->error("http: TLS reload failed, still serving the previous certificate: {}", e.message());
    throw;
  }
  {
    internal::MutexLock lock(tls_mu_);
    tls_ = std::move(fresh);
  }
  log_->info("http: TLS certificate reloaded from '{}' (key '{}'); new connections use it",
             options_.tls_cert_file, options_.tls_key_file);
}

}  // namespace syncconfig::service
