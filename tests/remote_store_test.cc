// RemoteStore (include/syncconfig/remote_store.h) against real servers (HttpServer over Stores on
// a real PostgreSQL, in this process) and real sockets: the same API and semantics as Store,
// failover between servers, a relay (a server over a RemoteStore), and the snapshot file of both
// kinds of store.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/http_client.h"
#include "http/http_server.h"
#include "test_support.h"

namespace syncconfig::testing {
namespace {

using nlohmann::json;
using service::HttpOptions;
using service::HttpServer;
using service::ServedStore;
using namespace std::chrono_literals;

// A server on a free port over `store` (not owned).
std::unique_ptr<HttpServer> serve(Config& store, int port = 0) {
  HttpOptions options;
  options.port = port;
  auto server = std::make_unique<HttpServer>(std::vector<ServedStore>{{"main", &store}}, options);
  server->start();
  return server;
}

std::string url_of(const HttpServer& server) {
  return "http://127.0.0.1:" + std::to_string(server.port());
}

RemoteOptions quick_options() {
  RemoteOptions o;
  o.open_timeout = 3s;
  o.retry_interval = 50ms;
  o.connect_timeout = 1s;
  o.request_timeout = 5s;
  return o;
}

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "syncconfig-remote-XXXXXX");
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Per key, the revisions a subscriber saw, in order.
class RevisionLog {
 public:
  Callback callback() {
    return [this](const Change& c) {
      std::lock_guard lock(mu_);
      per_key_[c.key].push_back(c.revision);
      last_[c.key] = c.value;
    };
  }
  // Whether every key's revisions strictly increase.
  bool strictly_increasing() const {
    std::lock_guard lock(mu_);
    for (const auto& [key, revs] : per_key_) {
      for (std::size_t i = 1; i < revs.size(); ++i) {
        if (revs[i] <= revs[i - 1]) return false;
      }
    }
    return true;
  }
  std::vector<int64_t> revisions(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = per_key_.find(key);
    return it == per_key_.end() ? std::vector<int64_t>{} : it->second;
  }
  std::optional<json> last(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = last_.find(key);
    return it == last_.end() ? std::nullopt : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<int64_t>> per_key_;
  std::map<std::string, std::optional<json>> last_;
};

class RemoteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table_ = unique_name("t_remote");
    store_ = Store::open(dsn(), test_options(table_));
    server_ = serve(*store_);
  }

  std::string table_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(RemoteStoreTest, opens_with_the_servers_data_and_the_same_checksum) {
  // Values whose jsonb text differs from a compact dump: key order, spaces, floats, unicode.
  store_->set("a", json::parse(R"({"zz": 1, "a": [1, 2.5, {"k": null}], "bb": "x\ny\u00e9"})"));
  store_->set("b", 1.5e-7);
  store_->set("c", json::parse("100000000000000000000"));
  store_->set("d", "plain");
  store_->set("e", true);
  store_->set("f", -42);
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  EXPECT_EQ(remote->get_all(), store_->get_all());
  EXPECT_EQ(remote->size(), 6u);
  EXPECT_EQ(remote->get_crc(), store_->get_crc());
  EXPECT_EQ(remote->get_string("d"), "plain");
  EXPECT_EQ(remote->get_int("f"), -42);
  EXPECT_TRUE(remote->get_bool("e"));
  EXPECT_DOUBLE_EQ(remote->get_double("b"), 1.5e-7);
  EXPECT_EQ(remote->get_as<std::string>("missing", "dflt"), "dflt");
  EXPECT_FALSE(remote->is_stale());
  // The server's snapshot may predate its listener's last notification (the store applied its
  // own writes at once): the stream brings the remote store to the same revision.
  const int64_t last = store_->set("last", 1);
  EXPECT_TRUE(wait_until(
      [&] { return remote->stats().revision >= last && store_->stats().revision >= last; }));
  EXPECT_EQ(remote->stats().revision, store_->stats().revision);
}

TEST_F(RemoteStoreTest, follows_writes_and_deletes_with_callbacks_in_commit_order) {
  // Before the store: its callbacks may run until the store is destroyed.
  Recorder recorder;
  std::atomic<int64_t> progressed{0};
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  remote->subscribe(recorder.callback(), [&](const Progress& p) { progressed = p.revision; });
  int64_t r1 = store_->set("k", 1);
  int64_t r2 = store_->set("k", 2);
  store_->set("other", "x");
  EXPECT_TRUE(store_->remove("other"));
  int64_t last = store_->set("k", 3);
  ASSERT_TRUE(wait_until([&] { return progressed.load() >= last; }));
  EXPECT_LT(r1, r2);
  EXPECT_EQ(remote->get("k"), json(3));
  EXPECT_FALSE(remote->contains("other"));
  std::vector<json> ks;
  for (const Change& c : recorder.changes()) {
    EXPECT_EQ(c.origin, ChangeOrigin::kRemote);
    if (c.key == "k") ks.push_back(*c.value);
  }
  EXPECT_EQ(ks, (std::vector<json>{1, 2, 3}));
  EXPECT_TRUE(recorder.has("other", std::nullopt));
  EXPECT_EQ(remote->get_crc(), store_->get_crc());
}

TEST_F(RemoteStoreTest, a_write_returns_its_revision_and_is_read_back_at_once) {
  Recorder mine;  // Before the store: its callbacks may run until the store is destroyed.
  auto writer = RemoteStore::open({url_of(*server_)}, quick_options());
  auto reader = RemoteStore::open({url_of(*server_)}, quick_options());
  writer->subscribe(mine.callback());
  WriteResult w = writer->put("num", json::parse("1e3"));
  EXPECT_GT(w.revision, 0);
  EXPECT_EQ(w.value, json(1000));             // As stored by jsonb.
  EXPECT_EQ(writer->get("num"), json(1000));  // Without waiting for the stream.
  EXPECT_EQ(store_->get("num"), json(1000));  // The server's commit is done.
  ASSERT_TRUE(wait_until([&] { return reader->get("num") == json(1000); }));
  ASSERT_TRUE(wait_until([&] { return mine.size() == 1; }));
  EXPECT_EQ(mine.changes()[0].origin, ChangeOrigin::kLocal);
  EXPECT_EQ(mine.changes()[0].revision, w.revision);

  EXPECT_TRUE(writer->remove("num"));
  EXPECT_FALSE(writer->contains("num"));
  EXPECT_FALSE(writer->remove("num"));  // Absent: false, as Store says.
  ASSERT_TRUE(wait_until([&] { return !reader->contains("num"); }));
  EXPECT_EQ(writer->stats().writes, 1u);
  EXPECT_EQ(writer->stats().deletes, 1u);
}

TEST_F(RemoteStoreTest, a_write_of_the_same_value_elsewhere_reaches_callbacks_with_its_revision) {
  // A client that keeps the revisions its callbacks give (as the console does) names them in a
  // compare-and-set: a write that kept the value must still move them, or the next
  // compare-and-set conflicts with a value equal to the one it started from.
  RevisionLog seen;  // Before the store: its callbacks may run until the store is destroyed.
  std::atomic<int64_t> revision{0};
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  remote->subscribe(seen.callback(), [&](const Progress& p) { revision = p.revision; });
  const int64_t first = store_->set("k", "v");
  const int64_t again = store_->set("k", "v");
  ASSERT_GT(again, first);
  ASSERT_TRUE(wait_until([&] { return revision.load() >= again; }));
  EXPECT_EQ(seen.revisions("k"), (std::vector<int64_t>{first, again}));
  EXPECT_EQ(seen.last("k"), json("v"));
  Recorder after;
  remote->subscribe(after.callback());
  CasResult cas = remote->set_if("k", "w", seen.revisions("k").back());
  ASSERT_TRUE(cas.succeeded) << "conflict at " << cas.revision;
  ASSERT_TRUE(wait_until([&] { return after.has("k", json("w")); }));
  EXPECT_EQ(store_->get("k"), json("w"));
}

TEST_F(RemoteStoreTest, bad_writes_get_the_error_codes_of_store) {
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  auto code_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;  // Not thrown: never what a test expects.
  };
  EXPECT_EQ(code_of([&] { remote->set("", 1); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { remote->set(std::string(256, 'k'), 1); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { remote->set("nan", std::nan("")); }), ErrorCode::kInvalidArgument);
  remote->shutdown();
  EXPECT_EQ(code_of([&] { remote->set("k", 1); }), ErrorCode::kShutdown);
  EXPECT_FALSE(store_->contains("k"));
}

TEST_F(RemoteStoreTest, open_says_what_is_wrong) {
  auto code_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code_of([] { RemoteStore::open({}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { RemoteStore::open({"ftp://x"}); }), ErrorCode::kInvalidArgument);
  RemoteOptions o = quick_options();
  o.open_timeout = 300ms;
  // A port nobody listens on (the server's, after it stopped).
  int port = server_->port();
  server_->stop();
  EXPECT_EQ(code_of([&] { RemoteStore::open({"http://127.0.0.1:" + std::to_string(port)}, o); }),
            ErrorCode::kUnavailable);
}

TEST_F(RemoteStoreTest, a_prefix_store_holds_and_writes_only_its_keys) {
  store_->set("app:a", 1);
  store_->set("other:b", 2);
  RemoteOptions o = quick_options();
  o.prefix = "app:";
  auto remote = RemoteStore::open({url_of(*server_)}, o);
  EXPECT_EQ(remote->get_all(), (std::map<std::string, json>{{"app:a", 1}}));
  store_->set("other:c", 3);
  int64_t last = store_->set("app:d", 4);
  ASSERT_TRUE(wait_until([&] { return remote->stats().revision >= last; }));
  EXPECT_EQ(remote->get_all(), (std::map<std::string, json>{{"app:a", 1}, {"app:d", 4}}));
  try {
    remote->set("other:e", 5);
    ADD_FAILURE() << "a key outside the prefix was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(store_->contains("other:e"));
}

TEST_F(RemoteStoreTest, sync_and_changes_since_read_through_the_server) {
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  int64_t from = store_->set("x", 1);
  store_->set("y", 2);
  store_->remove("x");
  ChangesSince c = remote->changes_since(from - 1);
  ASSERT_TRUE(c.complete) << c.reason;
  ASSERT_EQ(c.changes.size(), 2u);  // y, then the deletion of x (revision order).
  EXPECT_EQ(c.changes[0].key, "y");
  EXPECT_EQ(c.changes[1].key, "x");
  EXPECT_FALSE(c.changes[1].value.has_value());
  remote->sync();
  EXPECT_EQ(remote->get_all(), store_->get_all());
}

TEST_F(RemoteStoreTest, moves_to_the_next_server_and_resumes_without_a_gap) {
  // Two servers of one table, each over its own Store.
  auto store2 = Store::open(dsn(), test_options(table_));
  auto server2 = serve(*store2);
  RevisionLog log;  // Before the store: its callbacks may run until the store is destroyed.
  auto remote = RemoteStore::open({url_of(*server_), url_of(*server2)}, quick_options());
  remote->subscribe(log.callback());
  ASSERT_TRUE(wait_until([&] { return remote->current_server() == url_of(*server_); }));

  // A writer keeps going on the database while the first server goes away.
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    auto w = Store::open(dsn(), test_options(table_));
    for (int i = 0; !stop.load(); ++i) {
      w->set("key" + std::to_string(i % 7), i);
      written = i + 1;
    }
  });
  ASSERT_TRUE(wait_until([&] { return written.load() > 200; }));
  server_->stop();
  // Writes through the RemoteStore during the move: each succeeds or fails with kUnavailable.
  int ok = 0;
  for (int i = 0; i < 50; ++i) {
    try {
      remote->set("during", i);
      ++ok;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
    }
  }
  ASSERT_TRUE(wait_until([&] { return remote->current_server() == url_of(*server2); }));
  const int before = written.load();
  ASSERT_TRUE(wait_until([&] { return written.load() > before + 200; }));
  stop = true;
  writer.join();
  auto truth = Store::open(dsn(), test_options(table_));
  const int64_t newest = truth->stats().revision;
  ASSERT_TRUE(wait_until([&] { return remote->stats().revision >= newest; }));
  EXPECT_EQ(remote->get_all(), truth->get_all());
  EXPECT_EQ(remote->get_crc(), truth->get_crc());
  EXPECT_TRUE(log.strictly_increasing());
  EXPECT_GT(ok, 0);
  EXPECT_GE(remote->stats().reconnects, 1u);
}

// What a client sees after a failover to a database that lacked commits it had seen, and that
// has since handed out the same revisions for other changes: another history under the same
// revisions. The second server here serves another table whose revisions have passed the
// remote store's; resuming by number alone would keep the first history's keys and skip the
// second's first changes. The event id's anchor makes the server reset the store instead.
TEST_F(RemoteStoreTest, resuming_on_a_server_with_another_history_resets_to_that_history) {
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  store_->set("first", 1);
  store_->set("first", 2);
  const int64_t seen = store_->stats().revision;
  ASSERT_TRUE(wait_until([&] { return remote->stats().revision >= seen; }));

  auto other = Store::open(dsn(), test_options(unique_name("t_remote_other")));
  for (int i = 0; i < 3; ++i) other->set("early" + std::to_string(i), i);
  int64_t other_last = 0;
  for (int i = 0; i < 5; ++i) other_last = other->set("late", i);
  ASSERT_GT(other_last, seen);
  // The second server's feed starts from what its store has applied: let it see every write.
  ASSERT_TRUE(wait_until([&] { return other->stats().revision >= other_last; }));
  // The first server goes away and the second takes its address.
  const int port = server_->port();
  server_->stop();
  server_.reset();
  auto second = serve(*other, port);
  ASSERT_TRUE(wait_until([&] { return remote->stats().history_resets >= 1; }, 15s));
  ASSERT_TRUE(wait_until([&] { return remote->get_all() == other->get_all(); }));
  EXPECT_FALSE(remote->get("first"));
}

TEST_F(RemoteStoreTest, a_relay_over_a_remote_store_serves_the_same_api) {
  auto upstream = RemoteStore::open({url_of(*server_)}, quick_options());
  auto relay = serve(*upstream);
  store_->set("before", 1);
  RevisionLog log;  // Before the store: its callbacks may run until the store is destroyed.
  auto remote = RemoteStore::open({url_of(*relay)}, quick_options());
  ASSERT_TRUE(wait_until([&] { return remote->get("before") == json(1); }));
  remote->subscribe(log.callback());
  // Through the relay: a write goes up to the database and comes back down.
  WriteResult w = remote->put("through", "relay");
  EXPECT_GT(w.revision, 0);
  EXPECT_EQ(store_->get("through"), json("relay"));
  int64_t last = 0;
  for (int i = 0; i < 100; ++i) last = store_->set("n" + std::to_string(i % 5), i);
  ASSERT_TRUE(wait_until([&] { return remote->stats().revision >= last; }));
  EXPECT_EQ(remote->get_all(), store_->get_all());
  EXPECT_EQ(remote->get_crc(), store_->get_crc());
  EXPECT_TRUE(log.strictly_increasing());
  // changes_since is answered through the relay by the table.
  ChangesSince c = remote->changes_since(last - 1);
  ASSERT_TRUE(c.complete) << c.reason;
  ASSERT_EQ(c.changes.size(), 1u);
  EXPECT_EQ(c.changes[0].revision, last);
}

TEST_F(RemoteStoreTest, compare_and_set_works_through_a_server_and_a_relay) {
  auto upstream = RemoteStore::open({url_of(*server_)}, quick_options());
  auto relay = serve(*upstream);
  for (const std::string& url : {url_of(*server_), url_of(*relay)}) {
    auto remote = RemoteStore::open({url}, quick_options());
    const std::string key = "cas:" + url;
    CasResult created = remote->set_if(key, 1, 0);
    ASSERT_TRUE(created) << url;
    CasResult conflict = remote->set_if(key, 2, 0);
    EXPECT_FALSE(conflict);
    EXPECT_EQ(conflict.revision, created.revision);
    EXPECT_EQ(conflict.value, 1);
    std::optional<KeyEntry> e = remote->get_entry(key);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->revision, created.revision);
    CasResult next = remote->set_if(key, 2, e->revision, WriteOptions{"via remote", "", 0});
    ASSERT_TRUE(next);
    EXPECT_EQ(remote->get(key), 2);  // Applied at once, from the write's own answer.
    EXPECT_FALSE(remote->remove_if(key, created.revision));
    EXPECT_TRUE(remote->remove_if(key, next.revision));
    EXPECT_EQ(store_->history(key)[1].comment, "via remote");
  }
}

TEST_F(RemoteStoreTest, a_transaction_reaches_another_remote_store_as_one_unit) {
  auto writer = RemoteStore::open({url_of(*server_)}, quick_options());
  std::mutex mu;
  std::vector<Change> seen;
  auto reader = RemoteStore::open({url_of(*server_)}, quick_options());
  reader->subscribe([&](const Change& c) {
    std::lock_guard lock(mu);
    seen.push_back(c);
  });
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::thread watcher([&] {
    while (!done) {
      auto all = reader->get_all("u");
      if (!all.empty() && (all.size() != 10 || all.begin()->second != all.rbegin()->second)) torn++;
    }
  });
  for (int round = 0; round < 30; ++round) {
    Transaction txn;
    for (int k = 0; k < 10; ++k) txn.set("u" + std::to_string(k), round);
    TxnResult r = writer->commit(txn);
    ASSERT_TRUE(r) << r.reason;
  }
  ASSERT_TRUE(wait_until([&] { return reader->get("u9") == 29; }));
  done = true;
  watcher.join();
  EXPECT_EQ(torn.load(), 0);
  // Callbacks run on the dispatcher thread, after the cache has the values.
  EXPECT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() >= 300u;
  }));
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 300u);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].unit_end, i % 10 == 9) << i;

  // A failed guard comes back as an outcome naming it.
  Transaction stale;
  stale.require("u0", 1).set("u0", -1);
  TxnResult failed = writer->commit(stale);
  EXPECT_FALSE(failed);
  EXPECT_EQ(failed.failed_guard, 0u);
  ASSERT_EQ(failed.current.size(), 1u);
  EXPECT_EQ(failed.current[0].value, 29);
}

TEST_F(RemoteStoreTest, history_state_at_rollback_and_leases_read_through_the_server) {
  auto remote = RemoteStore::open({url_of(*server_)}, quick_options());
  const int64_t good = remote->set("h", "good");
  remote->set("h", "bad", WriteOptions{"oops", "bob", 0});
  std::vector<HistoryRecord> h = remote->history("h");
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].actor, "http:bob");
  EXPECT_EQ(h[0].comment, "oops");
  EXPECT_EQ(h[0].previous_value, "good");
  EXPECT_LT(std::chrono::system_clock::now() - h[0].changed_at, 60s);
  EXPECT_EQ(remote->snapshot_at(good).values.at("h"), "good");
  ASSERT_TRUE(remote->rollback("h", false, good, WriteOptions{"back", "carol", 0}));
  EXPECT_EQ(remote->get("h"), "good");
  EXPECT_EQ(remote->history("h")[0].actor, "http:carol");
  EXPECT_EQ(remote->history("h")[0].comment, "back");
  try {
    remote->snapshot_at(good + 100000);
    ADD_FAILURE() << "answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
  }
  Lease lease = remote->grant_lease(30s);
  EXPECT_GT(lease.id, 0);
  remote->set("leased", 1, WriteOptions{"", "", lease.id});
  EXPECT_EQ(remote->get_entry("leased")->lease, lease.id);
  EXPECT_TRUE(remote->keep_alive(lease.id));
  EXPECT_TRUE(remote->revoke_lease(lease.id));
  ASSERT_TRUE(wait_until([&] { return !remote->contains("leased"); }));
  EXPECT_FALSE(remote->revoke_lease(lease.id));
}

TEST_F(RemoteStoreTest, a_stale_start_serves_the_snapshot_file_and_catches_up) {
  TempDir dir;
  RemoteOptions o = quick_options();
  o.snapshot_file = dir.file("remote.snap");
  o.snapshot_interval = 10ms;
  store_->set("a", 1);
  store_->set("b", json::parse(R"({"x": [1, 2]})"));
  const int port = server_->port();
  { auto remote = RemoteStore::open({url_of(*server_)}, o); }  // shutdown() writes the final state.
  struct stat st {};
  ASSERT_EQ(::stat(o.snapshot_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  server_->stop();
  store_->set("c", 3);  // Written while the remote store cannot see it.
  store_->remove("a");
  o.open_timeout = 200ms;
  auto stale = RemoteStore::open({"http://127.0.0.1:" + std::to_string(port)}, o);
  EXPECT_TRUE(stale->is_stale());
  EXPECT_TRUE(stale->stats().stale);
  EXPECT_TRUE(stale->stats().stale_as_of.has_value());
  EXPECT_EQ(stale->get("a"), json(1));
  EXPECT_EQ(stale->get("b"), json::parse(R"({"x": [1, 2]})"));
  try {
    stale->set("d", 4);
    ADD_FAILURE() << "a stale store accepted a write";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  EXPECT_FALSE(store_->contains("d"));

  server_ = serve(*store_, port);  // The source is back.
  ASSERT_TRUE(wait_until([&] { return !stale->is_stale(); }));
  ASSERT_TRUE(wait_until([&] { return stale->get_all() == store_->get_all(); }));
  EXPECT_EQ(stale->get_crc(), store_->get_crc());
  stale->set("d", 4);
  EXPECT_EQ(store_->get("d"), json(4));
}

// A listening socket on a free loopback port that never accepts: the kernel completes the TCP
// handshakes into its backlog, so a client connects, sends its request, and hears nothing (a hung
// server, or one whose port is still bound after it stopped serving).
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on a loopback port: " << std::strerror(errno);
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(RemoteStoreTest,
       a_server_that_accepts_and_never_answers_costs_open_timeout_not_load_timeout) {
  TempDir dir;
  RemoteOptions o = quick_options();
  o.snapshot_file = dir.file("remote.snap");
  store_->set("a", 1);
  { auto remote = RemoteStore::open({url_of(*server_)}, o); }  // Writes the file.

  SilentServer silent;
  o.open_timeout = 300ms;
  o.load_timeout = 120s;  // What open() waited before: far beyond this test's bound below.
  auto started = std::chrono::steady_clock::now();
  auto stale = RemoteStore::open({silent.url()}, o);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
  EXPECT_TRUE(stale->is_stale());
  EXPECT_EQ(stale->get("a"), json(1));
  stale.reset();

  o.snapshot_file.clear();
  started = std::chrono::steady_clock::now();
  try {
    RemoteStore::open({silent.url()}, o);
    ADD_FAILURE() << "open() succeeded against a server that never answers";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(e.message().find("no answer to GET /settings from " + silent.url()),
              std::string::npos)
        << e.message();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
}

// The snapshot file keeps the id of the last change the store saw: a server whose history is
// another (a failover lost that change, the table was recreated) resets the store, even when
// its revisions have passed the file's, where the bare number would take its changes on top.
TEST_F(RemoteStoreTest, a_stale_start_from_a_file_of_another_history_resets_to_the_servers) {
  TempDir dir;
  RemoteOptions o = quick_options();
  o.snapshot_file = dir.file("remote.snap");
  o.snapshot_interval = 10ms;
  const int port = server_->port();
  {
    auto remote = RemoteStore::open({url_of(*server_)}, o);
    store_->set("first", 1);
    const int64_t seen = store_->set("first", 2);
    ASSERT_TRUE(wait_until([&] { return remote->stats().revision >= seen; }));
  }  // shutdown() writes the final state, with the id of the event of "first" = 2.
  server_->stop();
  server_.reset();

  auto other = Store::open(dsn(), test_options(unique_name("t_remote_other")));
  for (int i = 0; i < 3; ++i) other->set("early" + std::to_string(i), i);
  for (int i = 0; i < 5; ++i) other->set("late", i);
  ASSERT_GT(other->set("late", 5), store_->get_entry("first")->revision);

  o.open_timeout = 200ms;
  auto stale = RemoteStore::open({"http://127.0.0.1:" + std::to_string(port)}, o);
  ASSERT_TRUE(stale->is_stale());
  EXPECT_EQ(stale->get("first"), json(2));
  auto second = serve(*other, port);  // Another history at the file's address.
  ASSERT_TRUE(wait_until([&] { return !stale->is_stale(); }));
  ASSERT_TRUE(wait_until([&] { return stale->get_all() == other->get_all(); }));
  EXPECT_FALSE(stale->get("first"));
  EXPECT_GE(stale->stats().history_resets, 1u);
}

TEST_F(RemoteStoreTest, a_corrupt_foreign_or_truncated_snapshot_file_is_refused) {
  TempDir dir;
  RemoteOptions o = quick_options();
  o.snapshot_file = dir.file("remote.snap");
  store_->set("a", 1);
  { auto remote = RemoteStore::open({url_of(*server_)}, o); }
  std::string bytes;
  {
    std::ifstream in(o.snapshot_file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 40u);
  const int port = server_->port();
  server_->stop();
  o.open_timeout = 100ms;
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  auto refused = [&](const std::string& content, RemoteOptions opts) {
    {
      std::ofstream out(o.snapshot_file, std::ios::binary | std::ios::trunc);
      out << content;
    }
    try {
      RemoteStore::open({url}, opts);
    } catch (const Error& e) {
      return e.code() == ErrorCode::kUnavailable;
    }
    return false;
  };
  EXPECT_TRUE(refused(bytes, o) == false) << "the intact file should open (stale)";
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x5a;
  EXPECT_TRUE(refused(flipped, o));
  EXPECT_TRUE(refused(bytes.substr(0, bytes.size() - 3), o));
  RemoteOptions foreign = o;
  foreign.prefix = "other:";  // The file is of the whole store, not of this prefix.
  EXPECT_TRUE(refused(bytes, foreign));
}

// A cluster of the test's own (the tests stop and start it) and a fresh table's store options
// with a snapshot file.
class StoreSnapshotFile : public ::testing::Test {
 protected:
  void SetUp() override { pg.start(); }
  Options options_for(const std::string& table) {
    Options o = test_options(table);
    o.snapshot_file = dir.file("store.snap");
    o.snapshot_interval = 10ms;
    return o;
  }

  TempDir dir;
  EmbeddedPostgres pg;
};

TEST_F(StoreSnapshotFile, a_store_opens_stale_from_its_file_while_the_database_is_down) {
  const std::string table = unique_name("t_stale");
  Options o = options_for(table);
  {
    auto store = Store::open(pg.dsn(), o);
    store->set("a", 1);
    store->set("b", "two");
  }
  pg.stop();
  o.db_timeout = 1s;
  auto store = Store::open(pg.dsn(), o);
  EXPECT_TRUE(store->is_stale());
  EXPECT_EQ(store->get("a"), json(1));
  EXPECT_EQ(store->get_string("b"), "two");
  try {
    store->set("c", 3);
    ADD_FAILURE() << "a stale store accepted a write";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  // A server over it says so.
  auto server = serve(*store);
  http::HttpClient client(http::parse_url(url_of(*server)));
  http::Response health = client.request("GET", "/health");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(json::parse(health.body)["status"], "stale");
  EXPECT_NE(client.request("GET", "/metrics").body.find("syncconfig_stale{store=\"main\"} 1"),
            std::string::npos);

  pg.start();
  {
    Sql writer(pg.dsn());
    writer.exec("UPDATE " + table + " SET value = '5' WHERE key = 'a'");
  }
  ASSERT_TRUE(wait_until([&] { return !store->is_stale(); }, 20s));
  ASSERT_TRUE(wait_until([&] { return store->get("a") == json(5); }));
  store->set("c", 3);
  EXPECT_EQ(store->get("c"), json(3));
  EXPECT_EQ(client.request("GET", "/health").status, 200);
}

// The file keeps the last changes the store applied (its anchors): a table whose history is
// another (a failover to a standby that lacked them, a recreated table) is reloaded whole, even
// once its revisions have passed the file's, where a catch-up by number would put its changes
// on top of the file's.
TEST_F(StoreSnapshotFile, a_store_started_from_a_file_of_another_history_reloads_the_table) {
  const std::string table = unique_name("t_stale_history");
  Options o = options_for(table);
  {
    auto store = Store::open(pg.dsn(), o);
    store->set("only_old", 1);
    store->set("shared", "old");
  }
  {
    // Another history of the table, past the file's revisions.
    Sql sql(pg.dsn());
    sql.exec("DROP TABLE " + table + " CASCADE; DROP TABLE " + table + "_changes; DROP SEQUENCE " +
             table + "_revision_seq");
    auto recreated = Store::open(pg.dsn(), test_options(table));
    for (int i = 0; i < 6; ++i) recreated->set("shared", "new" + std::to_string(i));
    recreated->set("only_new", 2);
  }
  pg.stop();
  o.db_timeout = 1s;
  auto store = Store::open(pg.dsn(), o);
  ASSERT_TRUE(store->is_stale());
  EXPECT_EQ(store->get("only_old"), json(1));
  pg.start();
  ASSERT_TRUE(wait_until([&] { return !store->is_stale(); }, 20s));
  EXPECT_FALSE(store->get("only_old")) << "kept from another history";
  EXPECT_EQ(store->get("shared"), json("new5"));
  EXPECT_EQ(store->get("only_new"), json(2));
  EXPECT_EQ(store->stats().history_resets, 1u);
}

// SyncMap and any code written against Config run the same on both kinds of store.
template <class MakeStore>
std::vector<std::string> flag_scenario(MakeStore make) {
  // Before the stores and maps: the subscription may run until flags_b is destroyed.
  std::mutex mu;
  std::vector<std::string> seen;
  std::unique_ptr<Config> a = make();
  std::unique_ptr<Config> b = make();
  SyncMap<bool> flags_a(*a, "flag:");
  SyncMap<bool> flags_b(*b, "flag:");
  flags_b.subscribe([&](const std::string& name, const std::optional<bool>& v) {
    std::lock_guard lock(mu);
    seen.push_back(name + "=" + (v ? (*v ? "on" : "off") : "absent"));
  });
  flags_a.set("x", true);
  flags_a.set("y", false);
  a->set("flag:z", "not a bool");
  flags_a.remove("x");
  wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() >= 4;
  });
  std::lock_guard lock(mu);
  seen.push_back("keys:" + std::to_string(flags_b.keys().size()));
  seen.push_back(std::string("y:") + (flags_b.get_or("y", true) ? "on" : "off"));
  return seen;
}

TEST_F(RemoteStoreTest, the_same_code_gives_the_same_results_on_store_and_remote_store) {
  auto on_store = flag_scenario(
      [&]() -> std::unique_ptr<Config> { return Store::open(dsn(), test_options(table_)); });
  store_->remove("flag:y");
  store_->remove("flag:z");
  auto on_remote = flag_scenario([&]() -> std::unique_ptr<Config> {
    return RemoteStore::open({url_of(*server_)}, quick_options());
  });
  EXPECT_EQ(on_store,
            (std::vector<std::string>{"x=on", "y=off", "z=absent", "x=absent", "keys:2", "y:off"}));
  EXPECT_EQ(on_remote, on_store);
}

}  // namespace
}  // namespace syncconfig::testing
