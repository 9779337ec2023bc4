// Feature flags: `feature:<name>` keys read through a SyncMap<bool>. Enabling a flag on instance
// A flips `is_enabled` on instance B without a restart, and a subscriber on B logs the flip.
//
// Usage: feature_flags [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is started
// in a temporary directory. Exits 1 if the instances do not behave as described.
//        feature_flags --server URL [URL...]   The same application code on two RemoteStores
// that follow a running `syncconfig serve` (no database connection in this process): only the
// open() calls differ, because FeatureFlags is written against syncconfig::Config.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "example_support.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

using namespace std::chrono_literals;

using namespace example;

namespace {

// What an application would wrap around its flags: names without the "feature:" prefix, and
// "off" for a flag that is absent or not a JSON boolean.
class FeatureFlags {
 public:
  explicit FeatureFlags(syncconfig::Config& store) : flags_(store, "feature:") {}

  bool is_enabled(std::string_view name) const { return flags_.get_or(name, false); }
  void enable(std::string_view name) { flags_.set(name, true); }
  void disable(std::string_view name) { flags_.set(name, false); }
  void clear(std::string_view name) { flags_.remove(name); }
  std::vector<std::string> names() const { return flags_.keys(); }

  // Calls `on_flip(name, enabled)` whenever a flag changes (a removed flag reports false).
  void on_flip(std::function<void(const std::string&, bool)> on_flip) {
    flags_.subscribe(
        [on_flip = std::move(on_flip)](const std::string& name, const std::optional<bool>& value) {
          on_flip(name, value.value_or(false));
        });
  }

 private:
  syncconfig::SyncMap<bool> flags_;
};

// The flips B's subscriber has logged, thread-safely (the subscriber runs on B's dispatcher).
class FlipLog {
 public:
  void add(const std::string& name, bool enabled) {
    std::lock_guard lock(mu_);
    log_.push_back(name + (enabled ? "=on" : "=off"));
  }
  bool contains(const std::string& entry) const {
    std::lock_guard lock(mu_);
    for (const auto& e : log_) {
      if (e == entry) return true;
    }
    return false;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return log_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> log_;
};

}  // namespace

int main(int argc, char** argv) try {
  spdlog::set_level(spdlog::level::warn);
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  std::unique_ptr<syncconfig::Config> store_a, store_b;
  if (argc > 2 && std::string_view(argv[1]) == "--server") {
    std::vector<std::string> urls(argv + 2, argv + argc);
    std::cout << "Two RemoteStores following " << urls.front() << "\n";
    store_a = syncconfig::RemoteStore::open(urls);
    store_b = syncconfig::RemoteStore::open(urls);
  } else {
    std::string dsn = dsn_for(argc, argv, embedded);
    syncconfig::Options options;
    options.table_name = "example_feature_flags";
    options.channel = "example_feature_flags_changes";
    store_a = syncconfig::Store::open(dsn, options);
    store_b = syncconfig::Store::open(dsn, options);
  }
  // Start from a clean slate when run against a database that already has the table.
  for (const auto& [key, value] : store_a->get_all("feature:")) store_a->remove(key);
  store_a->set("app_name", "shop");  // Outside the prefix: never a flag.
  if (!wait_for(
          [&] { return store_b->get_all("feature:").empty() && store_b->contains("app_name"); })) {
    std::cout << "FAILED: instance B did not catch up with the reset\n";
    return 1;
  }

  FlipLog flips;             // Before b: the subscriber's state must outlive b's subscription.
  FeatureFlags a(*store_a);  // e.g. the admin console's instance
  FeatureFlags b(*store_b);  // e.g. a web server's instance
  b.on_flip([&](const std::string& name, bool enabled) {
    // One string per line: the subscriber runs on B's dispatcher thread, beside main's output.
    std::cout << ("  [B subscriber] feature '" + name + "' is now " + (enabled ? "ON" : "OFF") +
                  "\n");
    flips.add(name, enabled);
  });

  std::cout << "Before: B.is_enabled(new_checkout) = " << b.is_enabled("new_checkout") << "\n";
  check(!b.is_enabled("new_checkout"), "an absent flag is off");

  std::cout << "A enables new_checkout\n";
  a.enable("new_checkout");
  check(a.is_enabled("new_checkout"), "A sees its own write at once");
  check(wait_for([&] { return b.is_enabled("new_checkout"); }),
        "B.is_enabled(new_checkout) flipped to true without a restart");
  check(wait_for([&] { return flips.contains("new_checkout=on"); }), "B's subscriber logged it");

  std::cout << "A enables dark_mode, then disables new_checkout\n";
  a.enable("dark_mode");
  a.disable("new_checkout");
  check(wait_for([&] { return !b.is_enabled("new_checkout") && b.is_enabled("dark_mode"); }),
        "B: new_checkout off, dark_mode on");
  check(wait_for([&] { return flips.contains("new_checkout=off"); }),
        "B's subscriber logged new_checkout turning off");
  check(b.names() == std::vector<std::string>{"dark_mode", "new_checkout"},
        "B lists the flags by name: dark_mode, new_checkout");

  std::cout << "Someone writes a string instead of a boolean to feature:beta_search\n";
  store_a->set("feature:beta_search", "yes please");
  check(wait_for([&] { return store_b->contains("feature:beta_search"); }), "B received it");
  check(!b.is_enabled("beta_search"), "a value that is not a JSON boolean reads as off");

  std::cout << "A removes dark_mode\n";
  a.clear("dark_mode");
  check(wait_for([&] { return flips.contains("dark_mode=off"); }),
        "B's subscriber logged dark_mode off (removed)");
  check(!b.is_enabled("dark_mode"), "a removed flag is off again");
  check(!flips.contains("app_name=on") && flips.size() == 5,
        "the subscriber saw only the 5 flag changes, not app_name");

  if (failures > 0) {
    std::cout << "FAILED: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "Feature flags flipped on B as A changed them.\n";
  return 0;
} catch (const std::exception& e) {
  std::cout << "FAILED: " << e.what() << "\n";
  return 1;
}
