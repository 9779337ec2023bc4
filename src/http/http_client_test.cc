// HttpClient, its URL parser and its SSE parser. The client talks to a scripted peer over a real
// loopback socket: the peer writes exactly the bytes a test gives it (chunks split mid-line,
// silences, a connection cut mid-event), which a real server would not do on demand.
#include "http/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/buffers_iterator.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/sse_parser.h"
#include "http/url.h"
#include "syncconfig/error.h"

namespace syncconfig::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- URLs -----------------------------------------------------------------------------------

TEST(Url, parses_host_port_and_base_path) {
  Url u = parse_url("http://127.0.0.1:8080");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.base_path, "");
  EXPECT_EQ(u.to_string(), "http://127.0.0.1:8080");

  u = parse_url("HTTP://config.internal/syncconfig/");
  EXPECT_EQ(u.host, "config.internal");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.base_path, "/syncconfig");
  EXPECT_EQ(u.to_string(), "http://config.internal:80/syncconfig");

  u = parse_url("http://[::1]:9000/a%20b");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.base_path, "/a%20b");
  EXPECT_EQ(u.host_and_port(), "[::1]:9000");
  EXPECT_EQ(u.to_string(), "http://[::1]:9000/a%20b");
}

TEST(Url, parses_https_with_port_443_by_default) {
  Url u = parse_url("HTTPS://config.internal/base");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.host, "config.internal");
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.to_string(), "https://config.internal:443/base");
  EXPECT_FALSE(parse_url("http://h").tls);
  EXPECT_EQ(parse_url("http://h").port, 80);
}

// The message of the Error that parse_url(text) throws, or "" if it does not throw.
std::string url_error(const std::string& text) {
  try {
    parse_url(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(Url, refuses_what_it_cannot_serve_saying_why) {
  EXPECT_NE(url_error("127.0.0.1:8080").find("expected http://"), std::string::npos);
  EXPECT_NE(url_error("ftp://host").find("expected http://"), std::string::npos);
  EXPECT_NE(url_error("http://").find("no host"), std::string::npos);
  EXPECT_NE(url_error("http://:80").find("no host"), std::string::npos);
  EXPECT_NE(url_error("http://::1:80").find("needs brackets"), std::string::npos);
  EXPECT_NE(url_error("http://[::1").find("without ']'"), std::string::npos);
  EXPECT_NE(url_error("http://[zz]:1").find("IPv6"), std::string::npos);
  EXPECT_NE(url_error("http://h:0").find("1 to 65535"), std::string::npos);
  EXPECT_NE(url_error("http://h:65536").find("1 to 65535"), std::string::npos);
  EXPECT_NE(url_error("http://h:12x").find("1 to 65535"), std::string::npos);
  EXPECT_NE(url_error("http://h:").find("empty port"), std::string::npos);
  EXPECT_NE(url_error("http://h/a b").find("spaces"), std::string::npos);
  EXPECT_NE(url_error("http://h/%zz").find("%XX"), std::string::npos);
  EXPECT_NE(url_error("http://h/x?token=abc").find("query"), std::string::npos);
  EXPECT_NE(url_error("http://h_x y").find("host"), std::string::npos);
}

TEST(Url, never_echoes_a_url_that_may_hold_a_secret) {
  std::string message = url_error("http://admin:hunter2pw@host:80");
  EXPECT_NE(message.find("credentials in the URL are not supported"), std::string::npos);
  EXPECT_EQ(message.find("hunter2pw"), std::string::npos) << message;
  message = url_error("http://host/?token=s3cret");
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
  // A harmless one is quoted, so that the user sees which text was meant.
  EXPECT_NE(url_error("http://h:0").find("\"http://h:0\""), std::string::npos);
}

TEST(PercentEncode, keeps_unreserved_bytes_and_encodes_everything_else_slash_included) {
  EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode("rate_limit:/api/search"), "rate_limit%3A%2Fapi%2Fsearch");
  EXPECT_EQ(percent_encode("a b%c?d#e&f=g+h"), "a%20b%25c%3Fd%23e%26f%3Dg%2Bh");
  EXPECT_EQ(percent_encode("\xC3\xA9\x01\xFF"), "%C3%A9%01%FF");
  EXPECT_EQ(percent_encode(""), "");
}

// ---- SSE parsing ----------------------------------------------------------------------------

std::vector<SseEvent> parse_all(const std::vector<std::string>& pieces) {
  SseParser parser;
  std::vector<SseEvent> out;
  for (const std::string& p : pieces) {
    parser.feed(p, [&](const SseEvent& e) {
      out.push_back(e);
      return true;
    });
  }
  return out;
}

TEST(SseParser, reads_id_event_and_multi_line_data_and_skips_comments) {
  auto events =
      parse_all({": keepalive\n\n"
                 "id: 7\nevent: change\ndata: {\"a\":\ndata:1}\n\n"
                 "data: plain\n\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, "change");
  EXPECT_EQ(events[0].data, "{\"a\":\n1}");
  EXPECT_EQ(events[0].id, "7");
  EXPECT_EQ(events[1].type, "message");
  EXPECT_EQ(events[1].data, "plain");
  EXPECT_EQ(events[1].id, "7");  // The last event ID persists.
}

TEST(SseParser, gives_the_same_events_however_the_bytes_are_split) {
  const std::string stream =
      "\xEF\xBB\xBFid: 1\r\nevent: a\r\ndata: x\r\n\r\n"
      "id: 2\revent: b\rdata: y\r\r"
      "id: 3\nevent: c\ndata\ndata:  z\n\n";
  const std::vector<SseEvent> whole = parse_all({stream});
  ASSERT_EQ(whole.size(), 3u);
  EXPECT_EQ(whole[0].type, "a");
  EXPECT_EQ(whole[1].type, "b");
  EXPECT_EQ(whole[1].data, "y");
  EXPECT_EQ(whole[2].data, "\n z");  // "data" alone is an empty line; one space is stripped.
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    for (std::size_t cut2 = cut; cut2 < stream.size(); cut2 += 7) {
      auto split =
          parse_all({stream.substr(0, cut), stream.substr(cut, cut2 - cut), stream.substr(cut2)});
      ASSERT_EQ(split.size(), whole.size()) << "cuts at " << cut << ", " << cut2;
      for (std::size_t i = 0; i < whole.size(); ++i) {
        EXPECT_EQ(split[i].type, whole[i].type);
        EXPECT_EQ(split[i].data, whole[i].data);
        EXPECT_EQ(split[i].id, whole[i].id);
      }
    }
  }
}

TEST(SseParser, an_event_without_data_is_not_dispatched_but_its_id_counts) {
  SseParser parser;
  int calls = 0;
  parser.feed("id: 41\nevent: x\n\nretry: 2500\nretry: 1x\n\n", [&](const SseEvent&) {
    ++calls;
    return true;
  });
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(parser.last_event_id(), "41");
  EXPECT_EQ(parser.retry(), std::chrono::milliseconds(2500));
  std::string type;
  parser.feed("data: d\n\n", [&](const SseEvent& e) {
    type = e.type;  // The type of the undispatched event does not leak into this one.
    return true;
  });
  EXPECT_EQ(type, "message");
}

TEST(SseParser, stops_when_the_handler_says_so) {
  SseParser parser;
  int calls = 0;
  bool more = parser.feed("data: 1\n\ndata: 2\n\n", [&](const SseEvent&) {
    ++calls;
    return false;
  });
  EXPECT_FALSE(more);
  EXPECT_EQ(calls, 1);
}

TEST(SseParser, refuses_an_event_larger_than_its_limit) {
  SseParser parser(100);
  auto ignore = [](const SseEvent&) { return true; };
  EXPECT_TRUE(parser.feed("data: " + std::string(50, 'x') + "\n", ignore));
  try {
    parser.feed("data: " + std::string(60, 'y'), ignore);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("larger than 100 bytes"), std::string::npos);
  }
}

// ---- The client against a scripted peer -----------------------------------------------------

// Accepts one connection on 127.0.0.1, reads one request (header and Content-Length body), then
// runs `script` on the socket, on its own thread (joined by the destructor).
class ScriptedPeer {
 public:
  using Script = std::function<void(tcp::socket&)>;
  explicit ScriptedPeer(Script script)
      : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, script = std::move(script)] {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || closing_.load()) return;
      std::string text = read_request(socket);
      {
        std::lock_guard lock(mu_);
        request_ = text;
      }
      script(socket);
    });
  }
  ~ScriptedPeer() {
    closing_ = true;
    // Unblocks an accept that no client came to.
    boost::system::error_code ec;
    tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }

  Url url() const { return parse_url("http://127.0.0.1:" + std::to_string(port_) + "/base"); }
  std::string request() const {
    std::lock_guard lock(mu_);
    return request_;
  }

  static void send(tcp::socket& s, const std::string& bytes) {
    boost::system::error_code ec;
    asio::write(s, asio::buffer(bytes), ec);
  }
  // Waits until the client closes the connection (or 20 s pass).
  static void wait_for_close(tcp::socket& s) {
    pollfd p{s.native_handle(), POLLIN, 0};
    char c;
    for (auto end = Clock::now() + 20s; Clock::now() < end;) {
      if (::poll(&p, 1, 50) > 0 && ::recv(s.native_handle(), &c, 1, 0) <= 0) return;
    }
  }

 private:
  static std::string read_request(tcp::socket& s) {
    asio::streambuf buffer;
    boost::system::error_code ec;
    asio::read_until(s, buffer, "\r\n\r\n", ec);
    std::string text(asio::buffers_begin(buffer.data()), asio::buffers_end(buffer.data()));
    const std::size_t header_end = text.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    if (auto at = text.find("Content-Length: "); at != std::string::npos) {
      length = std::stoul(text.substr(at + 16));
    }
    if (text.size() < header_end + length) {
      std::string rest(header_end + length - text.size(), '\0');
      asio::read(s, asio::buffer(rest), ec);
      text += rest;
    }
    return text;
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> closing_{false};
  mutable std::mutex mu_;
  std::string request_;
  std::thread thread_;
};

const std::string kStreamHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", data.size());
  return std::string(size) + "\r\n" + data + "\r\n";
}

// A connection to a local port nobody listens on can pick that port as its own and reach itself
// (TCP simultaneous open): made here on purpose, it must be told apart from a real connection.
TEST(HttpClient, a_connection_that_reached_its_own_port_is_told_apart_from_a_real_one) {
  auto loopback = [](uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  };
  auto bound_port = [](int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    return ntohs(a.sin_port);
  };
  const int self = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(self, 0);
  sockaddr_in any = loopback(0);
  ASSERT_EQ(::bind(self, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  sockaddr_in own = loopback(bound_port(self));
  ASSERT_EQ(::connect(self, reinterpret_cast<sockaddr*>(&own), sizeof own), 0) << errno;
  EXPECT_TRUE(detail::connected_to_itself(self));
  ::close(self);

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in server = loopback(bound_port(listener));
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&server), sizeof server), 0) << errno;
  EXPECT_FALSE(detail::connected_to_itself(client));
  EXPECT_FALSE(detail::connected_to_itself(listener));  // Not connected at all.
  ::close(client);
  ::close(listener);
}

TEST(HttpClient, request_sends_method_target_token_and_body_and_returns_the_answer) {
  ScriptedPeer peer([](tcp::socket& s) {
    ScriptedPeer::send(s,
                       "HTTP/1.1 201 Created\r\nX-Syncconfig-Revision: 12\r\nContent-Length: 7\r\n"
                       "\r\n{\"a\":1}");
  });
  ClientOptions options;
  options.token = "s3cret";
  HttpClient client(peer.url(), options);
  Response r =
      client.request("PUT", "/settings/" + percent_encode("a/b"), "[1,2]", {{"X-Extra", "yes"}});
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "{\"a\":1}");
  EXPECT_EQ(r.header("x-syncconfig-revision"), std::optional<std::string>("12"));
  EXPECT_EQ(r.header("X-Missing"), std::nullopt);
  const std::string sent = peer.request();
  EXPECT_EQ(sent.rfind("PUT /base/settings/a%2Fb HTTP/1.1\r\n", 0), 0u) << sent;
  EXPECT_NE(sent.find("Host: 127.0.0.1:"), std::string::npos) << sent;
  EXPECT_NE(sent.find("Authorization: Bearer s3cret\r\n"), std::string::npos) << sent;
  EXPECT_NE(sent.find("Content-Type: application/json\r\n"), std::string::npos) << sent;
  EXPECT_NE(sent.find("X-Extra: yes\r\n"), std::string::npos) << sent;
  EXPECT_EQ(sent.substr(sent.size() - 5), "[1,2]") << sent;
}

TEST(HttpClient, refuses_a_request_that_could_split_into_two) {
  HttpClient client(parse_url("http://127.0.0.1:1"));
  auto code = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code([&] { client.request("GET", "/a\r\nX: y"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code([&] { client.request("GET", "no-slash"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code([&] { client.request("BREW", "/"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code([&] {
              client.request("GET", "/", "", {{"A", "b\r\nC: d"}});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(HttpClient, watch_decodes_a_chunked_event_stream_split_mid_line) {
  const std::string events =
      ": keepalive\n\nid: 5\nevent: ready\ndata: {\"revision\":5}\n\n"
      "id: 6\nevent: change\ndata: {\"key\":\"k\",\"value\":1}\n\n";
  ScriptedPeer peer([&](tcp::socket& s) {
    ScriptedPeer::send(s, kStreamHead);
    // Chunks of 3 bytes, each written on its own, so that lines, CRLFs and chunk headers
    // arrive split.
    for (std::size_t i = 0; i < events.size(); i += 3) {
      ScriptedPeer::send(s, chunk(events.substr(i, 3)));
      std::this_thread::sleep_for(1ms);
    }
    ScriptedPeer::send(s, "0\r\n\r\n");
  });
  HttpClient client(peer.url());
  std::vector<SseEvent> got;
  WatchResult result =
      client.watch("/watch?prefix=a%2F", {{"Last-Event-ID", "4"}}, [&](const SseEvent& e) {
        got.push_back(e);
        return true;
      });
  EXPECT_EQ(result.end, WatchResult::End::kServerClosed);
  EXPECT_EQ(result.response.status, 200);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, "ready");
  EXPECT_EQ(got[0].id, "5");
  EXPECT_EQ(got[1].type, "change");
  EXPECT_EQ(got[1].data, "{\"key\":\"k\",\"value\":1}");
  EXPECT_EQ(got[1].id, "6");
  const std::string sent = peer.request();
  EXPECT_EQ(sent.rfind("GET /base/watch?prefix=a%2F HTTP/1.1\r\n", 0), 0u) << sent;
  EXPECT_NE(sent.find("Last-Event-ID: 4\r\n"), std::string::npos) << sent;
  EXPECT_NE(sent.find("Accept: text/event-stream\r\n"), std::string::npos) << sent;
}

TEST(HttpClient, watch_returns_a_refusal_with_its_body) {
  ScriptedPeer peer([](tcp::socket& s) {
    ScriptedPeer::send(s,
                       "HTTP/1.1 401 Unauthorized\r\nContent-Length: 26\r\n\r\n"
                       "{\"error\": \"unauthorized\"}\n");
  });
  HttpClient client(peer.url());
  WatchResult result = client.watch("/watch", {}, [](const SseEvent&) { return true; });
  EXPECT_EQ(result.end, WatchResult::End::kRefused);
  EXPECT_EQ(result.response.status, 401);
  EXPECT_EQ(result.response.body, "{\"error\": \"unauthorized\"}\n");
}

TEST(HttpClient, a_stream_cut_mid_event_is_unavailable) {
  ScriptedPeer peer([](tcp::socket& s) {
    ScriptedPeer::send(s, kStreamHead + chunk("data: 1\n\n") + chunk("data: par"));
    s.close();
  });
  HttpClient client(peer.url());
  int events = 0;
  try {
    client.watch("/watch", {}, [&](const SseEvent&) {
      ++events;
      return true;
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("broke"), std::string::npos) << e.what();
  }
  EXPECT_EQ(events, 1);
}

TEST(HttpClient, stop_from_another_thread_ends_a_silent_watch_promptly_and_for_good) {
  ScriptedPeer peer([](tcp::socket& s) {
    ScriptedPeer::send(s, kStreamHead + chunk("data: hello\n\n"));
    ScriptedPeer::wait_for_close(s);
  });
  HttpClient client(peer.url());
  std::atomic<bool> got_event{false};
  auto watching = std::async(std::launch::async, [&] {
    return client.watch("/watch", {}, [&](const SseEvent&) {
      got_event = true;
      return true;
    });
  });
  for (auto end = Clock::now() + 10s; !got_event && Clock::now() < end;) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(got_event);
  const Clock::time_point asked = Clock::now();
  client.stop();
  ASSERT_EQ(watching.wait_for(2s), std::future_status::ready);
  EXPECT_LT(Clock::now() - asked, 500ms);
  EXPECT_EQ(watching.get().end, WatchResult::End::kStopped);

  try {
    client.request("GET", "/health");
    FAIL() << "no error after stop()";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShutdown);
  }
  EXPECT_EQ(client.watch("/watch", {}, [](const SseEvent&) { return true; }).end,
            WatchResult::End::kStopped);
}

TEST(HttpClient, a_server_that_never_answers_hits_the_request_deadline) {
  ScriptedPeer peer([](tcp::socket& s) { ScriptedPeer::wait_for_close(s); });
  ClientOptions options;
  options.request_timeout = 300ms;
  HttpClient client(peer.url(), options);
  const Clock::time_point start = Clock::now();
  try {
    client.request("GET", "/settings");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(e.what()).find("within 300 ms"), std::string::npos) << e.what();
  }
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(HttpClient, a_silent_event_stream_counts_as_broken_after_the_idle_timeout) {
  ScriptedPeer peer([](tcp::socket& s) {
    ScriptedPeer::send(s, kStreamHead);
    ScriptedPeer::wait_for_close(s);
  });
  ClientOptions options;
  options.watch_idle_timeout = 300ms;
  HttpClient client(peer.url(), options);
  try {
    client.watch("/watch", {}, [](const SseEvent&) { return true; });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(e.what()).find("sent nothing for 300 ms"), std::string::npos) << e.what();
  }
}

TEST(HttpClient, a_port_nobody_listens_on_is_unavailable_naming_the_url) {
  int port = 0;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  HttpClient client(parse_url("http://127.0.0.1:" + std::to_string(port)));
  try {
    client.request("GET", "/health");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(
        std::string(e.what()).find("cannot connect to http://127.0.0.1:" + std::to_string(port)),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace syncconfig::http
