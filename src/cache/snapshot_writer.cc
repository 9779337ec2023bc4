#include "cache/snapshot_writer.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace syncconfig::internal {

SnapshotWriter::SnapshotWriter(std::string path, std::chrono::milliseconds interval,
                               std::function<uint64_t()> version,
                               std::function<SnapshotFileData()> collect,
                               std::shared_ptr<spdlog::logger> logger)
    : path_(std::move(path)),
      interval_(interval),
      version_(std::move(version)),
      collect_(std::move(collect)),
      logger_(logger ? std::move(logger) : spdlog::default_logger()),
      thread_([this] { run(); }) {}

SnapshotWriter::~SnapshotWriter() {
  stop();
  // Only when a callback stopped its own writer (stop() did not join then).
  if (thread_.joinable()) thread_.join();
}

void SnapshotWriter::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (std::this_thread::get_id() == thread_.get_id()) return;
  std::lock_guard join_lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

void SnapshotWriter::run() {
  write_if_changed();
  for (;;) {
    bool stopping;
    {
      MutexLock lock(mu_);
      const auto until = std::chrono::steady_clock::now() + interval_;
      while (!stopping_ && cv_.wait_until(lock, until)) {
      }
      stopping = stopping_;
    }
    // Not under mu_, so that stop() never waits for a write to set the flag. A stop() during
    // this write is seen by the next wait, which then returns at once for the final write.
    write_if_changed();
    if (stopping) return;
  }
}

void SnapshotWriter::write_if_changed() {
  try {
    const uint64_t version = version_();
    if (written_version_ == version) return;
    SnapshotFileData data = collect_();
    write_snapshot_file(path_, data);
    written_version_ = version;
    writes_.fetch_add(1);
    if (failures_in_a_row_ > 0) {
      logger_->info("syncconfig: snapshot {} written again after {} failures", path_,
                    failures_in_a_row_);
      failures_in_a_row_ = 0;
    }
  } catch (const std::exception& e) {
    note_failure(e.what());
  } catch (...) {
    note_failure("unknown exception");
  }
}

void SnapshotWriter::note_failure(std::string_view what) {
  ++failures_in_a_row_;
  if (failures_in_a_row_ == 1 || failures_in_a_row_ % 10 == 0) {
    logger_->error("syncconfig: snapshot {} not written ({} failures in a row): {}", path_,
                   failures_in_a_row_, what);
  }
}

}  // namespace syncconfig::internal
