// SyncMap<T>: a typed view over the keys of one store (a Store or a RemoteStore: any Config) that
// start with a prefix.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "syncconfig/config.h"

namespace syncconfig {

// A typed view over the keys of a store that start with `prefix`, e.g. SyncMap<bool> over
// "feature:" sees the key "feature:new_ui" under the name "new_ui". Every name passed to or
// returned by a SyncMap is WITHOUT the prefix. Reads come from the store's cache; writes are the
// store's writes (so they sync to every instance of the table like any other).
//
// Conversion rule (reads; never throws, a value that does not convert reads as absent):
//   - bool:            a JSON true/false only ("true", 1 are not converted).
//   - integral T:      a JSON integer, or a float with an integral value (42.0), that fits T.
//                      Not 42.5, not true, not "42", not 300 for int8_t.
//   - floating T:      any JSON number.
//   - any other T:     whatever nlohmann::json::get<T>() accepts without throwing (std::string
//                      needs a JSON string; user types use their from_json).
// Writes convert with nlohmann's to_json; the store's write errors (bad key, NaN, too large,
// database unreachable ...) propagate as syncconfig::Error.
//
// Threads: like the store, a SyncMap is safe for concurrent use from any number of threads.
// Subscribed callbacks run on the store's dispatcher thread with the store's guarantees (one at
// a time, per key in commit order, never under a lock; after unsubscribe returns, not called
// again). A callback may use the SyncMap and the store, but must not destroy the SyncMap.
//
// Lifetime: the store must outlive the SyncMap. The destructor unsubscribes every callback
// registered through this SyncMap. Several SyncMaps (with any prefixes) may share one store.
template <class T>
class SyncMap {
 public:
  using Value = T;
  using ChangeCallback =
      std::function<void(const std::string& name, const std::optional<T>& value)>;

  SyncMap(Config& store, std::string prefix) : store_(store), prefix_(std::move(prefix)) {}

  ~SyncMap() {
    std::set<SubscriptionId> ids;
    {
      std::lock_guard lock(mu_);
      ids.swap(ids_);
    }
    for (SubscriptionId id : ids) store_.unsubscribe(id);
  }

  SyncMap(const SyncMap&) = delete;
  SyncMap& operator=(const SyncMap&) = delete;
  SyncMap(SyncMap&&) = delete;
  SyncMap& operator=(SyncMap&&) = delete;

  const std::string& prefix() const { return prefix_; }

  // The value of `prefix + name`; nullopt when absent or not convertible.
  std::optional<T> get(std::string_view name) const { return convert(store_.get(key(name))); }

  T get_or(std::string_view name, T default_value) const {
    std::optional<T> value = get(name);
    return value ? std::move(*value) : std::move(default_value);
  }

  // Writes `prefix + name`; waits for the commit like Config::set.
  void set(std::string_view name, const T& value) { store_.set(key(name), nlohmann::json(value)); }

  // Deletes `prefix + name`; whether it existed in the table.
  bool remove(std::string_view name) { return store_.remove(key(name)); }

  // Names of every key under the prefix (convertible or not), sorted.
  std::vector<std::string> keys() const {
    std::vector<std::string> names;
    for (const auto& [k, v] : store_.get_all(prefix_)) names.push_back(k.substr(prefix_.size()));
    return names;
  }

  // Every entry under the prefix whose value converts, by name.
  std::map<std::string, T> all() const {
    std::map<std::string, T> out;
    for (auto& [k, v] : store_.get_all(prefix_)) {
      if (std::optional<T> value = convert(std::move(v))) {
        out.emplace_hint(out.end(), k.substr(prefix_.size()), std::move(*value));
      }
    }
    return out;
  }

  // Calls `callback(name, value)` for every change of a key under the prefix (and only those);
  // value is nullopt when the key was deleted or its new value does not convert.
  SubscriptionId subscribe(ChangeCallback callback) {
    // Captures copies, not `this`: a call already running when the SyncMap goes away is safe.
    SubscriptionId id =
        store_.subscribe([prefix = prefix_, callback = std::move(callback)](const Change& c) {
          if (c.key.size() < prefix.size() || c.key.compare(0, prefix.size(), prefix) != 0) {
            return;
          }
          callback(c.key.substr(prefix.size()), convert(c.value));
        });
    std::lock_guard lock(mu_);
    ids_.insert(id);
    return id;
  }

  // Removes a callback registered through this SyncMap; other ids are ignored.
  void unsubscribe(SubscriptionId id) {
    {
      std::lock_guard lock(mu_);
      if (ids_.erase(id) == 0) return;
    }
    store_.unsubscribe(id);
  }

  // The conversion rule above, applied to one JSON value.
  static std::optional<T> convert(const std::optional<nlohmann::json>& value) {
    if (!value) return std::nullopt;
    const nlohmann::json& j = *value;
    if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) return std::nullopt;
      return j.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (j.is_number_unsigned()) {
        auto u = j.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
        return static_cast<T>(u);
      }
      if (j.is_number_integer()) {
        auto i = j.get<int64_t>();
        if (!std::in_range<T>(i)) return std::nullopt;
        return static_cast<T>(i);
      }
      if (j.is_number_float()) {
        double d = j.get<double>();
        // T holds exactly the integers in [lo, 2^digits): both bounds are exact doubles.
        if (!std::isfinite(d) || d != std::trunc(d)) return std::nullopt;
        const double hi_exclusive = std::ldexp(1.0, std::numeric_limits<T>::digits);
        const double lo = std::is_signed_v<T> ? -hi_exclusive : 0.0;
        if (d < lo || d >= hi_exclusive) return std::nullopt;
        return static_cast<T>(d);
      }
      return std::nullopt;
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!j.is_number()) return std::nullopt;
      return j.get<T>();
    } else {
      try {
        return j.get<T>();
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }

 private:
  std::string key(std::string_view name) const {
    std::string k;
    k.reserve(prefix_.size() + name.size());
    k.append(prefix_).append(name);
    return k;
  }

  Config& store_;
  const std::string prefix_;
  mutable std::mutex mu_;
  std::set<SubscriptionId> ids_;  // Subscriptions registered through this map, still active.
};

}  // namespace syncconfig
