// What Store and RemoteStore share around their Cache and Counters: the typed getters, Stats, and
// the snapshot file (opening stale from it, keeping it written). The two differ only in what feeds
// the cache (the table, or a server).
//
// Functions, no state of their own: thread safety is the Cache's and the Counters' (atomics).
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cache/cache.h"
#include "cache/snapshot_writer.h"
#include "sync/counters.h"
#include "syncconfig/config.h"

namespace syncconfig::internal {

// The typed getters of Config, on the cache's entries (no nlohmann::json for scalars).
std::string read_string(const Cache& cache, std::string_view key, std::string default_value);
int64_t read_int(const Cache& cache, std::string_view key, int64_t default_value);
double read_double(const Cache& cache, std::string_view key, double default_value);
bool read_bool(const Cache& cache, std::string_view key, bool default_value);

Stats read_stats(const Cache& cache, const Counters& counters);

// Fills the (empty) cache from the snapshot file at `path` of `source`, and marks the store
// stale (Counters::stale, stale_as_of_us). Throws Error(kInternal) saying why a file is refused
// (read_snapshot_file); nothing is loaded then. Returns the file's revision; `resume_id` (if
// given) gets the file's resume id (SnapshotFileData::resume_id).
int64_t open_stale_from_file(Cache& cache, Counters& counters, const std::string& path,
                             const std::string& source, std::string* resume_id = nullptr);

// A writer keeping `path` equal to the cache (see SnapshotWriter). While the store is stale,
// the file keeps the time of the file it came from: a stale cache is as old as that.
// `resume_id` (may be empty) is called on the writer thread before the cache is exported: its
// id must not name a revision above the cache's watermark from then on.
std::unique_ptr<SnapshotWriter> start_snapshot_writer(const Cache& cache, const Counters& counters,
                                                      std::string path,
                                                      std::chrono::milliseconds interval,
                                                      std::string source,
                                                      std::shared_ptr<spdlog::logger> logger,
                                                      std::function<std::string()> resume_id = {});

}  // namespace syncconfig::internal
