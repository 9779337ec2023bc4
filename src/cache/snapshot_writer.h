// Keeps a snapshot file up to date in the background.
//
// Owns one thread. Right after start, and then every `interval`, it calls version(); when the
// result differs from the version of the last file written (nothing written yet counts as
// different), it calls collect() and write_snapshot_file(path, ...). The version is taken before
// collect(), so a change racing the collection is written again next time, never missed.
//
// A failure (of version(), collect() or the write) is logged, the first one and then every 10th
// in a row, and retried at the next interval; nothing is thrown out of the thread. The messages
// hold the path and the error's text: write_snapshot_file's errors name files, never a
// connection string, and the callbacks must not throw errors holding secrets either.
//
// stop() (also run by the destructor) is idempotent and prompt: it wakes the thread, which
// writes one last time if the version changed since the last write, and joins it. A write in
// progress is finished, not interrupted.
//
// Thread safety: stop() and writes() may be called from any thread, concurrently. The callbacks
// run on the writer's thread only, one at a time; they must not call stop() (it would return
// without joining; the destructor then joins).
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "cache/snapshot_file.h"
#include "util/mutex.h"

namespace syncconfig::internal {

class SnapshotWriter {
 public:
  // A null `logger` means spdlog's default logger.
  SnapshotWriter(std::string path, std::chrono::milliseconds interval,
                 std::function<uint64_t()> version, std::function<SnapshotFileData()> collect,
                 std::shared_ptr<spdlog::logger> logger);
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  void stop();
  // Files written so far.
  uint64_t writes() const { return writes_.load(); }

 private:
  void run();
  // Writes if the version changed since the last write; logs a failure.
  void write_if_changed();
  // Logs the first failure in a row and every 10th.
  void note_failure(std::string_view what);

  const std::string path_;
  const std::chrono::milliseconds interval_;
  const std::function<uint64_t()> version_;
  const std::function<SnapshotFileData()> collect_;
  const std::shared_ptr<spdlog::logger> logger_;

  Mutex mu_;
  CondVar cv_;
  bool stopping_ SC_GUARDED_BY(mu_) = false;
  std::mutex join_mu_;  // Lets concurrent stop() calls all return after the join.

  // The writer thread's own state.
  std::optional<uint64_t> written_version_;
  uint64_t failures_in_a_row_ = 0;

  std::atomic<uint64_t> writes_{0};
  std::thread thread_;  // Last: started once everything above is ready.
};

}  // namespace syncconfig::internal
