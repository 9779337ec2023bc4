// HttpServer: the HTTP API of `syncconfig serve` over one or more stores (see README "HTTP API"),
// on Boost.Beast/Asio: an event loop on `io_threads` threads serves every connection, so an open
// /watch stream costs a socket and a small object, not a thread (docs/architecture.md). Requests
// that wait on the database (PUT, DELETE, resuming a stream from the table) run on a separate
// pool of `blocking_threads`, so a slow database never stalls the loop. With tls_cert_file and
// tls_key_file every connection is TLS (the same request handling over an ssl_stream), and
// reload_tls() rotates the certificate for new connections.
//
// Owns its threads: stop() stops accepting, lets requests in flight finish, ends /watch streams
// and joins. Safe for concurrent access from multiple threads without external synchronization.
//
// Routes (JSON bodies; every error is {"error": "<what was wrong>"}). The settings and watch
// routes exist for the default (first) store and, for every store, under /stores/{name}:
//   GET    /settings[?prefix=P]  200 {key: value, ...}; header X-Syncconfig-Revision: the
//                                revision the answer is complete to (a watch from it misses
//                                nothing); X-Syncconfig-Newest-Revision: at least the highest
//                                revision it can hold (a change applied before older ones had
//                                arrived can be above the first; a relay numbers only changes
//                                above it as its own)
//   GET    /settings/{key}       200 the value as JSON text; 404 absent
//   PUT    /settings/{key}       body: a JSON value. 200 {"key", "value" (as stored), "revision"}
//                                (the write's own, also in X-Syncconfig-Revision); 400 body not
//                                JSON (or nested deeper than 512) or bad key; 413 body over
//                                max_body_bytes; 503 database unavailable/timeout/shut down
//   DELETE /settings/{key}       200 {"key", "deleted": true, "revision"}; 404 absent
//   Safe changes (docs/safe-changes-http.md): ETag / If-Match / If-None-Match on the key routes
//   (412), GET /entries/{key}, POST /txn (409, 413), GET /history/{key}, GET /history?prefix=,
//   GET /settings?at=R (410), POST /rollback, POST /leases, POST /leases/{id}/keepalive,
//   DELETE /leases/{id}
//   GET    /changes?since=R[&prefix=P]  200 {"complete", "reason", "revision", "changes": [{"key",
//                                "value", "deleted", "revision"}]}: Config::changes_since
//   GET    /watch[?prefix=P...][&since=R]  Server-Sent Events, see below
//   GET    /health               200 healthy / 503 degraded (a store has no live connection)
//   GET    /metrics              Prometheus text format 0.0.4, series labelled store="name"
// Keys are the rest of the path after /settings/, percent-decoded once ('/' allowed). Unknown
// routes and stores get 404, other methods on a known route 405. With a token, every route
// (health and metrics included) needs "Authorization: Bearer <token>", else 401. With named
// tokens (HttpOptions::tokens), see docs/access-control.md for what each route needs: a denied
// key is 403; a list, changes, history or watch over a prefix carries only readable keys and
// "X-Syncconfig-Filtered: true" when the token cannot read everything under it.
//
// /watch: every event id starts with a database revision of the table, the same on every server
// of it, and carries an anchor (docs/protocol.md, "Resume tokens"): R.hhhhhhhh on a change (the
// fingerprint of that change), R.A.hhhhhhhh elsewhere (the newest change at or below R, at A):
//   id: R.A.h / event: ready  / data: {"revision": R}   first, unless the stream starts with a
//   reset id: R.h   / event: change / data: {"key","value" (null if deleted),"deleted","revision":
//   R} id: R.A.h / event: progress / data: {"revision": R} every watch_progress_interval on a
//   stream
//                                                     that sent nothing else: all up to R was sent
//   id: R.A.h / event: reset  / data: {"revision": R, "newest": N, "reason", "history_reset",
//                                      "settings": {...}}   replace your state (N: see /settings)
//   ": keepalive" comments every watch_keepalive on a stream that sent nothing else
// (".A.h" is left out while the server knows no change at or below R.)
// Changes go out per key in commit order and across keys in revision order; a transaction's
// changes are consecutive events (one per key, each with its own revision) written together.
// Last-Event-ID (or ?since=) resumes after R on any server of the same table: first the anchor
// is checked against the server's memory or the change log (a change that is not there, or
// another one at that revision: a reset with "history_reset": true — a failover lost commits or
// the table was recreated); then from memory, else from the table (each key changed since R
// once, with its latest value, and every deletion, in revision order). When the table cannot say
// what changed after R (its deletions pruned, R beyond the table's newest revision, the table
// recreated) the stream starts with a reset. A bare R is accepted and resumed unchecked.
// since/Last-Event-ID not an event id, or a prefix that no key can start with: 400. A stream
// that falls more than watch_max_lag_bytes behind, or whose write stalls for
// watch_write_timeout, is closed (the client resumes by id). stop() ends open streams.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "syncconfig/store.h"

namespace spdlog {
class logger;
}

namespace syncconfig::auth {
class TokenRegistry;
}

namespace syncconfig::service {

struct HttpOptions {
  // Address to bind. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  // Port to bind; 0 picks a free one (see HttpServer::port()). Default 8080.
  int port = 8080;
  // When non-empty, every request must carry "Authorization: Bearer <token>" (else 401).
  std::string token;
  // Access control with named tokens (`serve --auth`, docs/access-control.md): when set, every
  // request but GET /health must carry "Authorization: Bearer <secret>" of an active token of
  // this registry (401 missing or unknown), and each route checks the token's rules (403).
  // Cannot be combined with `token`. Default: nullptr (no access control beyond `token`).
  std::shared_ptr<auth::TokenRegistry> tokens;
  // Largest request body accepted; larger gets 413. Default 1 MiB.
  std::size_t max_body_bytes = 1u << 20;
  // Largest body of POST /txn (a transaction of many values); larger gets 413. Default 64 MiB
  // (Transaction's own limit).
  std::size_t max_txn_bytes = kMaxTransactionBytes;
  // Largest request line + headers; larger gets 431. Default 16 KiB.
  std::size_t max_header_bytes = 16u << 10;
  // Threads running the event loop. Default 2.
  std::size_t io_threads = 2;
  // Threads for requests that wait on the database (PUT, DELETE, a /watch resumed from the
  // table): at most this many such requests run at once, the others queue. Default 8.
  std::size_t blocking_threads = 8;
  // A connection with no request in progress is closed after this long. Default 60 s.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
  // From a request's first byte, its line and headers must arrive within this (slow senders
  // hold a socket, never a thread, and not for longer); a new connection's first byte too.
  // Default 10 s.
  std::chrono::milliseconds header_timeout = std::chrono::seconds(10);
  // The body must arrive within this after the headers. Default 30 s.
  std::chrono::milliseconds body_timeout = std::chrono::seconds(30);
  // Requests per second each client may make on average — a client is its named token under
  // `tokens`, else its IP address — with bursts of rate_limit_burst; more are answered 429 with
  // Retry-After (seconds). GET /health is never limited; a /watch counts once, when it opens.
  // Default 0: no limit.
  double rate_limit = 0;
  // Requests a client may make at once. Default 0: rate_limit's worth (one second).
  double rate_limit_burst = 0;
  // Open connections at most; one more is answered 503 and closed. Default 50000 (mind the
  // process's file descriptor limit, which `serve` raises to its hard limit).
  std::size_t max_connections = 50000;
  // Changes kept per store for resuming /watch streams from memory. Default 100000.
  std::size_t watch_history = 100000;
  // Bound on the bytes of event text those changes take per store. Default 64 MiB.
  std::size_t watch_history_bytes = 64u << 20;
  // A stream that has caught up and then falls further behind than this many bytes of events is
  // closed as too slow. Default 4 MiB.
  std::size_t watch_max_lag_bytes = 4u << 20;
  // A write to a stream that does not complete within this closes it (a stalled client).
  // Default 10 s.
  std::chrono::milliseconds watch_write_timeout = std::chrono::seconds(10);
  // A stream that sent nothing for this long gets a progress event. Default 10 s.
  std::chrono::milliseconds watch_progress_interval = std::chrono::seconds(10);
  // A stream that sent nothing for this long gets a ": keepalive" comment. Default 15 s.
  std::chrono::milliseconds watch_keepalive = std::chrono::seconds(15);
  // TLS: PEM files of the certificate chain (the server's certificate first, then any
  // intermediates) and of its private key. Both empty (the default): plain HTTP. Both set: every
  // connection is TLS, version 1.2 at least; the handshake must complete within header_timeout
  // and the connection counts against max_connections from its accept. reload_tls() reads them
  // again.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The web console (GET /ui): empty (the default) serves the files built into the binary; a
  // directory serves its index.html, app.js and app.css as they are at each request (for
  // working on the console without rebuilding).
  std::string ui_dir;
  // Logger for the access log (debug level) and errors. Default (nullptr): spdlog's default.
  std::shared_ptr<spdlog::logger> logger;
};

// A store served under a name. The first one is also served at the unprefixed routes.
struct ServedStore {
  std::string name;
  Config* store;  // Not owned (a Store, or a RemoteStore for a relay); must outlive the HttpServer.
};

class HttpServer {
 public:
  // Throws syncconfig::Error(kInvalidArgument) naming the problem for unusable options or stores
  // (no store, a null store, an empty or duplicate name, a name containing '/', a TLS
  // certificate or key file that cannot be read or used, naming the file).
  HttpServer(std::vector<ServedStore> stores, HttpOptions options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on a background thread. Throws syncconfig::Error(kUnavailable)
  // naming the address if it cannot bind.
  void start();
  // The bound port (after start()).
  int port() const;
  // Stops accepting, finishes requests in flight, closes /watch streams, joins. Idempotent.
  void stop();
  // Reads tls_cert_file and tls_key_file again into a new TLS context that connections accepted
  // from now on use (a certificate rotation); open connections and /watch streams go on with the
  // one they began with. A file that cannot be used throws Error(kInvalidArgument) naming it (also
  // logged) and the server keeps the previous certificate. kInvalidArgument without TLS. Safe
  // from any thread, also before start().
  void reload_tls();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace syncconfig::service
