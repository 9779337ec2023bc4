// HttpClient: HTTP/1.1 requests and Server-Sent Event streams to one syncconfig server, on
// Boost.Beast. The CLI's --server commands use it; a library client that keeps a cache through
// GET /settings and /watch can be built on it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/sse_parser.h"
#include "http/url.h"
#include "util/mutex.h"

namespace boost::asio {
class io_context;
namespace ssl {
class context;
}
}  // namespace boost::asio

namespace syncconfig::http {

// Header fields in order; names compare case-insensitively.
using Headers = std::vector<std::pair<std::string, std::string>>;

struct Response {
  int status = 0;
  Headers headers;
  std::string body;

  // The first field of that name (case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
};

struct ClientOptions {
  // When non-empty, sent as "Authorization: Bearer <token>" on every request. Never logged and
  // never part of an error message.
  std::string token;
  // Bound on resolving the host and connecting (every address of the name in turn).
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(5);
  // Bound on a whole request() (connect included), and on watch() until the response header.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(30);
  // watch(): a stream that delivers no byte for this long counts as broken. Servers send a
  // keepalive comment on idle streams (ours every 15 s), so this detects a peer that vanished
  // without closing the connection.
  std::chrono::milliseconds watch_idle_timeout = std::chrono::seconds(60);
  // Largest response body request() accepts, and largest single event watch() accepts.
  std::size_t max_body_bytes = std::size_t{256} << 20;
  // https:// servers: PEM file of the CA certificate(s) that the server's chain must lead to.
  // Default "": the system trust store (OpenSSL's default paths, /etc/ssl/certs on Debian).
  // Verification is always on: the chain, and the URL's host against the certificate's names
  // (or IP addresses); the host is also sent as SNI. Unused for http://.
  std::string ca_file;
};

// How a watch() call ended.
struct WatchResult {
  enum class End {
    kStopped,       // stop() was called.
    kHandlerDone,   // on_event returned false.
    kServerClosed,  // The server ended the stream cleanly (e.g. it is shutting down).
    kRefused,       // The server answered with a status other than 200: see `response`.
  };
  End end = End::kStopped;
  // Status and header fields of the answer (200 for a stream; with kStopped before an answer
  // arrived, status 0). With kRefused, the body too (at most max_body_bytes).
  Response response;
};

// Thread safety: request() and watch() may run concurrently from any number of threads; each
// call has its own connection and its own io_context, run on the calling thread (no thread is
// started, none is detached). The only shared state, the stop flag and the list of running calls,
// is guarded by a mutex. stop() may be called from any thread at any time (not from a signal
// handler: it locks a mutex).
//
// Stopping: stop() makes every running call return promptly (it stops their io_contexts, so a
// call blocked in connect, in a read or between events returns within microseconds), and every
// later call return at once: request() throws Error(kShutdown), watch() returns kStopped. It is
// permanent; make a new client to go on. To stop a watch() from a signal, let the handler wake a
// thread (e.g. through a self-pipe) that calls stop(). One exception to "promptly": a call that
// is resolving a host name (not an IP address) returns only once the system resolver does.
//
// Connections: one per call, closed at its end ("Connection: close"); no pooling yet.
//
// Errors: request() and watch() throw syncconfig::Error naming the URL and what failed:
// kInvalidArgument for a bad method, target or header; kUnavailable when the server cannot be
// reached or the connection breaks; kTimeout when a deadline of ClientOptions passes;
// kInternal for an answer that is not valid HTTP, too large, or an event stream that breaks the
// rules; kShutdown after stop() (request() only). HTTP error statuses are not exceptions: they are
// returned. https://: a TLS handshake that fails, a certificate that does not verify included
// ("TLS handshake with https://h:443 failed: certificate verify failed: unable to get local
// issuer certificate"), is kUnavailable like any server that cannot be used: retrying the same
// server helps only once its certificate (or ca_file) is fixed, another server of the list may
// work (RemoteStore moves on to it).
//
// The constructor throws Error(kInvalidArgument) naming ca_file when it cannot be loaded.
class HttpClient {
 public:
  explicit HttpClient(Url server, ClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const Url& server() const { return server_; }

  // Sends `method` (GET, PUT, DELETE, POST, ...) to server().base_path + `target` (a path
  // beginning with '/', with its query, percent-encoded: see percent_encode()) and reads the
  // whole answer. A non-empty body without a Content-Type in `headers` is sent as
  // application/json.
  //
  // `answer_by`: when given, the connection and the answer's status line and header must be
  // done by then (else Error(kTimeout)); the body is still bounded by request_timeout alone. For
  // a caller with a budget of its own (RemoteStore::open's open_timeout) whose answers may be
  // long (a whole snapshot): a server that accepts and never answers costs the budget, not
  // request_timeout.
  Response request(std::string_view method, std::string_view target, std::string_view body = {},
                   const Headers& headers = {},
                   std::optional<std::chrono::steady_clock::time_point> answer_by = std::nullopt);

  // GETs `target` as an event stream (Accept: text/event-stream; pass Last-Event-ID in
  // `headers` to resume) and calls `on_event` on the calling thread for every event, as the
  // chunked (or close-delimited) body is decoded, until the stream ends, on_event returns false,
  // or stop() is called. A connection that breaks mid-stream, or stays silent for
  // watch_idle_timeout, throws Error(kUnavailable / kTimeout): reconnect with the last
  // SseEvent::id seen as Last-Event-ID.
  WatchResult watch(std::string_view target, const Headers& headers, const SseHandler& on_event);

  // See "Stopping" above. Idempotent.
  void stop();
  bool stopped() const { return stopped_.load(); }

  class Call;  // One request's connection (http_client.cc).

 private:
  friend class Call;

  const Url server_;
  const ClientOptions options_;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // https: read-only after the constructor.
  std::atomic<bool> stopped_{false};
  internal::Mutex mu_;  // stopped_ is set under it.
  // The io_contexts of calls in progress.
  std::vector<boost::asio::io_context*> running_ SC_GUARDED_BY(mu_);
};

namespace detail {
// Whether the connected socket `fd` reached itself: connecting to a local port nobody listens on
// can pick that very port as its own ephemeral port (TCP simultaneous open), and the connection
// then "succeeds" with no server behind it — the request waits for its whole timeout, and the
// port stays taken, so the server cannot start on it meanwhile.
bool connected_to_itself(int fd);
}  // namespace detail

}  // namespace syncconfig::http
