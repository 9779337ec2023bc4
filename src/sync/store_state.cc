#include "sync/store_state.h"

#include <utility>
#include <vector>

#include "cache/conversions.h"
#include "cache/snapshot_file.h"

namespace syncconfig::internal {

std::string read_string(const Cache& cache, std::string_view key, std::string default_value) {
  cache.read(key, [&](const Entry& v) {
    if (auto s = to_string_value(v)) default_value = std::move(*s);
  });
  return default_value;
}

int64_t read_int(const Cache& cache, std::string_view key, int64_t default_value) {
  cache.read(key, [&](const Entry& v) {
    if (auto i = to_int(v)) default_value = *i;
  });
  return default_value;
}

double read_double(const Cache& cache, std::string_view key, double default_value) {
  cache.read(key, [&](const Entry& v) {
    if (auto d = to_double(v)) default_value = *d;
  });
  return default_value;
}

bool read_bool(const Cache& cache, std::string_view key, bool default_value) {
  cache.read(key, [&](const Entry& v) {
    if (auto b = to_bool(v)) default_value = *b;
  });
  return default_value;
}

Stats read_stats(const Cache& cache, const Counters& counters) {
  Stats s;
  CacheDigest d = cache.digest();
  s.keys = d.count;
  s.crc = d.crc;
  s.revision = cache.watermark();
  s.applied_revision = d.max_revision;
  s.connected = counters.connected.load();
  s.writes = counters.writes.load();
  s.deletes = counters.deletes.load();
  s.notifications_applied = counters.notifications_applied.load();
  s.notifications_ignored = counters.notifications_ignored.load();
  s.notifications_forged = counters.notifications_forged.load();
  s.notifications_signed = counters.notifications_signed.load();
  s.resyncs = counters.resyncs.load();
  s.catch_ups = counters.catch_ups.load();
  s.crc_mismatches = counters.crc_mismatches.load();
  s.reconnects = counters.reconnects.load();
  s.history_resets = counters.history_resets.load();
  s.callback_errors = counters.callback_errors.load();
  s.callback_queue_depth = counters.callback_queue_depth.load();
  s.callback_queue_peak = counters.callback_queue_peak.load();
  s.stale = counters.stale.load();
  if (s.stale) {
    s.stale_as_of = std::chrono::system_clock::time_point(
        std::chrono::microseconds(counters.stale_as_of_us.load()));
  }
  return s;
}

int64_t open_stale_from_file(Cache& cache, Counters& counters, const std::string& path,
                             const std::string& source, std::string* resume_id) {
  SnapshotFileData data = read_snapshot_file(path, source);
  if (resume_id != nullptr) *resume_id = data.resume_id;
  std::vector<Row> rows;
  rows.reserve(data.entries.size());
  for (auto& [key, text] : data.entries) {
    if (auto v = parse_value(key, text)) rows.push_back(Row{std::move(*v), data.revision});
  }
  cache.replace_all(std::move(rows), data.revision, ReplaceMode::kInitial);
  cache.note_applied(data.newest_revision);  // Its rows carry the file's revision only.
  cache.restore_anchors(data.anchors);       // Checked on the first connection (SyncWorker).
  counters.stale_as_of_us.store(
      std::chrono::duration_cast<std::chrono::microseconds>(data.written_at.time_since_epoch())
          .count());
  counters.stale.store(true);
  return data.revision;
}

std::unique_ptr<SnapshotWriter> start_snapshot_writer(const Cache& cache, const Counters& counters,
                                                      std::string path,
                                                      std::chrono::milliseconds interval,
                                                      std::string source,
                                                      std::shared_ptr<spdlog::logger> logger,
                                                      std::function<std::string()> resume_id) {
  return std::make_unique<SnapshotWriter>(
      std::move(path), interval, [&cache] { return cache.content_version(); },
      [&cache, &counters, source = std::move(source), resume_id = std::move(resume_id)] {
        std::string id = resume_id ? resume_id() : std::string();  // Before: see the header.
        SnapshotFileData data = cache.export_snapshot();
        data.source = source;
        data.resume_id = std::move(id);
        if (counters.stale.load()) {
          data.written_at = std::chrono::system_clock::time_point(
              std::chrono::microseconds(counters.stale_as_of_us.load()));
        }
        return data;
      },
      std::move(logger));
}

}  // namespace syncconfig::internal
