// HttpServer: the HTTP API of `syncconfig serve` over one or more stores (see README "HTTP API").
//
// Owns its listener thread (cpp-httplib's worker pool): stop() stops accepting, lets requests in
// flight finish, and joins. Safe for concurrent access from multiple threads without external
// synchronization.
//
// Routes (JSON bodies; every error is {"error": "<what was wrong>"}). The settings and watch
// routes exist for the default (first) store and, for every store, under /stores/{name}:
//   GET    /settings[?prefix=P]  200 {key: value, ...}
//   GET    /settings/{key}       200 the value as JSON text; 404 absent
//   PUT    /settings/{key}       body: a JSON value. 200 {"key", "value" (as stored)}; 400 body not
//                                JSON (or nested deeper than 512) or bad key; 413 body over
//                                max_body_bytes; 503 database unavailable/timeout/shut down
//   DELETE /settings/{key}       200 {"key", "deleted": true}; 404 absent
//   GET    /watch[?prefix=P][&since=ID]  Server-Sent Events, see below
//   GET    /health               200 healthy / 503 degraded (a store has no live connection):
//                                {"status", "crc", "count", "connected", "revision" (of the
//                                default store), "stores": {name: {same fields}}}
//   GET    /metrics              Prometheus text format 0.0.4, series labelled store="name"
// Keys are the rest of the path after /settings/, percent-decoded once ('/' allowed). Unknown
// routes and stores get 404, other methods on a known route 405. With a token, every route
// (health and metrics included) needs "Authorization: Bearer <token>", else 401.
//
// /watch: `id: <seq>\nevent: change\ndata: {"key","value" (null if deleted),"deleted","revision"}`
// per change, where seq numbers a store's changes in delivery order (a run's first seq is its
// start time in microseconds, so ids from an earlier run are always older). A fresh stream starts
// with `event: ready` (`data: {"seq": N}`, id N: the position to resume from). Last-Event-ID (or
// ?since=) resumes after that id from the last `watch_history` changes; an id that is older,
// unknown or unparsable gets `event: reset` with `data: {"settings": {...}, "seq": N}` (the current
// snapshot, filtered by prefix), then changes after N. A stream that falls behind the history also
// gets a reset. Comment lines (": keepalive") every watch_keepalive. stop() ends open streams.
// ?since= that is not a number: 400. Over max_watch_streams open streams: 503.
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

namespace syncconfig::service {

struct HttpOptions {
  // Address to bind. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  // Port to bind; 0 picks a free one (see HttpServer::port()). Default 8080.
  int port = 8080;
  // When non-empty, every request must carry "Authorization: Bearer <token>" (else 401).
  std::string token;
  // Largest request body accepted; larger gets 413. Default 1 MiB.
  std::size_t max_body_bytes = 1u << 20;
  // Changes kept per store for resuming /watch streams. Default 10000.
  std::size_t watch_history = 10000;
  // Bound on the memory those changes take per store (keys plus JSON text); the oldest are
  // dropped first. A stream resuming from a dropped change gets an `event: reset`. Default 64 MiB.
  std::size_t watch_history_bytes = 64u << 20;
  // A /watch stream with nothing to send writes a comment line (": keepalive") this often, which
  // also detects clients that went away. Default 15 seconds.
  std::chrono::milliseconds watch_keepalive = std::chrono::seconds(15);
  // Worker threads, i.e. connections served at once (a keep-alive connection holds one while
  // open, a /watch stream holds one for its whole life). Default 16.
  std::size_t threads = 16;
  // Open /watch streams allowed at once, over all stores; one more gets 503. Must be less than
  // `threads` so that the other routes keep answering. Default 8.
  std::size_t max_watch_streams = 8;
  // Idle time after which a keep-alive connection is closed. stop() waits up to this long for
  // an idle keep-alive connection (httplib does not interrupt them). Default 1 second.
  std::chrono::seconds keep_alive_timeout = std::chrono::seconds(1);
  // Logger for the access log (debug level) and errors. Default (nullptr): spdlog's default.
  std::shared_ptr<spdlog::logger> logger;
};

// A store served under a name. The first one is also served at the unprefixed routes.
struct ServedStore {
  std::string name;
  Store* store;  // Not owned; must outlive the HttpServer.
};

class HttpServer {
 public:
  // Throws syncconfig::Error(kInvalidArgument) naming the problem for unusable options or stores
  // (no store, a null store, an empty or duplicate name, a name containing '/').
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

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace syncconfig::service
