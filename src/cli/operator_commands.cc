// One-shot operator commands (get, set, delete, list, crc) and watch, against one store.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "config/service_config.h"
#include "syncconfig/syncconfig.h"
#include "util/validation.h"

namespace syncconfig::cli {
namespace {

std::string show_key(std::string_view key) {
  return nlohmann::json(std::string(key))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Opens the store named by --config/--store, or by --dsn (SYNCCONFIG_DSN) with --table and
// --channel. Only `watch` keeps a LISTEN connection.
std::unique_ptr<Store> open_store(const ConnectionArgs& a, bool notifications) {
  Options options;
  if (!a.config.empty()) {
    if (!a.dsn.empty()) throw UsageError("--dsn and --config cannot be used together");
    if (!a.table.empty() || !a.channel.empty()) {
      throw UsageError("--table and --channel apply to --dsn; with --config the file names them");
    }
    service::ServiceConfig config = service::load_service_config(a.config);
    const service::StoreEntry* entry = &config.stores.front();
    if (!a.store.empty()) {
      entry = nullptr;
      std::string names;
      for (const service::StoreEntry& s : config.stores) {
        if (s.name == a.store) entry = &s;
        names += (names.empty() ? "" : ", ") + s.name;
      }
      if (entry == nullptr) {
        throw UsageError("--store " + show_key(a.store) + ": no sync_config_pg service of that " +
                         "name in " + a.config + " (there are: " + names + ")");
      }
    }
    PoolManager pools;
    for (const service::PoolEntry& p : config.pools) {
      if (p.name == entry->pool) pools.register_named(p.name, p.dsn, p.schema);
    }
    options = entry->options;
    options.enable_notification = notifications;
    options.pool_size = 1;
    return Store::open(pools, entry->pool, options);
  }
  if (!a.store.empty()) throw UsageError("--store needs --config");
  std::string dsn = a.dsn.empty() ? env("SYNCCONFIG_DSN").value_or("") : a.dsn;
  if (dsn.empty()) {
    throw UsageError("no database given: use --dsn DSN, set SYNCCONFIG_DSN, or --config FILE");
  }
  check_dsn(dsn);
  if (!a.table.empty()) options.table_name = a.table;
  if (!a.channel.empty()) options.channel = a.channel;
  options.enable_notification = notifications;
  options.pool_size = 1;
  return Store::open(dsn, options);
}

nlohmann::json parse_value(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double (1e999).
    std::string reason = e.what();
    if (std::size_t end = reason.find("] "); end != std::string::npos) reason.erase(0, end + 2);
    throw UsageError("the value is not valid JSON (" + reason +
                     "); a string needs JSON quotes, e.g. '\"text\"'");
  }
}

// Prints one JSON line per change until SIGINT/SIGTERM, or until stdout fails.
int watch(const OperatorArgs& args) {
  StopSignal stop;  // Before any thread starts, so that no signal finds the default handler.
  std::unique_ptr<Store> store = open_store(args.connection, /*notifications=*/true);
  std::mutex out_mu;
  bool out_failed = false;
  int out_errno = 0;
  SubscriptionId id = store->subscribe([&](const Change& c) {
    if (c.key.compare(0, args.prefix.size(), args.prefix) != 0) return;
    nlohmann::ordered_json line;
    line["key"] = c.key;
    line["value"] = c.value ? *c.value : nlohmann::json(nullptr);
    line["revision"] = c.revision;
    line["origin"] = std::string(to_string(c.origin));
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::lock_guard lock(out_mu);
    if (out_failed) return;
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
        std::fflush(stdout) != 0) {
      out_failed = true;
      out_errno = errno;
      StopSignal::request_stop();
    }
  });
  std::cerr << "syncconfig: watching for changes"
            << (args.prefix.empty() ? std::string()
                                    : " of keys starting with " + show_key(args.prefix))
            << "; Ctrl-C stops" << std::endl;
  stop.wait();
  store->unsubscribe(id);
  store->shutdown();
  std::lock_guard lock(out_mu);
  if (out_failed) {
    print_error(std::string("writing to stdout failed: ") + std::strerror(out_errno));
    return kExitFailure;
  }
  return kExitOk;
}

// Exit code after printing a result: a failed write to stdout (e.g. a closed pipe) is an error.
int printed() {
  if (std::cout.flush()) return kExitOk;
  print_error("writing to stdout failed");
  return kExitFailure;
}

}  // namespace

int run_operator(const OperatorArgs& args) {
  switch (args.operation) {
    case Operation::kGet: {
      internal::validate_key(args.key);
      auto store = open_store(args.connection, false);
      std::optional<nlohmann::json> value = store->get(args.key);
      if (!value) {
        print_error("key " + show_key(args.key) + " not found");
        return kExitNotFound;
      }
      std::cout << value->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      return printed();
    }
    case Operation::kSet: {
      internal::validate_key(args.key);
      nlohmann::json value = parse_value(args.value);
      auto store = open_store(args.connection, false);
      store->set(args.key, value);
      return kExitOk;
    }
    case Operation::kDelete: {
      internal::validate_key(args.key);
      auto store = open_store(args.connection, false);
      if (!store->remove(args.key)) {
        print_error("key " + show_key(args.key) + " not found");
        return kExitNotFound;
      }
      return kExitOk;
    }
    case Operation::kList: {
      auto store = open_store(args.connection, false);
      nlohmann::json all = nlohmann::json::object();
      for (auto& [key, value] : store->get_all(args.prefix)) all[key] = std::move(value);
      std::cout << all.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      return printed();
    }
    case Operation::kCrc: {
      auto store = open_store(args.connection, false);
      std::cout << store->get_crc() << '\n';
      return printed();
    }
    case Operation::kWatch:
      return watch(args);
  }
  return kExitUsage;
}

}  // namespace syncconfig::cli
