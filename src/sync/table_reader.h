// Reads the table into the cache: the full load (start-up, resync) and the incremental catch-up
// (after a reconnect, at each heartbeat). Each reads one REPEATABLE READ snapshot, so what it
// applies is the state after some commit, never a mix.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/cache.h"
#include "db/connection.h"
#include "db/table_sql.h"

namespace syncconfig::internal {

struct TableDigest {
  std::size_t count = 0;
  uint64_t md5_sum = 0;
};

// A deletion ('d'), lease expiry ('x'), truncation mark ('t') or key removed by a truncation
// ('T', at its mark's revision) from the change log.
struct Tombstone {
  int64_t revision = 0;
  std::string key;  // Empty for a truncation.
  char kind = 'd';
};

// What the table holds after a revision, read in one snapshot.
struct TableChanges {
  int64_t snapshot_revision = 0;
  // False when the table cannot say what changed after `since`: its revisions are below it (the
  // table was recreated) or the deletions needed were pruned (`compacted` > since). Nothing else
  // is filled in then.
  bool answerable = false;
  int64_t compacted = 0;              // The compaction mark: tombstones at or below it were pruned.
  std::vector<Row> rows;              // Rows with revision > since, in revision order.
  std::vector<Tombstone> tombstones;  // Deletions and truncations after since, in order.
  std::optional<TableDigest> digest;  // When requested.
  // When requested: the transaction of every logged change after `since` (revision -> txid),
  // so that a reader can tell where each transaction ends.
  std::unordered_map<int64_t, int64_t> txids;
};

// What a read of the changes after a revision returns besides them: the table's digest in the
// same snapshot (what a heartbeat compares), each logged change's transaction.
enum class WithDigest { kNo, kYes };
enum class WithTxids { kNo, kYes };

// Reads the rows and tombstones after `since` in one snapshot complete to its revision.
TableChanges read_changes_since(Connection& conn, const TableSql& sql, int64_t since,
                                WithDigest digest, Deadline deadline,
                                WithTxids txids = WithTxids::kNo);

struct ReadResult {
  int64_t snapshot_revision = 0;
  bool full = false;                  // A full reload was done (or needed and done).
  std::size_t changed = 0;            // Keys whose cached value changed.
  std::optional<TableDigest> digest;  // When requested: the table's digest in the snapshot.
  // The reload was a reset (ReplaceMode::kReset): the table's history is not the one the cache
  // followed, its revisions start over and watchers are told to reset.
  bool reset = false;
};

// The keys under a prefix as they were right after a past revision, read in one snapshot
// together with their current state (what a rollback is computed from).
struct PastState {
  int64_t snapshot_revision = 0;  // The current state is complete to it.
  int64_t compacted = 0;          // The log is complete above it.
  bool answerable = false;        // compacted <= revision <= snapshot_revision.
  // key -> (jsonb text, revision that wrote it); absent keys are not listed.
  std::map<std::string, std::pair<std::string, int64_t>> past;
  std::map<std::string, std::pair<std::string, int64_t>> current;  // When asked for.
};
PastState read_state_at(Connection& conn, const TableSql& sql, int64_t revision,
                        std::string_view prefix, bool with_current, Deadline deadline);

// The rows and tombstones of `read` (moved from) as one sequence of changes in revision order.
std::vector<CacheChange> merge_in_revision_order(TableChanges& read);

// Loads every row; replaces the cache's content by `mode` (kResync turns into kReset when the
// table's revisions are below the cache's watermark: the table was recreated).
ReadResult load_all(Connection& conn, const TableSql& sql, Cache& cache, ReplaceMode mode,
                    Deadline deadline);

// Applies everything committed after the cache's watermark. Falls back to load_all when the
// tombstones it would need were pruned or the table's revisions went backwards (recreated).
ReadResult catch_up(Connection& conn, const TableSql& sql, Cache& cache, WithDigest digest,
                    Deadline deadline);

// Whether the change log contradicts `anchors` (changes this instance applied): a record missing
// above the compaction mark, or another key, operation or value at an anchor's revision. Then the
// database's history diverged from the one this instance followed (a failover to a standby that
// lacked commits, which may hand out the same revisions again) and `why` says how. Anchors at or
// below the compaction mark cannot be checked and are skipped.
bool history_diverged(Connection& conn, const TableSql& sql, const std::vector<Anchor>& anchors,
                      Deadline deadline, std::string* why);

// A full reload that trusts only the table (ReplaceMode::kReset): entries newer than it are not
// kept, the watermark follows the table's revision, and watchers are told to reset.
ReadResult reload_reset(Connection& conn, const TableSql& sql, Cache& cache, Deadline deadline);

}  // namespace syncconfig::internal
