#include "http/watch_stream.h"

#include <fmt/format.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace syncconfig::service::detail {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using nlohmann::json;

namespace {

// Bytes of events a stream writes at once (a resumed stream catching up writes several).
constexpr std::size_t kStreamBatchBytes = 256u << 10;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json settings_object(const std::map<std::string, json>& all) {
  json out = json::object();
  for (const auto& [k, v] : all) out[k] = v;
  return out;
}

// Stream: one open /watch response. Lives on its connection's strand; the feed wakes it
// through a posted handler. Reads the feed's history by cursor and writes what matches its
// prefixes, one batch at a time, so it never holds more than one batch of its own. `S` is
// PlainStream (written through its socket, past the tcp_stream's timer: the ticks bound writes)
// or TlsStream (written through the TLS layer; the tcp_stream under it has no expiry set).
template <class S>
class Stream final : public WatchStream,
                     public StoreFeed::Waiter,
                     public std::enable_shared_from_this<Stream<S>> {
 public:
  using std::enable_shared_from_this<Stream<S>>::shared_from_this;

  Stream(StreamHost& server, S stream, StoreFeed& feed, std::vector<std::string> prefixes,
         std::optional<ResumePoint> since, std::shared_ptr<const WatchAccess> access)
      : server_(server),
        stream_(std::move(stream)),
        feed_(feed),
        prefixes_(std::move(prefixes)),
        since_(since),
        access_(std::move(access)) {}

  ~Stream() override {
    feed_.open_streams.fetch_sub(1);
    server_.remove(this);
  }

  // Sends the response head, then the opening event, then changes.
  void begin() {
    feed_.open_streams.fetch_add(1);
    server_.add(shared_from_this());
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "X-Accel-Buffering: no\r\n";
    if (access_ && access_->filtered) head += "X-Syncconfig-Filtered: true\r\n";
    head += "Transfer-Encoding: chunked\r\n\r\n";
    watch_for_close();
    write(std::move(head), [](Stream& self) { self.open(); });
  }

  // From the server's timers: a progress event or a keep-alive comment to a stream that sent
  // nothing since the last tick.
  void tick(bool progress) override {
    net::post(stream_.get_executor(), [self = shared_from_this(), progress] {
      if (self->access_ && self->access_->active && !self->access_->active()) {
        return self->shut();  // Its token was revoked.
      }
      if (self->writing_ && std::chrono::steady_clock::now() - self->write_started_ >
                                self->server_.options().watch_write_timeout) {
        return self->drop_slow("a write stalled for longer than watch_write_timeout");
      }
      if (self->closed_ || self->writing_ || !self->opened_) return;
      bool& wrote = progress ? self->wrote_since_progress_ : self->wrote_since_keepalive_;
      if (wrote) {
        wrote = false;
        return;
      }
      if (!progress) {
        self->write(chunk(": keepalive\n\n"), [](Stream& s) { s.pump(); });
        return;
      }
      // Move the cursor over what this stream's prefixes filtered out, then say where it is.
      if (self->pump()) return;  // It had changes to send instead.
      std::string event = sse_event(self->event_id(self->cursor_), "progress",
                                    dump(json{{"revision", self->cursor_}}));
      self->write(chunk(event), [](Stream& s) { s.pump(); });
    });
  }

  // Ends the stream (stop(), a slow client).
  void close() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->shut(); });
  }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  // What events are written to and the close probe reads from.
  auto& io() {
    if constexpr (std::is_same_v<S, TlsStream>) {
      return stream_;
    } else {
      return stream_.socket();
    }
  }

  bool matches(std::string_view key) const {
    if (access_ && access_->readable && !access_->readable(key)) return false;
    if (prefixes_.empty()) return true;
    for (const auto& p : prefixes_) {
      if (key.starts_with(p)) return true;
    }
    return false;
  }

  // A read on the socket only to learn that the client went away (it sends nothing on a
  // stream; anything it sends ends the stream).
  void watch_for_close() {
    io().async_read_some(net::buffer(probe_),
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                           // Aborted: whoever closed the socket (a write timeout, stop()) ends the
                           // stream.
                           if (ec != net::error::operation_aborted) self->shut();
                         });
  }

  // Writes `data`, then runs `next` (unless the write failed or the stream closed). No timer
  // per write (it costs more than the write): the keep-alive tick closes a stream whose write
  // has been pending longer than watch_write_timeout.
  void write(std::string data, void (*next)(Stream&)) {
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    wrote_since_progress_ = wrote_since_keepalive_ = true;
    out_ = std::move(data);
    net::async_write(io(), net::buffer(out_),
                     [self = shared_from_this(), next](beast::error_code ec, std::size_t) {
                       self->writing_ = false;
                       if (ec || self->closed_) return self->shut();
                       next(*self);
                     });
  }

  // The id of a ready/progress/reset event at `position`, anchored at this server's newest
  // change at or below it (or, resuming there, at the client's own verified anchor).
  std::string event_id(int64_t position) const {
    std::optional<ResumeAnchor> anchor = feed_.anchor_at(position);
    if (!anchor && since_ && since_->anchor && anchor_verified_ &&
        since_->anchor->revision <= position) {
      anchor = since_->anchor;
    }
    return format_event_id(position, anchor);
  }

  // Where the stream starts: now, after `since` from memory, or from the table.
  void open() {
    StoreFeed::Start start = feed_.start(waker());
    if (!start.ready) {
      parked_ = true;  // Woken when the feed is.
      return;
    }
    generation_ = start.generation;
    if (!since_) return send_ready(start.position);
    // First the anchor: does this server's history have the change the client saw last?
    if (since_->anchor && !anchor_verified_) {
      switch (feed_.check_anchor(*since_->anchor)) {
        case StoreFeed::AnchorCheck::kMatch:
          anchor_verified_ = true;
          break;
        case StoreFeed::AnchorCheck::kMismatch:
          return reset(StoreFeed::mismatch_reason(*since_->anchor), /*history_reset=*/true);
        case StoreFeed::AnchorCheck::kUnknown:
          server_.run_blocking([self = shared_from_this()] {
            std::optional<std::string> problem;
            bool diverged = true;
            try {
              problem = self->feed_.verify_anchor(*self->since_->anchor);
            } catch (const Error& e) {
              problem = e.what();
              diverged = false;
            }
            net::post(self->stream_.get_executor(), [self, problem, diverged] {
              if (self->closed_) return;
              if (problem) return self->reset(*problem, diverged);
              self->anchor_verified_ = true;
              self->open();
            });
          });
          return;
      }
    }
    const int64_t since = since_->revision;
    // Needs the table: a cursor older than the history, or ahead of this server (the client was
    // on a server that is further along, or this is a history the table does not have).
    if (since == start.position) return send_ready(since);  // Exactly here: nothing to check.
    if (since > start.position) {
      server_.run_blocking([self = shared_from_this(), since] {
        std::optional<std::string> problem;
        try {
          ChangesSince c = self->feed_.store().changes_since(since);
          if (!c.complete) problem = c.reason;
        } catch (const Error& e) {
          problem = e.what();
        }
        net::post(self->stream_.get_executor(), [self, since, problem] {
          if (problem) return self->reset(*problem);
          self->send_ready(since);
        });
      });
      return;
    }
    cursor_ = since;
    backfill_then([](Stream& s) { s.send_ready(s.cursor_); });
  }

  void send_ready(int64_t position) {
    cursor_ = position;
    opened_ = true;
    json data = {{"revision", position}};
    if (access_ && access_->filtered) data["filtered"] = true;
    std::string event = sse_event(event_id(position), "ready", dump(data));
    write(chunk(event), [](Stream& s) { s.pump(); });
  }

  // Makes the feed's history reach back to cursor_ (a table read on the blocking pool), then
  // runs `next`; resets the stream if the table cannot say what changed.
  void backfill_then(void (*next)(Stream&)) {
    server_.run_blocking([self = shared_from_this(), next] {
      StoreFeed::Backfill b;
      try {
        b = self->feed_.backfill(self->cursor_);
      } catch (const Error& e) {
        b.reset = e.what();
      }
      net::post(self->stream_.get_executor(), [self, next, b = std::move(b)]() mutable {
        if (self->closed_) return;
        if (b.reset) return self->reset(*b.reset);
        // Too many for the shared history: pump() writes them first, then reads on from there.
        self->direct_ = std::move(b.direct);
        self->direct_cursor_ = b.cursor;
        next(*self);
      });
    });
  }

  // Writes the next batch of a backfill handed to this stream alone. Returns whether it wrote.
  bool write_direct() {
    while (!direct_.empty()) {
      std::size_t i = 0, bytes = 0;
      batch_.clear();
      for (; i < direct_.size() && bytes < kStreamBatchBytes; ++i) {
        if (!matches(direct_[i]->key)) continue;
        bytes += direct_[i]->chunk.size();
        batch_.push_back(direct_[i]);
      }
      direct_.erase(direct_.begin(), direct_.begin() + static_cast<std::ptrdiff_t>(i));
      if (direct_.empty()) {
        direct_.shrink_to_fit();
        cursor_ = direct_cursor_;
      }
      if (!batch_.empty()) {
        write_batch();
        return true;
      }
    }
    return false;
  }

  // Writes the events in batch_ (their shared chunks, no copy), then pumps.
  void write_batch() {
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    wrote_since_progress_ = wrote_since_keepalive_ = true;
    buffers_.clear();
    for (const auto& e : batch_) buffers_.push_back(net::buffer(e->chunk));
    net::async_write(io(), buffers_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->writing_ = false;
                       self->batch_.clear();
                       if (ec || self->closed_) return self->shut();
                       self->pump();
                     });
  }

  // Sends the current settings (filtered) and continues after the feed position they hold.
  // `history_reset`: the store's history started over (a recreated table, a failover that lost
  // commits), so revisions a client holds from before name nothing now.
  void reset(std::string reason, bool history_reset = false) {
    if (closed_) return;
    server_.run_blocking([self = shared_from_this(), reason = std::move(reason), history_reset] {
      json settings = json::object();
      StoreFeed::ResetPoint point;
      if (self->prefixes_.size() == 1) {
        point = self->feed_.reset_point(self->prefixes_.front());
      } else {
        point = self->feed_.reset_point({});
        std::erase_if(point.settings, [&](const auto& kv) { return !self->matches(kv.first); });
      }
      self->feed_.resets_sent.fetch_add(1);
      if (self->access_ && self->access_->readable) {
        std::erase_if(point.settings, [&](const auto& kv) { return !self->matches(kv.first); });
      }
      json data = {{"revision", point.position},
                   {"newest", point.newest},
                   {"reason", reason},
                   {"history_reset", history_reset},
                   {"settings", settings_object(point.settings)}};
      if (self->access_ && self->access_->filtered) data["filtered"] = true;
      std::string event =
          sse_event(format_event_id(point.position, self->feed_.anchor_at(point.position)), "reset",
                    dump(data));
      net::post(self->stream_.get_executor(), [self, point, event = std::move(event)] {
        if (self->closed_) return;
        self->cursor_ = point.position;
        self->generation_ = point.generation;
        self->opened_ = true;
        self->caught_up_ = false;
        self->write(chunk(event), [](Stream& s) { s.pump(); });
      });
    });
  }

  // The feed has something to read (see StoreFeed::read).
  void wake() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->parked_ = false;
      if (!self->opened_) {
        if (!self->closed_ && !self->writing_) self->open();
        return;
      }
      self->pump();
    });
  }
  StoreFeed::Waker waker() { return shared_from_this(); }

  // Sends what the feed has after the cursor. Returns whether it started a write.
  bool pump() {
    if (closed_ || writing_ || !opened_) return false;
    if (write_direct()) return true;
    for (;;) {
      const bool may_park = !parked_;  // One waker at a time.
      StoreFeed::Read r =
          feed_.read(cursor_, generation_, kStreamBatchBytes, may_park ? waker() : nullptr, batch_);
      const bool parked = r.status == StoreFeed::Read::Status::kNotReady ||
                          (r.status == StoreFeed::Read::Status::kOk && batch_.empty());
      if (parked && may_park) parked_ = true;
      switch (r.status) {
        case StoreFeed::Read::Status::kClosed:
          shut();
          return false;
        case StoreFeed::Read::Status::kNotReady:
          return false;
        case StoreFeed::Read::Status::kReset:
          if (r.history_reset) {
            reset(
                "the store's history started over (the table was recreated, or after a failover "
                "the database lacked changes this server had seen)",
                /*history_reset=*/true);
          } else {
            reset(
                "the table was reloaded (a change was repaired that no notification "
                "announced)");
          }
          return true;
        case StoreFeed::Read::Status::kBehind:
          if (caught_up_) {
            drop_slow("it fell behind the history the server keeps");
          } else {
            backfill_then([](Stream& s) { s.pump(); });
          }
          return true;
        case StoreFeed::Read::Status::kOk:
          break;
      }
      if (batch_.empty()) {
        caught_up_ = true;
        return false;  // Parked.
      }
      if (caught_up_ &&
          static_cast<std::size_t>(r.lag_bytes) > server_.options().watch_max_lag_bytes) {
        drop_slow("it fell more than watch_max_lag_bytes behind");
        return true;
      }
      cursor_ = r.cursor;
      if (r.lag_bytes == 0) caught_up_ = true;
      if (!prefixes_.empty() || access_) {
        std::erase_if(batch_, [&](const detail::WatchEventPtr& e) { return !matches(e->key); });
      }
      if (!batch_.empty()) {
        write_batch();
        return true;
      }
    }
  }

  void drop_slow(std::string_view why) {
    if (dropped_) return;
    dropped_ = true;
    feed_.streams_dropped_slow.fetch_add(1);
    beast::error_code ec;
    auto endpoint = lowest().socket().remote_endpoint(ec);
    server_.log().warn("http: closing /watch stream of {} on store '{}' at revision {}: {}",
                       ec ? std::string("?")
                          : endpoint.address().to_string() + ":" + std::to_string(endpoint.port()),
                       feed_.name(), cursor_, why);
    shut();
  }

  void shut() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

  StreamHost& server_;
  S stream_;
  StoreFeed& feed_;
  const std::vector<std::string> prefixes_;
  const std::optional<ResumePoint> since_;
  bool anchor_verified_ = false;  // since_'s anchor names a change of this server's history.
  const std::shared_ptr<const WatchAccess> access_;  // nullptr: no access control.
  int64_t cursor_ = 0;
  uint64_t generation_ = 0;
  bool opened_ = false;     // The opening event was decided; changes flow.
  bool caught_up_ = false;  // It has read everything at least once (then lag counts).
  bool parked_ = false;     // A waker is registered with the feed.
  bool writing_ = false;
  bool closed_ = false;
  bool dropped_ = false;  // Closed as too slow (counted once).
  bool wrote_since_progress_ = false;
  bool wrote_since_keepalive_ = false;
  std::string out_;
  std::chrono::steady_clock::time_point write_started_;
  std::array<char, 1> probe_{};
  std::vector<detail::WatchEventPtr> batch_;   // Being written (or just read).
  std::vector<net::const_buffer> buffers_;     // Their chunks, for the gather write.
  std::vector<detail::WatchEventPtr> direct_;  // A backfill too large for the history.
  int64_t direct_cursor_ = 0;                  // Where the history goes on after it.
};

}  // namespace

template <class S>
void open_watch_stream(StreamHost& host, S stream, StoreFeed& feed,
                       std::vector<std::string> prefixes, std::optional<ResumePoint> since,
                       std::shared_ptr<const WatchAccess> access) {
  auto s = std::make_shared<Stream<S>>(host, std::move(stream), feed, std::move(prefixes), since,
                                       std::move(access));
  s->begin();
}

template void open_watch_stream<PlainStream>(StreamHost&, PlainStream, StoreFeed&,
                                             std::vector<std::string>, std::optional<ResumePoint>,
                                             std::shared_ptr<const WatchAccess>);
template void open_watch_stream<TlsStream>(StreamHost&, TlsStream, StoreFeed&,
                                           std::vector<std::string>, std::optional<ResumePoint>,
                                           std::shared_ptr<const WatchAccess>);

}  // namespace syncconfig::service::detail
