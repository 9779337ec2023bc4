// Multi-tenant configuration: one table per tenant (`tenant_acme_config`, `tenant_globex_config`)
// holding that tenant's overrides, and a `defaults` table shared by all. A lookup is "the
// tenant's value, else the default". Two application instances each open all three tables.
//
// Shows: overrides win over defaults; a change in acme never shows in globex (separate tables,
// separate channels); changing a default reaches every tenant that does not override it, live;
// removing an override falls back to the default.
//
// Usage: multi_tenant [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is started
// in a temporary directory. Exits 1 if a lookup gives the wrong value.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
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

const std::vector<std::string> kTenants = {"acme", "globex"};

// One application instance: a Store per table. Each table gets its own NOTIFY channel, so an
// instance is woken only for the tables it opened.
struct Instance {
  std::unique_ptr<syncconfig::Store> defaults;
  std::map<std::string, std::unique_ptr<syncconfig::Store>> tenants;

  explicit Instance(const std::string& dsn) {
    defaults = syncconfig::Store::open(dsn, options_for("defaults"));
    for (const auto& t : kTenants) {
      tenants[t] = syncconfig::Store::open(dsn, options_for("tenant_" + t + "_config"));
    }
  }
  static syncconfig::Options options_for(const std::string& table) {
    syncconfig::Options o;
    o.table_name = table;
    o.channel = table + "_changes";
    return o;
  }
  syncconfig::Store& tenant(const std::string& name) { return *tenants.at(name); }

  // The lookup helper: the tenant's override, else the default, else nullopt.
  std::optional<json> lookup(const std::string& tenant_name, const std::string& key) const {
    if (auto v = tenants.at(tenant_name)->get(key)) return v;
    return defaults->get(key);
  }
};

// Records every change one store reports (the callback runs on its dispatcher thread).
class ChangeLog {
 public:
  syncconfig::Callback callback() {
    return [this](const syncconfig::Change& c) {
      std::lock_guard lock(mu_);
      keys_.push_back(c.key);
    };
  }
  std::vector<std::string> keys() const {
    std::lock_guard lock(mu_);
    return keys_;
  }
  bool saw(const std::string& key) const {
    std::lock_guard lock(mu_);
    return std::find(keys_.begin(), keys_.end(), key) != keys_.end();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> keys_;
};

std::string show(const std::optional<json>& v) { return v ? v->dump() : "<none>"; }

}  // namespace

int main(int argc, char** argv) try {
  spdlog::set_level(spdlog::level::warn);
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  std::string dsn = dsn_for(argc, argv, embedded);

  // Declared before the instances: a subscriber's state must outlive the stores that call it.
  ChangeLog globex_changes;
  Instance one(dsn);  // two instances of the same multi-tenant application
  Instance two(dsn);
  // A clean slate when run against a database that already has the tables.
  std::vector<syncconfig::Store*> ones = {one.defaults.get(), &one.tenant("acme"),
                                          &one.tenant("globex")};
  std::vector<syncconfig::Store*> twos = {two.defaults.get(), &two.tenant("acme"),
                                          &two.tenant("globex")};
  for (auto* store : ones) {
    for (const auto& [key, value] : store->get_all()) store->remove(key);
  }

  std::cout << "Instance one writes the defaults and each tenant's overrides\n";
  one.defaults->set("max_users", 100);
  one.defaults->set("theme", "light");
  one.defaults->set("feature:sso", false);
  one.tenant("acme").set("max_users", 500);
  one.tenant("globex").set("theme", "dark");
  check(wait_for([&] {
          return two.defaults->size() == 3 && two.tenant("acme").size() == 1 &&
                 two.tenant("globex").size() == 1;
        }),
        "instance two has every table's rows");

  auto expect = [&](const std::string& tenant, const std::string& key, const json& want,
                    const std::string& why) {
    auto got = two.lookup(tenant, key);
    std::cout << "  two: " << tenant << "." << key << " = " << show(got) << "\n";
    check(got == want, why);
  };
  expect("acme", "max_users", 500, "acme's override wins");
  expect("acme", "theme", "light", "acme has no theme: the default");
  expect("globex", "max_users", 100, "globex has no max_users: the default");
  expect("globex", "theme", "dark", "globex's override wins");
  check(!two.lookup("acme", "no_such_key"), "a key in neither table is absent");

  two.tenant("globex").subscribe(globex_changes.callback());

  std::cout << "Instance one turns on SSO for acme only\n";
  one.tenant("acme").set("feature:sso", true);
  check(wait_for([&] { return two.lookup("acme", "feature:sso") == json(true); }),
        "instance two: acme has SSO");
  // Then a marker in globex: once two's globex subscriber has it, anything that was going to
  // reach that subscriber before it has arrived too, so "acme's change never arrived" means it.
  one.tenant("globex").set("marker", 1);
  check(wait_for([&] { return globex_changes.saw("marker"); }),
        "instance two: the globex marker reached globex's subscriber");
  expect("globex", "feature:sso", false, "globex is untouched by acme's change (isolation)");
  check(globex_changes.keys() == std::vector<std::string>{"marker"},
        "globex's subscriber saw only its own marker, nothing from acme");

  std::cout << "Instance one changes the default theme to blue\n";
  one.defaults->set("theme", "blue");
  check(wait_for([&] { return two.lookup("acme", "theme") == json("blue"); }),
        "instance two: acme follows the new default, live");
  expect("globex", "theme", "dark", "globex keeps its override");

  std::cout << "Instance one removes globex's theme override\n";
  one.tenant("globex").remove("theme");
  check(wait_for([&] { return two.lookup("globex", "theme") == json("blue"); }),
        "instance two: globex falls back to the default theme");

  std::cout << "Instance two overrides max_users for globex\n";
  two.tenant("globex").set("max_users", 250);
  check(wait_for([&] { return one.lookup("globex", "max_users") == json(250); }),
        "instance one: globex's new override");
  check(one.lookup("acme", "max_users") == json(500) && one.defaults->get_int("max_users") == 100,
        "instance one: acme and the default unchanged");

  const std::vector<std::string> tables = {"defaults", "tenant_acme_config",
                                           "tenant_globex_config"};
  for (std::size_t i = 0; i < ones.size(); ++i) {
    check(wait_for([&] { return ones[i]->get_crc() == twos[i]->get_crc(); }),
          tables[i] + ": both instances hold the same data (equal CRCs)");
  }

  if (failures > 0) {
    std::cout << "FAILED: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "Tenants stayed isolated; defaults and overrides applied live.\n";
  return 0;
} catch (const std::exception& e) {
  std::cout << "FAILED: " << e.what() << "\n";
  return 1;
}
