// TLS end to end, with a test CA made at test time by the openssl program: HttpServer over
// https (requests, /watch, certificate reload, limits), HttpClient and RemoteStore verifying it,
// and Stores on a PostgreSQL that has ssl=on, connected with sslmode=verify-full.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "http/http_client.h"
#include "http/http_server.h"
#include "test_support.h"
#include "tls_support.h"

namespace syncconfig {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::cluster;
using testing::copy_over;
using testing::dsn;
using testing::Leaf;
using testing::Pki;
using testing::test_options;
using testing::unique_name;
using testing::wait_until;

// --- HTTP over TLS ------------------------------------------------------------------------------

class TlsHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_a_ = pki_.ca("ca_a");
    ca_b_ = pki_.ca("ca_b");
    Leaf a = pki_.leaf("ca_a", "server_a", "DNS:localhost,IP:127.0.0.1", 1);
    Leaf b = pki_.leaf("ca_b", "server_b", "DNS:localhost,IP:127.0.0.1", 2);
    a_ = a;
    b_ = b;
    // The server reads these paths; a rotation copies another certificate over them.
    cert_ = (pki_.dir() / "served.pem").string();
    key_ = (pki_.dir() / "served.key").string();
    copy_over(a.cert, cert_);
    copy_over(a.key, key_);
    store_ = Store::open(dsn(), test_options(unique_name("t_tls_http")));
  }

  void start(service::HttpOptions o = {}) {
    o.port = 0;
    o.tls_cert_file = cert_;
    o.tls_key_file = key_;
    server_ = std::make_unique<service::HttpServer>(
        std::vector<service::ServedStore>{{"default", store_.get()}}, o);
    server_->start();
  }

  std::string url(const std::string& host = "127.0.0.1") const {
    return "https://" + host + ":" + std::to_string(server_->port());
  }

  http::HttpClient client(const std::string& ca, const std::string& host = "127.0.0.1") {
    http::ClientOptions o;
    o.ca_file = ca;
    o.connect_timeout = 5s;
    o.request_timeout = 10s;
    return http::HttpClient(http::parse_url(url(host)), o);
  }

  // The message of the Error that a GET through `c` throws ("" if it does not).
  static std::string refusal(http::HttpClient& c) {
    try {
      c.request("GET", "/settings");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
      return e.what();
    }
    return "";
  }

  Pki pki_;
  std::string ca_a_, ca_b_, cert_, key_;
  Leaf a_, b_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<service::HttpServer> server_;
};

// Collects a watch()'s events on a thread of its own until stopped.
class Watcher {
 public:
  explicit Watcher(http::HttpClient& client) : client_(client) {
    thread_ = std::thread([this] {
      try {
        client_.watch("/watch", {}, [this](const http::SseEvent& e) {
          std::lock_guard lock(mu_);
          events_.push_back(e.type + ":" + e.data);
          return true;
        });
      } catch (const Error& e) {
        std::lock_guard lock(mu_);
        error_ = e.what();
      }
      ended_ = true;
    });
  }
  ~Watcher() {
    client_.stop();
    thread_.join();
  }
  bool saw(const std::string& text) {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) {
      if (e.find(text) != std::string::npos) return true;
    }
    return false;
  }
  bool ended() const { return ended_.load(); }
  std::string error() {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  http::HttpClient& client_;
  std::mutex mu_;
  std::vector<std::string> events_;
  std::string error_;
  std::atomic<bool> ended_{false};
  std::thread thread_;
};

TEST_F(TlsHttp, requests_and_watch_work_over_https_with_the_servers_ca) {
  start();
  auto watching = client(ca_a_);
  Watcher watcher(watching);
  ASSERT_TRUE(wait_until([&] { return watcher.saw("ready:"); })) << watcher.error();
  auto c = client(ca_a_);
  http::Response put = c.request("PUT", "/settings/tls.key", "42");
  EXPECT_EQ(put.status, 200) << put.body;
  http::Response get = c.request("GET", "/settings/tls.key");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, "42");
  EXPECT_TRUE(wait_until([&] { return watcher.saw("\"tls.key\""); })) << watcher.error();
  // By name too: the certificate holds DNS:localhost.
  auto by_name = client(ca_a_, "localhost");
  EXPECT_EQ(by_name.request("GET", "/settings/tls.key").body, "42");
}

TEST_F(TlsHttp, a_client_trusting_another_ca_is_refused_naming_the_url_and_the_reason) {
  start();
  auto c = client(ca_b_);
  const std::string message = refusal(c);
  EXPECT_NE(message.find(url()), std::string::npos) << message;
  EXPECT_NE(message.find("certificate verify failed: unable to get local issuer certificate"),
            std::string::npos)
      << message;
}

TEST_F(TlsHttp, a_certificate_for_another_name_is_refused) {
  Leaf other = pki_.leaf("ca_a", "other", "DNS:other.example", 3);
  copy_over(other.cert, cert_);
  copy_over(other.key, key_);
  start();
  auto by_address = client(ca_a_);
  std::string message = refusal(by_address);
  EXPECT_NE(message.find("certificate verify failed"), std::string::npos) << message;
  EXPECT_NE(message.find("mismatch"), std::string::npos) << message;
  auto by_name = client(ca_a_, "localhost");
  message = refusal(by_name);
  EXPECT_NE(message.find("hostname mismatch"), std::string::npos) << message;
}

TEST_F(TlsHttp, a_plain_http_client_on_the_tls_port_fails_and_the_server_stays_up) {
  start();
  http::ClientOptions o;
  o.request_timeout = 5s;
  http::HttpClient plain(http::parse_url("http://127.0.0.1:" + std::to_string(server_->port())), o);
  EXPECT_THROW(plain.request("GET", "/settings"), Error);
  auto c = client(ca_a_);
  EXPECT_EQ(c.request("GET", "/health").status, 200);
}

TEST_F(TlsHttp, an_https_client_on_a_plain_port_fails_with_a_clear_error) {
  service::HttpOptions o;
  o.port = 0;
  service::HttpServer plain({{"default", store_.get()}}, o);
  plain.start();
  http::ClientOptions co;
  co.ca_file = ca_a_;
  http::HttpClient c(http::parse_url("https://127.0.0.1:" + std::to_string(plain.port())), co);
  const std::string message = refusal(c);
  EXPECT_NE(message.find("TLS handshake with https://127.0.0.1:"), std::string::npos) << message;
}

TEST_F(TlsHttp, reload_swaps_the_certificate_for_new_connections_and_open_streams_go_on) {
  start();
  auto watching = client(ca_a_);
  Watcher watcher(watching);
  ASSERT_TRUE(wait_until([&] { return watcher.saw("ready:"); })) << watcher.error();

  copy_over(b_.cert, cert_);
  copy_over(b_.key, key_);
  server_->reload_tls();
  // New connections get the new certificate: only its CA is trusted now.
  auto new_ca = client(ca_b_);
  EXPECT_EQ(new_ca.request("PUT", "/settings/after.reload", "\"b\"").status, 200);
  auto old_ca = client(ca_a_);
  EXPECT_NE(refusal(old_ca).find("certificate verify failed"), std::string::npos);
  // The stream opened before the reload goes on.
  EXPECT_TRUE(wait_until([&] { return watcher.saw("\"after.reload\""); })) << watcher.error();
  EXPECT_FALSE(watcher.ended()) << watcher.error();
}

TEST_F(TlsHttp, a_reload_with_a_bad_key_file_keeps_serving_the_previous_certificate) {
  start();
  std::ofstream(key_, std::ios::trunc) << "not a key\n";
  try {
    server_->reload_tls();
    ADD_FAILURE() << "reload_tls() accepted a bad key file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(key_), std::string::npos) << e.what();
  }
  // A key of another certificate: refused too (it does not match).
  copy_over(b_.key, key_);
  EXPECT_THROW(server_->reload_tls(), Error);
  auto c = client(ca_a_);
  EXPECT_EQ(c.request("GET", "/health").status, 200);
}

TEST_F(TlsHttp, a_server_refuses_unusable_tls_files_naming_them) {
  service::HttpOptions o;
  o.tls_cert_file = (pki_.dir() / "missing.pem").string();
  o.tls_key_file = key_;
  try {
    service::HttpServer s({{"default", store_.get()}}, o);
    ADD_FAILURE() << "a missing certificate file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("missing.pem"), std::string::npos) << e.what();
  }
  o.tls_key_file.clear();
  EXPECT_THROW(service::HttpServer({{"default", store_.get()}}, o), Error);
}

// A raw TCP connection that never handshakes: closed by the server after header_timeout.
TEST_F(TlsHttp, a_client_that_never_handshakes_holds_a_connection_only_until_header_timeout) {
  service::HttpOptions o;
  o.header_timeout = 300ms;
  o.max_connections = 1;
  start(o);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // It counts against max_connections while it is open: another client is answered 503.
  auto c = client(ca_a_);
  EXPECT_EQ(c.request("GET", "/health").status, 503);
  // Then the server closes it: the read sees the end of the stream well before 10 s.
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char byte = 0;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  ::close(fd);
  EXPECT_TRUE(wait_until([&] { return c.request("GET", "/health").status == 200; }));
}

// After the handshake the usual deadlines hold: a new TLS connection that sends no request is
// closed after header_timeout (as a plain one is; idle_timeout applies between requests).
TEST_F(TlsHttp, an_idle_tls_connection_is_closed_after_header_timeout) {
  namespace asio = boost::asio;
  service::HttpOptions o;
  o.header_timeout = 300ms;
  start(o);
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(ca_a_);
  asio::ssl::stream<asio::ip::tcp::socket> tls(ioc, ctx);
  tls.set_verify_mode(asio::ssl::verify_peer);
  tls.next_layer().connect(
      {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(server_->port())});
  tls.handshake(asio::ssl::stream_base::client);
  timeval tv{10, 0};  // Bounds the read below if the server never closes.
  ::setsockopt(tls.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto started = std::chrono::steady_clock::now();
  char byte = 0;
  boost::system::error_code ec;
  EXPECT_EQ(tls.read_some(asio::buffer(&byte, 1), ec), 0u);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(TlsHttp, a_remote_store_follows_an_https_server_and_refuses_an_untrusted_one) {
  start();
  RemoteOptions o;
  o.ca_file = ca_a_;
  auto remote = RemoteStore::open({url()}, o);
  remote->set("remote.key", 7);
  EXPECT_EQ(remote->get("remote.key"), nlohmann::json(7));
  store_->set("from.store", "x");
  EXPECT_TRUE(wait_until([&] { return remote->get("from.store") == nlohmann::json("x"); }));
  remote->shutdown();

  RemoteOptions untrusting;
  untrusting.ca_file = ca_b_;
  untrusting.open_timeout = 500ms;
  try {
    RemoteStore::open({url()}, untrusting);
    ADD_FAILURE() << "a server whose certificate does not verify was followed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  untrusting.ca_file = (pki_.dir() / "no-such-ca.pem").string();
  try {
    RemoteStore::open({url()}, untrusting);
    ADD_FAILURE() << "a missing CA file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("no-such-ca.pem"), std::string::npos) << e.what();
  }
}

// --- PostgreSQL with ssl=on -------------------------------------------------------------------

// Turns TLS on in the test cluster (once per process), with a certificate for localhost and
// 127.0.0.1 signed by a CA of its own; returns that CA's file. The key belongs to the user the
// server runs as (postgres when the tests run as root), mode 0600, as PostgreSQL requires.
class TlsPostgres : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new Pki();
    ca_ = pki_->ca("pg_ca");
    other_ca_ = pki_->ca("pg_other_ca");
    Leaf leaf = pki_->leaf("pg_ca", "pg_server", "DNS:localhost,IP:127.0.0.1", 10);
    const fs::path data = cluster().data_dir();
    const std::string cert = (data / "server_test.crt").string();
    const std::string key = (data / "server_test.key").string();
    copy_over(leaf.cert, cert);
    copy_over(leaf.key, key);
    struct stat owner {};
    ASSERT_EQ(::stat(data.c_str(), &owner), 0);
    ASSERT_EQ(::chown(cert.c_str(), owner.st_uid, owner.st_gid), 0);
    ASSERT_EQ(::chown(key.c_str(), owner.st_uid, owner.st_gid), 0);
    ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
    testing::Sql admin(dsn());
    admin.exec("ALTER SYSTEM SET ssl_cert_file = '" + cert + "'");
    admin.exec("ALTER SYSTEM SET ssl_key_file = '" + key + "'");
    admin.exec("ALTER SYSTEM SET ssl = on");
    admin.exec("SELECT pg_reload_conf()");
    ASSERT_TRUE(wait_until([] {
      PGconn* c = PQconnectdb(tls_dsn(ca_).c_str());
      const bool ok = PQstatus(c) == CONNECTION_OK && PQsslInUse(c) == 1;
      PQfinish(c);
      return ok;
    })) << "the cluster never accepted a verify-full connection";
  }
  static void TearDownTestSuite() {
    testing::Sql admin(dsn());
    admin.exec("ALTER SYSTEM RESET ssl");
    admin.exec("ALTER SYSTEM RESET ssl_cert_file");
    admin.exec("ALTER SYSTEM RESET ssl_key_file");
    admin.exec("SELECT pg_reload_conf()");
    delete pki_;
  }

  static std::string tls_dsn(const std::string& ca, const std::string& host = "localhost",
                             const std::string& extra = "") {
    return "host=" + host + " port=" + std::to_string(cluster().port()) +
           " dbname=postgres user=postgres sslmode=verify-full sslrootcert=" + ca + " " + extra;
  }

  // The Error that Store::open(dsn) throws.
  static Error open_error(const std::string& dsn) {
    Options o = test_options(unique_name("t_tls_pg"));
    try {
      Store::open(dsn, o);
    } catch (const Error& e) {
      return e;
    }
    return Error(ErrorCode::kInternal, "Store::open succeeded");
  }

  static inline Pki* pki_ = nullptr;
  static inline std::string ca_;
  static inline std::string other_ca_;
};

TEST_F(TlsPostgres, stores_on_a_verify_full_connection_write_read_and_sync) {
  Options o = test_options(unique_name("t_tls_pg"));
  auto a = Store::open(tls_dsn(ca_), o);
  auto b = Store::open(tls_dsn(ca_), o);
  a->set("pg.tls", "on");
  EXPECT_EQ(a->get("pg.tls"), nlohmann::json("on"));
  EXPECT_TRUE(wait_until([&] { return b->get("pg.tls") == nlohmann::json("on"); }));
  b->set("pg.back", 2);
  EXPECT_TRUE(wait_until([&] { return a->get("pg.back") == nlohmann::json(2); }));
  // The stores' connections really are TLS (each store holds at least its listener's).
  testing::Sql check(dsn() + "?sslmode=disable");
  EXPECT_GE(std::stoi(check.scalar("SELECT count(*) FROM pg_stat_ssl WHERE ssl")), 2);
}

TEST_F(TlsPostgres, another_ca_is_refused_with_a_clear_error_and_no_password) {
  Error e = open_error(tls_dsn(other_ca_, "localhost", "password=hunter2tls"));
  EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
  EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find("hunter2tls"), std::string::npos) << e.what();
}

TEST_F(TlsPostgres, a_host_name_the_certificate_does_not_hold_is_refused) {
  Error e = open_error(tls_dsn(ca_, "not-in-the-cert.test", "hostaddr=127.0.0.1"));
  EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
  EXPECT_NE(std::string(e.what()).find("does not match host name"), std::string::npos) << e.what();
}

}  // namespace
}  // namespace syncconfig
