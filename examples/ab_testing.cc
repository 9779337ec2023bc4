// A/B testing with live weights: `ab:checkout` holds the variant weights as a JSON object,
// {"control": 50, "new_checkout": 50}. Users are assigned by a stable hash (FNV-1a of
// "<experiment>:<user id>", modulo the total weight) walked through the variants in name order,
// so every instance assigns a user the same variant without sharing any state but the weights,
// and a user keeps their variant while the weights are unchanged. Changing the weights on
// instance A re-routes traffic on instance B at once.
//
// Usage: ab_testing [DSN]   (or SYNCCONFIG_DSN). Without one, an embedded PostgreSQL is started
// in a temporary directory. Exits 1 if the split or the stickiness is wrong.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "example_support.h"
#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

using namespace std::chrono_literals;
using nlohmann::json;

using namespace example;

namespace {

// 64-bit FNV-1a.
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

using Weights = std::map<std::string, int64_t>;  // variant -> weight, in name order

// Assigns users to the variants of the experiments stored under "ab:<experiment>".
class Experiments {
 public:
  static constexpr const char* kFallback = "control";

  explicit Experiments(syncconfig::Store& store) : weights_(store, "ab:") {}

  // The variant of `user` in `experiment`. Weights that are missing, malformed (not an object of
  // integers), negative or all zero give the fallback variant.
  std::string assign(const std::string& experiment, const std::string& user) const {
    std::optional<Weights> weights = weights_.get(experiment);
    if (!weights) return kFallback;
    int64_t total = 0;
    for (const auto& [variant, w] : *weights) {
      if (w < 0) return kFallback;
      total += w;
    }
    if (total <= 0) return kFallback;
    auto bucket =
        static_cast<int64_t>(fnv1a(experiment + ":" + user) % static_cast<uint64_t>(total));
    for (const auto& [variant, w] : *weights) {
      if (bucket < w) return variant;
      bucket -= w;
    }
    return kFallback;  // Not reached.
  }

  void set_weights(const std::string& experiment, const Weights& weights) {
    weights_.set(experiment, weights);
  }
  std::optional<Weights> weights(const std::string& experiment) const {
    return weights_.get(experiment);
  }

 private:
  syncconfig::SyncMap<Weights> weights_;
};

constexpr int kUsers = 10000;
std::string user_id(int i) { return "user-" + std::to_string(i); }

// How many of kUsers `experiments` assigns to each variant.
std::map<std::string, int> split(const Experiments& experiments) {
  std::map<std::string, int> counts;
  for (int i = 0; i < kUsers; ++i) ++counts[experiments.assign("checkout", user_id(i))];
  return counts;
}

void print_split(const char* who, const std::map<std::string, int>& counts) {
  std::cout << "  " << who << " assigns " << kUsers << " users:";
  for (const auto& [variant, n] : counts) std::cout << " " << variant << "=" << n;
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) try {
  spdlog::set_level(spdlog::level::warn);
  std::optional<syncconfig::EmbeddedPostgres> embedded;
  std::string dsn = dsn_for(argc, argv, embedded);

  syncconfig::Options options;
  options.table_name = "example_experiments";
  options.channel = "example_experiments_changes";
  auto store_a = syncconfig::Store::open(dsn, options);
  auto store_b = syncconfig::Store::open(dsn, options);
  Experiments a(*store_a);  // the experiment dashboard's instance
  Experiments b(*store_b);  // a checkout server

  const Weights half = {{"control", 50}, {"new_checkout", 50}};
  const Weights all_new = {{"control", 0}, {"new_checkout", 100}};

  std::cout << "A sets ab:checkout = " << json(half).dump() << "\n";
  a.set_weights("checkout", half);
  check(wait_for([&] { return b.weights("checkout") == half; }), "B has the weights");
  auto counts_b = split(b);
  print_split("B", counts_b);
  double share = 100.0 * counts_b["new_checkout"] / kUsers;
  check(share >= 45.0 && share <= 55.0 && counts_b["control"] + counts_b["new_checkout"] == kUsers,
        "the 50/50 split is within 45-55% (new_checkout: " + std::to_string(share) + "%)");

  bool sticky = true;
  bool instances_agree = true;
  for (int i = 0; i < kUsers; ++i) {
    std::string first = b.assign("checkout", user_id(i));
    sticky = sticky && b.assign("checkout", user_id(i)) == first;
    instances_agree = instances_agree && a.assign("checkout", user_id(i)) == first;
  }
  std::cout << "  user-42 gets " << b.assign("checkout", "user-42") << " on B, and again "
            << b.assign("checkout", "user-42") << "; on A " << a.assign("checkout", "user-42")
            << "\n";
  check(sticky, "every user gets the same variant twice under unchanged weights");
  check(instances_agree, "A and B assign every user the same variant (no shared state needed)");

  std::cout << "A changes ab:checkout to " << json(all_new).dump() << "\n";
  a.set_weights("checkout", all_new);
  check(wait_for([&] { return b.weights("checkout") == all_new; }), "B has the new weights");
  counts_b = split(b);
  print_split("B", counts_b);
  check(counts_b["new_checkout"] == kUsers, "B assigns everyone to new_checkout");

  std::cout << "Someone writes malformed weights: {\"control\": \"lots\"}\n";
  store_a->set("ab:checkout", json{{"control", "lots"}});
  check(wait_for([&] {
          return store_b->get("ab:checkout") == json{{"control", "lots"}};
        }),
        "B has the malformed value");
  counts_b = split(b);
  print_split("B", counts_b);
  check(counts_b["control"] == kUsers, "malformed weights send everyone to control, no crash");

  if (failures > 0) {
    std::cout << "FAILED: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "B followed A's weights live; assignment stayed sticky and consistent.\n";
  return 0;
} catch (const std::exception& e) {
  std::cout << "FAILED: " << e.what() << "\n";
  return 1;
}
