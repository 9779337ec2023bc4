// Shared set-up of the HTTP tests: a server over one store on a fresh (or given) table, and a
// cpp-httplib client that talks to it independently of the server's own HTTP stack.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/http_server.h"
#include "test_support.h"

namespace syncconfig::testing {

// A client that sends paths exactly as written (no re-encoding of '%').
inline std::unique_ptr<httplib::Client> client_for(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_url_encode(false);
  c->set_read_timeout(10, 0);
  return c;
}

// A started server on a free port serving one store, "main", and a client. The store is on a
// fresh table named after `stem`, or on `table` when one is given (two servers sharing a table).
// Stopped when destroyed.
class Served {
 public:
  explicit Served(service::HttpOptions options = {}, const std::string& stem = "t_http",
                  const std::string& table = "")
      : table_(table.empty() ? unique_name(stem) : table),
        store_(Store::open(dsn(), test_options(table_))) {
    options.port = 0;
    server_ = std::make_unique<service::HttpServer>(
        std::vector<service::ServedStore>{{"main", store_.get()}}, std::move(options));
    server_->start();
    client_ = client_for(server_->port());
  }
  ~Served() { server_->stop(); }

  Store& store() { return *store_; }
  service::HttpServer& server() { return *server_; }
  httplib::Client& http() { return *client_; }
  int port() const { return server_->port(); }
  const std::string& table() const { return table_; }

 private:
  std::string table_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<service::HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace syncconfig::testing
