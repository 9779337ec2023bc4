// WatchStream: one open /watch response (see http_server.h for what it sends). It lives on its
// connection's strand; its feed wakes it with a posted handler when there is something after its
// cursor. It reads the feed's history by cursor and writes what matches its prefixes, one batch
// at a time (the feed's shared chunks, no copy), so it never holds more than one batch of its
// own: about 1.5 KB per idle stream in all.
#pragma once

#include <spdlog/logger.h>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/http_server.h"
#include "http/request.h"
#include "http/store_feed.h"

namespace syncconfig::service::detail {

class WatchStream;

// The two kinds of connection the server has: plain TCP, and TLS over TCP (HttpOptions::
// tls_cert_file). The timeouts are on the lowest layer, the tcp_stream.
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

// What a stream needs from the server that owns it.
class StreamHost {
 public:
  virtual ~StreamHost() = default;
  virtual const HttpOptions& options() const = 0;
  virtual spdlog::logger& log() = 0;
  // Runs `work` on the server's pool for work that waits on the database.
  virtual void run_blocking(std::function<void()> work) = 0;
  // The server's registry of open streams (its ticks and stop() reach them through it).
  virtual void add(const std::shared_ptr<WatchStream>& stream) = 0;
  virtual void remove(WatchStream* stream) = 0;
};

class WatchStream {
 public:
  virtual ~WatchStream() = default;
  // From the server's timers: a progress event (or a ": keepalive" comment) to a stream that sent
  // nothing since the last tick; a write pending longer than watch_write_timeout closes it.
  virtual void tick(bool progress) = 0;
  // Ends the stream (stop()).
  virtual void close() = 0;
};

// Access control of one stream (named tokens): which keys it may send, and whether its token is
// still active (checked at every tick: a revoked token's stream is closed).
struct WatchAccess {
  std::function<bool(std::string_view key)> readable;
  std::function<bool()> active;
  bool filtered = false;  // Announced: header X-Syncconfig-Filtered and "filtered" in ready/reset.
};

// Takes over `stream` (a request for /watch was just read from it): sends the response head,
// then the opening event (ready, or a reset), then changes. `since`: the resume point
// (Last-Event-ID or ?since=), if any; its anchor, when it has one, is checked against this
// server's history or the change log first (a mismatch is a reset with history_reset). The stream
// registers itself with `host`. For PlainStream and TlsStream (a TLS stream's handshake is done).
// `access`: the caller's read rules under
// --auth (null: every key).
template <class Stream>
void open_watch_stream(StreamHost& host, Stream stream, StoreFeed& feed,
                       std::vector<std::string> prefixes, std::optional<ResumePoint> since,
                       std::shared_ptr<const WatchAccess> access = nullptr);
extern template void open_watch_stream<PlainStream>(StreamHost&, PlainStream, StoreFeed&,
                                                    std::vector<std::string>,
                                                    std::optional<ResumePoint>,
                                                    std::shared_ptr<const WatchAccess>);
extern template void open_watch_stream<TlsStream>(StreamHost&, TlsStream, StoreFeed&,
                                                  std::vector<std::string>,
                                                  std::optional<ResumePoint>,
                                                  std::shared_ptr<const WatchAccess>);

}  // namespace syncconfig::service::detail
