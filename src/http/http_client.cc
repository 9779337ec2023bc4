#include "http/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "syncconfig/error.h"

namespace syncconfig::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

// Thrown inside a call when stop() interrupts it; request() and watch() turn it into their
// documented outcome.
struct Stopped {};

constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kStreamReadBytes = 16 * 1024;

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

// A target or header text that would let a caller's string split the request (CR, LF, NUL).
void check_request_text(std::string_view what, std::string_view text) {
  if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                "HTTP request: " + std::string(what) + " contains CR, LF or NUL");
  }
}

void check_target(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    throw Error(ErrorCode::kInvalidArgument, "HTTP request: the target must begin with '/'");
  }
  check_request_text("the target", target);
  if (target.find(' ') != std::string_view::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                "HTTP request: the target contains a space (percent-encode it)");
  }
}

bool has_field(const Headers& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return equal_ignoring_case(h.first, name); });
}

Headers fields_of(const bhttp::fields& fields) {
  Headers out;
  for (const auto& f : fields)
    out.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return out;
}

// The connection closed or failed under us (retrying may help), as opposed to an answer that is
// not HTTP or breaks a limit (it will not).
bool is_transport_error(const error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
         ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
         ec.category() == boost::system::system_category() ||
         ec.category() == asio::error::get_ssl_category();
}

}  // namespace

std::optional<std::string> Response::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (equal_ignoring_case(n, name)) return v;
  }
  return std::nullopt;
}

// One exchange's connection, on an io_context of its own that runs on the calling thread one
// handler at a time until the awaited operation completes, a deadline passes, or stop() stops
// the io_context. Operations still pending when a deadline or stop() ends the call are abandoned:
// the socket closes and the io_context destroys their handlers without calling them.
class HttpClient::Call {
 public:
  explicit Call(HttpClient& client) : client_(client) {
    internal::MutexLock lock(client_.mu_);
    if (client_.stopped_.load()) throw Stopped{};
    client_.running_.push_back(&ioc_);
  }
  ~Call() {
    error_code ignored;
    tls_.reset();
    socket_.close(ignored);
    internal::MutexLock lock(client_.mu_);
    client_.running_.erase(std::find(client_.running_.begin(), client_.running_.end(), &ioc_));
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  std::string url() const { return client_.server_.to_string(); }

  // Resolves the server's host and connects to its addresses in turn, before `deadline`.
  void connect(Clock::time_point deadline) {
    const Url& server = client_.server_;
    // The budget is connect_timeout or what is left of the caller's (request_timeout, answer_by).
    const auto budget = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    const std::string timeout =
        budget.count() > 0 ? "cannot connect to " + url() + " within " + duration_text(budget)
                           : "cannot connect to " + url() + ": the request's time had run out";
    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    asio::ip::address literal = asio::ip::make_address(server.host, ec);
    if (!ec) {
      endpoints.emplace_back(literal, server.port);
    } else {
      // A name: the system resolver, on asio's resolver thread (joined with the io_context).
      tcp::resolver resolver(ioc_);
      bool done = false;
      resolver.async_resolve(server.host, std::to_string(server.port),
                             [&](const error_code& e, const tcp::resolver::results_type& r) {
                               ec = e;
                               for (const auto& entry : r) endpoints.push_back(entry.endpoint());
                               done = true;
                             });
      run(done, deadline, timeout);
      if (ec) {
        throw Error(ErrorCode::kUnavailable,
                    "cannot resolve the host of " + url() + ": " + ec.message());
      }
    }
    bool done = false;
    asio::async_connect(socket_, endpoints, [&](const error_code& e, const tcp::endpoint&) {
      ec = e;
      done = true;
    });
    run(done, deadline, timeout);
    if (ec) {
      throw Error(ErrorCode::kUnavailable, "cannot connect to " + url() + ": " + ec.message());
    }
    if (detail::connected_to_itself(socket_.native_handle())) {
      socket_.close(ec);
      throw Error(ErrorCode::kUnavailable,
                  "cannot connect to " + url() +
                      ": nothing listens there (the connection reached its own port)");
    }
    socket_.set_option(tcp::no_delay(true), ec);  // Small requests must not wait for Nagle.
    if (client_.tls_) handshake(deadline);
  }

  // https: the client side of the TLS handshake, the server's certificate verified against the
  // CA file (or the system's) and the URL's host.
  void handshake(Clock::time_point deadline) {
    const Url& server = client_.server_;
    tls_.emplace(socket_, *client_.tls_);
    SSL* ssl = tls_->native_handle();
    error_code ec;
    asio::ip::make_address(server.host, ec);
    if (ec) {
      SSL_set_tlsext_host_name(ssl, server.host.c_str());  // SNI: names only, never addresses.
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, server.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server.host.c_str());
    }
    tls_->set_verify_mode(asio::ssl::verify_peer);
    bool done = false;
    tls_->async_handshake(asio::ssl::stream_base::client, [&](const error_code& e) {
      ec = e;
      done = true;
    });
    run(done, deadline,
        "no TLS handshake with " + url() + " within " +
            duration_text(client_.options_.connect_timeout));
    if (ec) {
      std::string why = ec.message();
      const long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      }
      throw Error(ErrorCode::kUnavailable, "TLS handshake with " + url() + " failed: " + why);
    }
  }

  // Runs `op` on the connection: the TLS stream for https, else the socket.
  template <class Op>
  void io(Op&& op) {
    if (tls_) {
      op(*tls_);
    } else {
      op(socket_);
    }
  }

  void write(bhttp::request<bhttp::string_body>& request, Clock::time_point deadline,
             const std::string& what) {
    bool done = false;
    error_code ec;
    io([&](auto& stream) {
      bhttp::async_write(stream, request, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
      });
    });
    run(done, deadline, timeout_message(what));
    if (ec) {
      throw Error(ErrorCode::kUnavailable,
                  "sending " + what + " to " + url() + " failed: " + ec.message());
    }
  }

  // Reads the answer's header (read_header) or all of it (read) into `parser`.
  template <class Parser>
  void read_header(Parser& parser, Clock::time_point deadline, const std::string& what,
                   const std::optional<std::string>& timeout = std::nullopt) {
    bool done = false;
    error_code ec;
    io([&](auto& stream) {
      bhttp::async_read_header(stream, buffer_, parser, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
      });
    });
    run(done, deadline, timeout.value_or(timeout_message(what)));
    if (ec) throw read_error(ec, what);
  }
  template <class Parser>
  void read(Parser& parser, Clock::time_point deadline, const std::string& what) {
    bool done = false;
    error_code ec;
    io([&](auto& stream) {
      bhttp::async_read(stream, buffer_, parser, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
      });
    });
    run(done, deadline, timeout_message(what));
    if (ec) throw read_error(ec, what);
  }
  // Reads some of a streamed body into the parser's buffer_body; returns the read's error
  // (need_buffer, when the buffer filled up, is not one).
  template <class Parser>
  error_code read_some(Parser& parser, Clock::time_point deadline, const std::string& silent) {
    bool done = false;
    error_code ec;
    io([&](auto& stream) {
      bhttp::async_read_some(stream, buffer_, parser, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
      });
    });
    run(done, deadline, silent);
    return ec == bhttp::error::need_buffer ? error_code() : ec;
  }

  Error read_error(const error_code& ec, const std::string& what) const {
    if (ec == bhttp::error::body_limit) {
      return Error(ErrorCode::kInternal,
                   "the answer to " + what + " from " + url() + " is larger than " +
                       std::to_string(client_.options_.max_body_bytes) + " bytes (max_body_bytes)");
    }
    if (is_transport_error(ec)) {
      return Error(ErrorCode::kUnavailable, "the connection to " + url() +
                                                " broke before the answer to " + what +
                                                " was complete: " + ec.message());
    }
    return Error(ErrorCode::kInternal, "the answer to " + what + " from " + url() +
                                           " is not valid HTTP: " + ec.message());
  }

 private:
  std::string timeout_message(const std::string& what) const {
    return "no complete answer to " + what + " from " + url() + " within " +
           duration_text(client_.options_.request_timeout);
  }

  // Runs handlers until `done`; throws Stopped after stop(), Error(kTimeout, timeout) at
  // `deadline`.
  void run(const bool& done, Clock::time_point deadline, const std::string& timeout) {
    while (!done) {
      // stop() sets the flag before it stops the io_context, and the io_context stops for
      // nothing else (work_ keeps it from running out of work): a stopped io_context is seen here.
      if (client_.stopped_.load()) throw Stopped{};
      if (Clock::now() >= deadline) throw Error(ErrorCode::kTimeout, timeout);
      ioc_.run_one_until(deadline);
    }
  }

  HttpClient& client_;
  // Declared before the objects that use it: destroyed last.
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  tcp::socket socket_{ioc_};
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;  // https: over socket_.
  beast::flat_buffer buffer_;
};

HttpClient::HttpClient(Url server, ClientOptions options)
    : server_(std::move(server)), options_(std::move(options)) {
  if (!server_.tls) return;
  tls_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls_->native_handle(), TLS1_2_VERSION);
  error_code ec;
  if (options_.ca_file.empty()) {
    tls_->set_default_verify_paths(ec);
    if (ec) {
      throw Error(ErrorCode::kInvalidArgument, "cannot load the system's CA certificates for " +
                                                   server_.to_string() + ": " + ec.message());
    }
  } else {
    auto bad_ca_file = [&](const std::string& why) {
      return Error(ErrorCode::kInvalidArgument, "cannot use the CA file '" + options_.ca_file +
                                                    "' for " + server_.to_string() + ": " + why);
    };
    if (!std::ifstream(options_.ca_file)) throw bad_ca_file(std::strerror(errno));
    tls_->load_verify_file(options_.ca_file, ec);
    if (ec) throw bad_ca_file("no PEM certificate in it (" + ec.message() + ")");
  }
}

HttpClient::~HttpClient() = default;

void HttpClient::stop() {
  internal::MutexLock lock(mu_);
  stopped_.store(true);
  for (asio::io_context* ioc : running_) ioc->stop();
}

namespace {

bhttp::request<bhttp::string_body> make_request(bhttp::verb verb, const Url& server,
                                                std::string_view target, const Headers& headers,
                                                const std::string& token) {
  bhttp::request<bhttp::string_body> request{verb, server.base_path + std::string(target), 11};
  request.set(bhttp::field::host, server.host_and_port());
  request.set(bhttp::field::user_agent, "syncconfig");
  request.set(bhttp::field::connection, "close");
  if (!token.empty()) request.set(bhttp::field::authorization, "Bearer " + token);
  for (const auto& [name, value] : headers) {
    check_request_text("a header name", name);
    check_request_text("the value of header " + name, value);
    if (name.empty() || name.find(':') != std::string::npos) {
      throw Error(ErrorCode::kInvalidArgument, "HTTP request: bad header name \"" + name + "\"");
    }
    request.insert(name, value);
  }
  return request;
}

}  // namespace

Response HttpClient::request(std::string_view method, std::string_view target,
                             std::string_view body, const Headers& headers,
                             std::optional<Clock::time_point> answer_by) {
  const bhttp::verb verb = bhttp::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == bhttp::verb::unknown) {
    throw Error(ErrorCode::kInvalidArgument,
                "HTTP request: unknown method \"" + std::string(method) + "\"");
  }
  check_target(target);
  const std::string what = std::string(method) + " " + server_.base_path + std::string(target);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + options_.request_timeout;
  auto req = make_request(verb, server_, target, headers, options_.token);
  if (!body.empty() && !has_field(headers, "Content-Type")) {
    req.set(bhttp::field::content_type, "application/json");
  }
  req.body() = std::string(body);
  req.prepare_payload();
  try {
    const Clock::time_point header_by = std::min(deadline, answer_by.value_or(deadline));
    Call call(*this);
    call.connect(std::min(start + options_.connect_timeout, header_by));
    call.write(req, header_by, what);

    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(options_.max_body_bytes);
    if (answer_by) {
      call.read_header(parser, header_by, what,
                       "no answer to " + what + " from " + server_.to_string() + " within " +
                           duration_text(std::chrono::duration_cast<std::chrono::milliseconds>(
                               header_by - start)));
    }
    call.read(parser, deadline, what);
    Response response;
    response.status = static_cast<int>(parser.get().result_int());
    response.headers = fields_of(parser.get().base());
    response.body = std::move(parser.get().body());
    return response;
  } catch (const Stopped&) {
    throw Error(ErrorCode::kShutdown, "the HTTP client was stopped (" + what + ")");
  }
}

WatchResult HttpClient::watch(std::string_view target, const Headers& headers,
                              const SseHandler& on_event) {
  check_target(target);
  const std::string what = "GET " + server_.base_path + std::string(target);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + options_.request_timeout;
  auto req = make_request(bhttp::verb::get, server_, target, headers, options_.token);
  if (!has_field(headers, "Accept")) req.set(bhttp::field::accept, "text/event-stream");
  if (!has_field(headers, "Cache-Control")) req.set(bhttp::field::cache_control, "no-cache");
  req.prepare_payload();
  WatchResult result;
  try {
    Call call(*this);
    call.connect(std::min(start + options_.connect_timeout, deadline));
    call.write(req, deadline, what);

    // The header first, with no body type decided: a stream's body is read piece by piece into
    // a buffer_body, a refusal's whole into a string.
    bhttp::response_parser<bhttp::empty_body> head;
    head.header_limit(kHeaderLimit);
    call.read_header(head, deadline, what);
    result.response.status = static_cast<int>(head.get().result_int());
    result.response.headers = fields_of(head.get().base());
    if (result.response.status != 200) {
      bhttp::response_parser<bhttp::string_body> refusal(std::move(head));
      refusal.body_limit(options_.max_body_bytes);
      call.read(refusal, deadline, what);
      result.response.body = std::move(refusal.get().body());
      result.end = WatchResult::End::kRefused;
      return result;
    }

    bhttp::response_parser<bhttp::buffer_body> stream(std::move(head));
    stream.body_limit(boost::none);  // A stream has no end in sight; events are bounded instead.
    SseParser events(options_.max_body_bytes);
    std::vector<char> piece(kStreamReadBytes);
    const std::string silent = "the event stream from " + call.url() + " sent nothing for " +
                               duration_text(options_.watch_idle_timeout);
    for (;;) {
      if (stream.is_done()) {
        result.end = WatchResult::End::kServerClosed;
        return result;
      }
      stream.get().body().data = piece.data();
      stream.get().body().size = piece.size();
      const error_code ec =
          call.read_some(stream, Clock::now() + options_.watch_idle_timeout, silent);
      const std::size_t n = piece.size() - stream.get().body().size;
      if (n > 0 && !events.feed(std::string_view(piece.data(), n), on_event)) {
        result.end = WatchResult::End::kHandlerDone;
        return result;
      }
      if (ec) {
        if (stream.is_done()) continue;
        if (is_transport_error(ec)) {
          throw Error(ErrorCode::kUnavailable,
                      "the event stream from " + call.url() + " broke: " + ec.message());
        }
        throw call.read_error(ec, what);
      }
    }
  } catch (const Stopped&) {
    result.end = WatchResult::End::kStopped;
    return result;
  }
}

namespace detail {

bool connected_to_itself(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof local, peer_len = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    return false;
  }
  return local_len == peer_len && std::memcmp(&local, &peer, local_len) == 0;
}

}  // namespace detail

}  // namespace syncconfig::http
