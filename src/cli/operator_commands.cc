// One-shot operator commands (get, set, delete, list, crc) and watch, against one store: on its
// database here, or through a syncconfig server (choose_server() decides, target.h).
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/target.h"
#include "config/service_config.h"
#include "syncconfig/syncconfig.h"
#include "util/validation.h"

namespace syncconfig::cli {

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

namespace {

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
    std::string text = json_text(line);
    std::lock_guard lock(out_mu);
    if (out_failed) return;
    if (!write_line(text)) {
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

}  // namespace

int run_operator(const OperatorArgs& args) {
  if (std::optional<ServerTarget> server = choose_server(args.connection)) {
    return args.operation == Operation::kWatch ? watch_server(args, *server)
                                               : run_remote_operator(args, *server);
  }
  switch (args.operation) {
    case Operation::kGet: {
      internal::validate_key(args.key);
      auto store = open_store(args.connection, false);
      std::optional<nlohmann::json> value = store->get(args.key);
      if (!value) {
        print_error("key " + show_key(args.key) + " not found");
        return kExitNotFound;
      }
      std::cout << json_text(*value) << '\n';
      return printed();
    }
    case Operation::kSet: {
      internal::validate_key(args.key);
      nlohmann::json value = parse_value(args.value);
      WriteOptions options{args.comment, "", args.lease};
      auto store = open_store(args.connection, false);
      if (args.if_revision) {
        CasResult r = store->set_if(args.key, value, *args.if_revision, options);
        return r ? kExitOk : conflict(args.key, r.revision, r.value);
      }
      store->put(args.key, value, options);
      return kExitOk;
    }
    case Operation::kDelete: {
      internal::validate_key(args.key);
      WriteOptions options{args.comment, "", 0};
      auto store = open_store(args.connection, false);
      if (args.if_revision) {
        CasResult r = store->remove_if(args.key, *args.if_revision, options);
        return r ? kExitOk : conflict(args.key, r.revision, r.value);
      }
      if (!store->remove(args.key, options)) {
        print_error("key " + show_key(args.key) + " not found");
        return kExitNotFound;
      }
      return kExitOk;
    }
    case Operation::kList: {
      auto store = open_store(args.connection, false);
      nlohmann::json all = nlohmann::json::object();
      for (auto& [key, value] : store->get_all(args.prefix)) all[key] = std::move(value);
      std::cout << json_text(all, 2) << '\n';
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
