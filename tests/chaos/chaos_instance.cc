// chaos_instance: one application instance of the chaos test (tests/chaos/chaos_test.cc starts
// several, each in its own process). It opens a syncconfig::Store on the shared table and takes
// commands on stdin, one per line, answering each with one line on stdout:
//
//   work SEED MS KEYS LARGE_PCT REMOVE_PCT
//        two threads set/remove random keys for MS ms -> "done N"
//   crc  -> "crc CRC SIZE CONNECTED REVISION" (REVISION: Stats::revision, the watermark)
//   dump ROUND
//        waits for the callbacks to catch up, logs the cache and the stats -> "dumped"
//   quit shuts the store down -> "bye", exits 0
//
// Everything it observes goes to its log file, one JSON object per line with "at" (wall-clock
// ms), flushed per line so that a SIGKILL loses at most a partial last line:
//   {"t":"start"}                     opened the store
//   {"t":"base","cache":{key:wid}}    the cache right after subscribing (for the callback replay)
//   {"t":"cb","k","w","r","o"}        a callback: key, write id (null: deleted), revision, origin
//   {"t":"set","k","w","ok","code","error","after"}  a set: acknowledged or the error, and what
//   get()
//                                     returned right after an acknowledged one
//   {"t":"rm","k","ok","existed","r","code","error"}  r: the deletion's revision (0: absent)
//   {"t":"dump","round","drained","cache":{key:wid},"stats":{...}}
// A value is {"w": WRITE_ID, "p": PADDING}; WRITE_ID is unique over the whole run
// ("i<instance>.<incarnation>.<n>"), so the checker maps every observed value to one write.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "syncconfig/syncconfig.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The write id a value carries, or "?" for a value that is not one of ours.
json write_id(const std::optional<json>& value) {
  if (!value) return nullptr;
  if (value->is_object()) {
    auto it = value->find("w");
    if (it != value->end() && it->is_string()) return *it;
  }
  return "?";
}

class Log {
 public:
  explicit Log(const std::string& path) : file_(std::fopen(path.c_str(), "a")) {
    if (!file_) {
      std::perror(path.c_str());
      std::exit(2);
    }
  }
  ~Log() { std::fclose(file_); }
  // Adds "at": wall-clock milliseconds, to line the log up with the store's own log (stderr).
  void write(json line) {
    line["at"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace);
    std::lock_guard lock(mu_);
    std::fputs(text.c_str(), file_);
    std::fputc('\n', file_);
    std::fflush(file_);
  }

 private:
  std::mutex mu_;
  std::FILE* file_;
};

struct Args {
  std::string dsn, table, log;
  int instance = 0, incarnation = 0;
  int heartbeat_ms = 1000, reconnect_ms = 200, db_timeout_ms = 3000;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dsn")
      a.dsn = v;
    else if (k == "--table")
      a.table = v;
    else if (k == "--log")
      a.log = v;
    else if (k == "--instance")
      a.instance = std::stoi(v);
    else if (k == "--incarnation")
      a.incarnation = std::stoi(v);
    else if (k == "--heartbeat-ms")
      a.heartbeat_ms = std::stoi(v);
    else if (k == "--reconnect-ms")
      a.reconnect_ms = std::stoi(v);
    else if (k == "--db-timeout-ms")
      a.db_timeout_ms = std::stoi(v);
    else {
      std::cerr << "chaos_instance: unknown argument " << k << "\n";
      std::exit(2);
    }
  }
  if (a.dsn.empty() || a.table.empty() || a.log.empty()) {
    std::cerr << "chaos_instance: --dsn, --table and --log are required\n";
    std::exit(2);
  }
  return a;
}

class Instance {
 public:
  Instance(const Args& args, Log& log) : args_(args), log_(log) {}

  // Opens the store, retrying while the server is restarting (bounded).
  void open() {
    syncconfig::Options o;
    o.table_name = args_.table;
    o.channel = args_.table + "_ch";
    o.heartbeat_interval = std::chrono::milliseconds(args_.heartbeat_ms);
    o.reconnect_interval = std::chrono::milliseconds(args_.reconnect_ms);
    o.db_timeout = std::chrono::milliseconds(args_.db_timeout_ms);
    o.pool_size = 2;
    auto deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      try {
        store_ = syncconfig::Store::open(args_.dsn, o);
        break;
      } catch (const syncconfig::Error& e) {
        if (!e.retryable() || Clock::now() > deadline) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    log_.write({{"t", "start"}, {"pid", ::getpid()}});
    store_->subscribe([this](const syncconfig::Change& c) {
      json w = write_id(c.value);
      // The replay map and the log change together, so the log's order is the replay's.
      std::lock_guard lock(mu_);
      if (w.is_null()) {
        replay_.erase(c.key);
      } else {
        replay_[c.key] = w;
      }
      log_.write({{"t", "cb"},
                  {"k", c.key},
                  {"w", w},
                  {"r", c.revision},
                  {"o", std::string(syncconfig::to_string(c.origin))}});
    });
    // Taken after subscribing: every change applied later has a callback, every earlier one is
    // in here (see docs/reliability.md, "callbacks").
    // Under mu_: a callback logged before the base line ran before the base was taken.
    std::lock_guard lock(mu_);
    json base = cache_ids();
    for (auto& [k, w] : base.items()) replay_.emplace(k, w);
    log_.write({{"t", "base"}, {"cache", base}});
  }

  json cache_ids() const {
    json out = json::object();
    for (auto& [k, v] : store_->get_all()) out[k] = write_id(v);
    return out;
  }

  void work(uint64_t seed, int ms, int keys, int large_pct, int remove_pct) {
    std::atomic<int> ops{0};
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    auto body = [&](uint64_t thread_seed) {
      std::mt19937_64 rng(thread_seed);
      while (Clock::now() < until) {
        std::string key = "k" + std::to_string(rng() % keys);
        if (static_cast<int>(rng() % 100) < remove_pct) {
          do_remove(key);
        } else if (rng() % 10 == 0) {
          // A transaction of 2..4 keys (protocol 2): logged as one set per key.
          std::vector<std::string> txn_keys{key};
          const std::size_t n = 2 + rng() % 3;
          while (txn_keys.size() < n && static_cast<int>(txn_keys.size()) < keys) {
            std::string other = "k" + std::to_string(rng() % keys);
            if (std::find(txn_keys.begin(), txn_keys.end(), other) == txn_keys.end()) {
              txn_keys.push_back(other);
            }
          }
          do_txn(txn_keys);
        } else {
          bool large = static_cast<int>(rng() % 100) < large_pct;
          // Large: over NOTIFY's 8000-byte payload limit, so it travels by a read of the row.
          std::size_t pad = large ? 8200 + rng() % 24000 : rng() % 64;
          do_set(key, pad);
        }
        ops.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(2 + rng() % 10));
      }
    };
    std::thread t1(body, seed * 2 + 1), t2(body, seed * 2 + 2);
    t1.join();
    t2.join();
    std::cout << "done " << ops.load() << std::endl;
  }

  void do_set(const std::string& key, std::size_t pad) {
    std::string wid = "i" + std::to_string(args_.instance) + "." +
                      std::to_string(args_.incarnation) + "." + std::to_string(next_write_++);
    json value = {{"w", wid}, {"p", std::string(pad, 'x')}};
    json line = {{"t", "set"}, {"k", key}, {"w", wid}};
    try {
      store_->set(key, value);
      line["ok"] = true;
      line["after"] = write_id(store_->get(key));
    } catch (const syncconfig::Error& e) {
      line["ok"] = false;
      line["code"] = std::string(syncconfig::to_string(e.code()));
      line["error"] = e.message().substr(0, 200);
    }
    log_.write(line);
  }

  void do_txn(const std::vector<std::string>& keys) {
    syncconfig::Transaction txn;
    std::vector<json> lines;
    for (const std::string& key : keys) {
      std::string wid = "i" + std::to_string(args_.instance) + "." +
                        std::to_string(args_.incarnation) + "." + std::to_string(next_write_++);
      txn.set(key, json{{"w", wid}, {"p", ""}});
      lines.push_back({{"t", "set"}, {"k", key}, {"w", wid}});
    }
    try {
      syncconfig::TxnResult r = store_->commit(txn);
      for (json& line : lines) {
        line["ok"] = r.committed;
        if (!r.committed) line["code"] = "conflict";
        line["after"] = write_id(store_->get(line["k"].get<std::string>()));
      }
    } catch (const syncconfig::Error& e) {
      for (json& line : lines) {
        line["ok"] = false;
        line["code"] = std::string(syncconfig::to_string(e.code()));
        line["error"] = e.message().substr(0, 200);
      }
    }
    for (const json& line : lines) log_.write(line);
  }

  void do_remove(const std::string& key) {
    json line = {{"t", "rm"}, {"k", key}};
    try {
      // remove() is erase(key).revision != 0; the revision lets the checker find the deletion.
      const int64_t revision = store_->erase(key).revision;
      line["existed"] = revision != 0;
      line["r"] = revision;
      line["ok"] = true;
    } catch (const syncconfig::Error& e) {
      line["ok"] = false;
      line["code"] = std::string(syncconfig::to_string(e.code()));
      line["error"] = e.message().substr(0, 200);
    }
    log_.write(line);
  }

  void crc() {
    syncconfig::Stats s = store_->stats();
    std::cout << "crc " << store_->get_crc() << " " << store_->size() << " " << s.connected << " "
              << s.revision << std::endl;
  }

  // Waits (bounded) until the callbacks delivered so far replay to the cache, then logs both.
  void dump(int round) {
    auto deadline = Clock::now() + std::chrono::seconds(5);
    json cache;
    bool drained = false;
    std::unique_lock lock(mu_);
    for (;;) {
      cache = cache_ids();
      drained = json(replay_) == cache;
      if (drained || Clock::now() > deadline) break;
      lock.unlock();  // Let pending callbacks run.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      lock.lock();
    }
    syncconfig::Stats s = store_->stats();
    json stats = {{"resyncs", s.resyncs},
                  {"catch_ups", s.catch_ups},
                  {"reconnects", s.reconnects},
                  {"crc_mismatches", s.crc_mismatches},
                  {"history_resets", s.history_resets},
                  {"notifications_applied", s.notifications_applied},
                  {"notifications_ignored", s.notifications_ignored},
                  {"callback_errors", s.callback_errors}};
    log_.write({{"t", "dump"},
                {"round", round},
                {"drained", drained},
                {"cache", cache},
                {"stats", stats}});
    std::cout << "dumped" << std::endl;
  }

  void quit() {
    store_->shutdown();
    log_.write({{"t", "quit"}});
    std::cout << "bye" << std::endl;
  }

 private:
  const Args& args_;
  Log& log_;
  std::unique_ptr<syncconfig::Store> store_;
  std::mutex mu_;
  std::map<std::string, json> replay_;  // What the callbacks say the cache holds.
  std::atomic<uint64_t> next_write_{0};
};

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  // stdout carries the replies: the store logs to stderr.
  auto logger = spdlog::stderr_logger_mt("chaos_instance");
  // CHAOS_LOG_LEVEL=debug shows the library's debug lines in the instance's .stderr file.
  const char* level = std::getenv("CHAOS_LOG_LEVEL");
  logger->set_level(level != nullptr ? spdlog::level::from_str(level) : spdlog::level::warn);
  spdlog::set_default_logger(logger);
  Log log(args.log);
  Instance instance(args, log);
  try {
    instance.open();
  } catch (const std::exception& e) {
    std::cerr << "chaos_instance: open failed: " << e.what() << "\n";
    return 3;
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "work") {
      uint64_t seed = 0;
      int ms = 0, keys = 0, large = 0, remove = 0;
      in >> seed >> ms >> keys >> large >> remove;
      instance.work(seed, ms, keys, large, remove);
    } else if (cmd == "crc") {
      instance.crc();
    } else if (cmd == "dump") {
      int round = 0;
      in >> round;
      instance.dump(round);
    } else if (cmd == "quit") {
      instance.quit();
      return 0;
    } else {
      std::cout << "error unknown command" << std::endl;
    }
  }
  return 0;  // stdin closed: the driver is gone.
}
