// Cache invalidation across instances: each of three instances keeps a local in-process cache
// (a std::map) of an "expensive" value computed from `product:<id>` and the global
// `pricing:tax_percent`. A change callback evicts what a change makes stale, on every instance:
//   - a change to `product:<id>` evicts that product's entry;
//   - a change to `pricing:tax_percent` clears the whole cache (every entry depends on it).
// Whichever instance makes the change, every instance (the writer included) evicts.
//
// Usage: cache_invalidation [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is
// started in a temporary directory. Exits 1 if an instance keeps a stale entry.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "example_support.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

using namespace std::chrono_literals;
using nlohmann::json;

using namespace example;

namespace {

const std::string kProductPrefix = "product:";
const std::string kTaxKey = "pricing:tax_percent";

// A cache of rendered price labels, kept correct by the store's change callbacks.
class PriceLabelCache {
 public:
  PriceLabelCache(std::string name, syncconfig::Store& config)
      : name_(std::move(name)), config_(config) {
    subscription_ = config_.subscribe([this](const syncconfig::Change& c) { on_change(c); });
  }
  ~PriceLabelCache() { config_.unsubscribe(subscription_); }  // Waits for a running callback.

  // The label of product `id`: from the cache, else computed (and cached).
  std::string label(const std::string& id) {
    uint64_t epoch;
    {
      std::lock_guard lock(mu_);
      if (auto it = entries_.find(id); it != entries_.end()) return it->second;
      epoch = epoch_;
    }
    std::string value = compute(id);  // Outside the lock: slow work does not block others.
    std::lock_guard lock(mu_);
    // Cache it only if nothing was evicted meanwhile: the value may have been computed from
    // configuration that changed while we were computing.
    if (epoch == epoch_) entries_[id] = value;
    return value;
  }

  bool cached(const std::string& id) const {
    std::lock_guard lock(mu_);
    return entries_.count(id) > 0;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
  }
  int computations() const {
    std::lock_guard lock(mu_);
    return computations_;
  }
  const std::string& name() const { return name_; }

 private:
  // The "expensive" computation: reads the product and the tax rate from the config cache.
  std::string compute(const std::string& id) {
    {
      std::lock_guard lock(mu_);
      ++computations_;
    }
    json product = config_.get(kProductPrefix + id).value_or(json::object());
    int64_t cents = product.value("price_cents", int64_t{0});
    int64_t tax_percent = config_.get_int(kTaxKey, 0);
    int64_t with_tax = cents + cents * tax_percent / 100;
    std::string name = product.value("name", std::string("?"));
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s: $%lld.%02lld incl. %lld%% tax", name.c_str(),
                  static_cast<long long>(with_tax / 100), static_cast<long long>(with_tax % 100),
                  static_cast<long long>(tax_percent));
    return buf;
  }

  void on_change(const syncconfig::Change& c) {
    std::lock_guard lock(mu_);
    if (c.key == kTaxKey) {
      std::cout << ("  [" + name_ + "] tax changed: evicting all " +
                    std::to_string(entries_.size()) + " entries\n");
      entries_.clear();
      ++epoch_;
    } else if (c.key.starts_with(kProductPrefix)) {
      std::string id = c.key.substr(kProductPrefix.size());
      if (entries_.erase(id) > 0) std::cout << ("  [" + name_ + "] evicted product " + id + "\n");
      ++epoch_;
    }
  }

  const std::string name_;
  syncconfig::Store& config_;
  syncconfig::SubscriptionId subscription_ = 0;
  mutable std::mutex mu_;
  std::map<std::string, std::string> entries_;
  uint64_t epoch_ = 0;  // Bumped by every eviction.
  int computations_ = 0;
};

}  // namespace

int main(int argc, char** argv) try {
  spdlog::set_level(spdlog::level::warn);
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  std::string dsn = dsn_for(argc, argv, embedded);

  syncconfig::Options options;
  options.table_name = "example_catalog";
  options.channel = "example_catalog_changes";
  std::vector<std::unique_ptr<syncconfig::Store>> stores;
  for (int i = 0; i < 3; ++i) stores.push_back(syncconfig::Store::open(dsn, options));

  std::cout << "Instance A writes two products and the tax rate\n";
  syncconfig::Store& a = *stores[0];
  a.set("product:1", json{{"name", "Widget"}, {"price_cents", 1000}});
  a.set("product:2", json{{"name", "Gadget"}, {"price_cents", 2500}});
  a.set(kTaxKey, 10);
  const std::string widget_v1 = "Widget: $11.00 incl. 10% tax";
  const std::string gadget_v1 = "Gadget: $27.50 incl. 10% tax";
  for (auto& s : stores) {
    if (!wait_for([&] { return s->get_int(kTaxKey, 0) == 10 && s->contains("product:2"); })) {
      std::cout << "FAILED: an instance did not receive the catalog\n";
      return 1;
    }
  }

  std::vector<std::unique_ptr<PriceLabelCache>> caches;
  const char* names[] = {"A", "B", "C"};
  for (int i = 0; i < 3; ++i) {
    caches.push_back(std::make_unique<PriceLabelCache>(names[i], *stores[i]));
  }
  auto on_every_instance = [&](const std::function<bool(PriceLabelCache&)>& condition,
                               const std::string& what) {
    for (auto& cache : caches) {
      check(wait_for([&] { return condition(*cache); }), cache->name() + ": " + what);
    }
  };

  std::cout << "Every instance computes both labels, then reads them again\n";
  for (auto& cache : caches) {
    bool first = cache->label("1") == widget_v1 && cache->label("2") == gadget_v1;
    bool again = cache->label("1") == widget_v1 && cache->label("2") == gadget_v1;
    check(first && again && cache->computations() == 2,
          cache->name() + ": right labels, computed once each, then served from the cache");
  }

  std::cout << "Instance B changes the price of product 1\n";
  stores[1]->set("product:1", json{{"name", "Widget"}, {"price_cents", 1200}});
  on_every_instance([](PriceLabelCache& c) { return !c.cached("1"); }, "product 1 evicted");
  for (auto& cache : caches) {
    check(cache->cached("2"), cache->name() + ": product 2 still cached");
    check(cache->label("1") == "Widget: $13.20 incl. 10% tax" && cache->computations() == 3,
          cache->name() + ": product 1 recomputed with the new price");
  }

  std::cout << "Instance C changes the tax rate\n";
  stores[2]->set(kTaxKey, 20);
  on_every_instance([](PriceLabelCache& c) { return c.size() == 0; }, "whole cache evicted");
  for (auto& cache : caches) {
    check(cache->label("2") == "Gadget: $30.00 incl. 20% tax",
          cache->name() + ": product 2 recomputed with the new tax");
  }

  std::cout << "Instance A deletes product 2\n";
  a.remove("product:2");
  on_every_instance([](PriceLabelCache& c) { return !c.cached("2"); }, "product 2 evicted");

  caches.clear();  // Unsubscribe before the stores go away.
  if (failures > 0) {
    std::cout << "FAILED: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "Every instance evicted exactly what each change made stale.\n";
  return 0;
} catch (const std::exception& e) {
  std::cout << "FAILED: " << e.what() << "\n";
  return 1;
}
