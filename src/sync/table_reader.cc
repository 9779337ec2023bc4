#include "sync/table_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <future>
#include <iterator>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace syncconfig::internal {
namespace {

// A REPEATABLE READ snapshot together with the revision it is complete to. The writer lock is
// held only while the snapshot is taken: no write is in flight then, so every revision drawn so
// far is either visible in the snapshot or aborted, and every later write gets a higher one.
// Rolls back on every path; a failed ROLLBACK means the connection is gone (and with it the
// session lock) and will be replaced anyway.
//
// TRUNCATE is not MVCC-safe: a snapshot fixed before a TRUNCATE commits reads the table as empty
// afterwards, and a reload would report every key deleted. So the snapshot also holds the table
// in ACCESS SHARE mode, taken before the snapshot is fixed: a TRUNCATE then waits for this read.
// NOWAIT, because a TRUNCATE that already holds the table is waiting for our writer lock: waiting
// for it would deadlock. Then we let go of everything and try again shortly.
class Snapshot {
 public:
  Snapshot(Connection& conn, const TableSql& sql, Deadline deadline)
      : conn_(conn), deadline_(deadline) {
    for (auto pause = std::chrono::milliseconds(1);; pause = std::min(pause * 2, kMaxPause)) {
      if (try_take(sql)) return;
      if (Clock::now() + pause >= deadline_) {
        throw Error(ErrorCode::kTimeout,
                    fmt::format("reading {}: the table stayed locked (TRUNCATE, ALTER TABLE or "
                                "another ACCESS EXCLUSIVE lock) until the deadline",
                                sql.qualified_table));
      }
      std::this_thread::sleep_for(pause);
    }
  }
  ~Snapshot() {
    if (open_ && conn_.ok()) {
      try {
        conn_.exec_script("ROLLBACK", deadline_);
      } catch (const Error&) {
      }
    }
  }
  int64_t revision() const { return revision_; }
  void commit() {
    conn_.exec_script("COMMIT", deadline_);
    open_ = false;
  }

 private:
  static constexpr std::chrono::milliseconds kMaxPause{20};

  // One attempt; false if the table was locked (nothing is held then).
  bool try_take(const TableSql& sql) {
    if (conn_.per_transaction()) return try_take_in_transaction(sql);
    conn_.exec(sql.snapshot_lock, {}, deadline_);
    try {
      conn_.exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", deadline_);
      open_ = true;
      if (!lock_table_or_roll_back(sql)) {
        release(sql);
        return false;
      }
      // The first statement that reads fixes the snapshot.
      revision_ = conn_.exec(sql.snapshot_revision, {}, deadline_).int64(0, 0);
    } catch (...) {
      release(sql);
      throw;
    }
    release(sql);
    return true;
  }
  // Behind a pooler (Connection::per_transaction) a session lock could be taken on one server
  // session and released on another, and stay held for good. There the writer lock is a
  // transaction lock held until the read commits: no write commits meanwhile, so the read's
  // READ COMMITTED statements all see the state at `revision`. (A REPEATABLE READ snapshot would
  // be fixed by the lock's own statement, before the lock is granted.) Writers wait for the
  // read; pruning does not (read_changes_since and read_state_at check the compaction mark again
  // at the end).
  bool try_take_in_transaction(const TableSql& sql) {
    conn_.exec_script("BEGIN READ ONLY", deadline_);
    open_ = true;
    try {
      conn_.exec(sql.snapshot_xact_lock, {}, deadline_);
      if (!lock_table_or_roll_back(sql)) return false;
      revision_ = conn_.exec(sql.snapshot_revision, {}, deadline_).int64(0, 0);
    } catch (...) {
      if (open_ && conn_.ok()) {
        try {
          conn_.exec_script("ROLLBACK", deadline_);
        } catch (const Error&) {
        }
      }
      open_ = false;
      throw;
    }
    return true;
  }
  // Takes the table in ACCESS SHARE mode (NOWAIT) inside the open transaction. If it is locked,
  // rolls the transaction back and returns false; any other error propagates.
  bool lock_table_or_roll_back(const TableSql& sql) {
    try {
      conn_.exec(sql.lock_table_for_read, {}, deadline_);
      return true;
    } catch (const Error& e) {
      // lock_not_available (55P03) is the only kUnavailable error that leaves the link up.
      if (e.code() != ErrorCode::kUnavailable || !conn_.ok()) throw;
    }
    conn_.exec_script("ROLLBACK", deadline_);
    open_ = false;
    return false;
  }
  void release(const TableSql& sql) {
    if (conn_.ok()) conn_.exec(sql.snapshot_unlock, {}, deadline_);
  }
  Connection& conn_;
  Deadline deadline_;
  bool open_ = false;
  int64_t revision_ = 0;
};

// Builds the cache entries of a result (a catch-up's). Hashing (MD5 + CRC32) is most of the
// work, so a large result is split over two threads (a PGresult may be read concurrently).
std::vector<Row> parse_rows(const Result& r) {
  constexpr int kParallelRows = 20000;
  const int n = r.rows();
  std::vector<Row> rows(static_cast<std::size_t>(n));
  auto build = [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      auto value = parse_value(r.text(i, 0), r.text(i, 1));
      if (value) rows[i] = Row{std::move(*value), r.int64(i, 2)};
    }
  };
  if (n >= kParallelRows && std::thread::hardware_concurrency() > 1) {
    std::exception_ptr failed;
    {
      std::jthread second_half([&] {
        try {
          build(n / 2, n);
        } catch (...) {
          failed = std::current_exception();
        }
      });
      build(0, n / 2);
    }
    if (failed) std::rethrow_exception(failed);
  } else {
    build(0, n);
  }
  // PostgreSQL's jsonb text is always JSON; drop anything that was not.
  std::erase_if(rows, [](const Row& row) { return !row.value.entry; });
  return rows;
}

// Rows per batch of a full load handed to another thread: small enough that making one batch
// into entries overlaps the server sending the next, large enough that the hand-over is noise.
constexpr std::size_t kLoadBatchRows = 16384;

// Rows copied out of single-row results, to be made into entries on another thread.
struct RowBatch {
  std::string bytes;                                          // key and value text, back to back
  std::vector<std::tuple<uint32_t, uint32_t, int64_t>> rows;  // key size, value size, revision
};

std::vector<Row> make_rows(const RowBatch& batch) {
  std::vector<Row> rows;
  rows.reserve(batch.rows.size());
  std::string_view bytes = batch.bytes;
  for (const auto& [key_size, value_size, revision] : batch.rows) {
    std::string_view key = bytes.substr(0, key_size);
    std::string_view text = bytes.substr(key_size, value_size);
    bytes.remove_prefix(key_size + value_size);
    // PostgreSQL's jsonb text is always JSON; anything else is dropped.
    if (auto value = parse_value(key, text)) rows.push_back(Row{std::move(*value), revision});
  }
  return rows;
}

// Every row of the open snapshot, as cache entries. The rows are streamed (single-row mode) and
// made into entries, hashing included, in batches on other threads while the server is still
// sending: a start-up costs little more than the transfer, instead of the transfer followed by
// the hashing.
std::vector<Row> read_all_rows(Connection& conn, const TableSql& sql, Deadline deadline) {
  const std::size_t max_in_flight = std::max(2u, std::thread::hardware_concurrency());
  // Futures wait for their task when destroyed, so no task outlives this frame.
  std::deque<std::future<std::vector<Row>>> in_flight;
  std::vector<Row> rows;
  auto collect_oldest = [&] {
    std::vector<Row> made = in_flight.front().get();
    in_flight.pop_front();
    if (rows.empty()) {
      rows = std::move(made);
    } else {
      rows.insert(rows.end(), std::make_move_iterator(made.begin()),
                  std::make_move_iterator(made.end()));
    }
  };
  RowBatch batch;
  auto dispatch = [&] {
    if (in_flight.size() >= max_in_flight) collect_oldest();
    in_flight.push_back(
        std::async(std::launch::async, [b = std::move(batch)] { return make_rows(b); }));
    batch = RowBatch{};
  };
  conn.exec_rows(sql.select_all, deadline, [&](const Result& r) {
    std::string_view key = r.text(0, 0), text = r.text(0, 1);
    batch.bytes.append(key).append(text);
    batch.rows.emplace_back(key.size(), text.size(), r.int64(0, 2));
    if (batch.rows.size() == kLoadBatchRows) dispatch();
  });
  if (!batch.rows.empty()) dispatch();
  while (!in_flight.empty()) collect_oldest();
  return rows;
}

}  // namespace

ReadResult load_all(Connection& conn, const TableSql& sql, Cache& cache, ReplaceMode mode,
                    Deadline deadline) {
  Snapshot tx(conn, sql, deadline);
  ReadResult out;
  out.full = true;
  out.snapshot_revision = tx.revision();
  // Revisions below what the cache has seen complete: the table was recreated. Only the
  // snapshot can be trusted then (a forced sync() finds this as well as a catch-up).
  if (mode == ReplaceMode::kResync && out.snapshot_revision < cache.watermark()) {
    mode = ReplaceMode::kReset;
  }
  std::vector<Row> rows = read_all_rows(conn, sql, deadline);
  tx.commit();
  out.reset = mode == ReplaceMode::kReset;
  out.changed = cache.replace_all(std::move(rows), out.snapshot_revision, mode);
  return out;
}

TableChanges read_changes_since(Connection& conn, const TableSql& sql, int64_t since,
                                WithDigest digest, Deadline deadline, WithTxids txids) {
  TableChanges out;
  Snapshot tx(conn, sql, deadline);
  out.snapshot_revision = tx.revision();
  out.compacted = conn.exec(sql.compacted, {}, deadline).int64(0, 0);
  if (out.snapshot_revision < since || out.compacted > since) return out;
  out.answerable = true;
  const std::string after = std::to_string(since);
  out.rows = parse_rows(conn.exec(sql.select_since, {after}, deadline));
  Result t = conn.exec(sql.tombstones_since, {after}, deadline);
  for (int i = 0; i < t.rows(); ++i) {
    out.tombstones.push_back({t.int64(i, 0), std::string(t.text(i, 1)), t.text(i, 2)[0]});
  }
  if (txids == WithTxids::kYes) {
    Result x = conn.exec(sql.txids_since, {after}, deadline);
    for (int i = 0; i < x.rows(); ++i) out.txids.emplace(x.int64(i, 0), x.int64(i, 1));
  }
  if (digest == WithDigest::kYes) {
    Result d = conn.exec(sql.table_digest, {}, deadline);
    out.digest = TableDigest{static_cast<std::size_t>(d.int64(0, 0)),
                             std::stoull(std::string(d.text(0, 1)))};
  }
  if (conn.per_transaction()) {
    // READ COMMITTED: a pruning that committed meanwhile may have removed some of the records.
    const int64_t compacted = conn.exec(sql.compacted, {}, deadline).int64(0, 0);
    if (compacted > since) {
      TableChanges pruned;
      pruned.snapshot_revision = out.snapshot_revision;
      pruned.compacted = compacted;
      tx.commit();
      return pruned;
    }
  }
  tx.commit();
  std::sort(out.rows.begin(), out.rows.end(),
            [](const Row& a, const Row& b) { return a.revision < b.revision; });
  return out;
}

PastState read_state_at(Connection& conn, const TableSql& sql, int64_t revision,
                        std::string_view prefix, bool with_current, Deadline deadline) {
  PastState out;
  Snapshot tx(conn, sql, deadline);
  out.snapshot_revision = tx.revision();
  out.compacted = conn.exec(sql.compacted, {}, deadline).int64(0, 0);
  if (revision < out.compacted || revision > out.snapshot_revision) return out;
  out.answerable = true;
  const std::string at = std::to_string(revision);
  Result past = conn.exec(sql.state_at, {at, prefix}, deadline);
  for (int i = 0; i < past.rows(); ++i) {
    out.past.emplace(std::string(past.text(i, 0)),
                     std::make_pair(std::string(past.text(i, 1)), past.int64(i, 2)));
  }
  if (with_current) {
    // state_at after the newest revision is the current state.
    Result now = conn.exec(sql.state_at, {std::to_string(out.snapshot_revision), prefix}, deadline);
    for (int i = 0; i < now.rows(); ++i) {
      out.current.emplace(std::string(now.text(i, 0)),
                          std::make_pair(std::string(now.text(i, 1)), now.int64(i, 2)));
    }
  }
  if (conn.per_transaction()) {
    // READ COMMITTED: a pruning that committed meanwhile may have removed some of the records.
    const int64_t compacted = conn.exec(sql.compacted, {}, deadline).int64(0, 0);
    if (revision < compacted) {
      PastState pruned;
      pruned.snapshot_revision = out.snapshot_revision;
      pruned.compacted = compacted;
      tx.commit();
      return pruned;
    }
  }
  tx.commit();
  return out;
}

std::vector<CacheChange> merge_in_revision_order(TableChanges& read) {
  std::vector<CacheChange> out;
  out.reserve(read.rows.size() + read.tombstones.size());
  std::vector<Row>& rows = read.rows;
  const std::vector<Tombstone>& tombstones = read.tombstones;
  std::size_t ri = 0, ti = 0;
  while (ri < rows.size() || ti < tombstones.size()) {
    bool take_row = ti == tombstones.size() ||
                    (ri < rows.size() && rows[ri].revision < tombstones[ti].revision);
    CacheChange c;
    if (take_row) {
      Row& row = rows[ri++];
      c.kind = CacheChange::Kind::kUpsert;
      c.value = std::move(row.value);
      c.revision = row.revision;
    } else {
      const Tombstone& tomb = tombstones[ti++];
      // A key a TRUNCATE removed: its mark (the same revision, next) removes it.
      if (tomb.kind == 'T') continue;
      c.kind = tomb.kind == 't' ? CacheChange::Kind::kTruncate : CacheChange::Kind::kRemove;
      c.key = tomb.key;
      c.revision = tomb.revision;
      c.expired = tomb.kind == 'x';
    }
    out.push_back(std::move(c));
  }
  return out;
}

ReadResult reload_reset(Connection& conn, const TableSql& sql, Cache& cache, Deadline deadline) {
  return load_all(conn, sql, cache, ReplaceMode::kReset, deadline);
}

bool history_diverged(Connection& conn, const TableSql& sql, const std::vector<Anchor>& anchors,
                      Deadline deadline, std::string* why) {
  if (anchors.empty()) return false;
  std::string revisions = "{";
  for (const Anchor& a : anchors) {
    if (revisions.size() > 1) revisions += ',';
    revisions += std::to_string(a.revision);
  }
  revisions += '}';
  // One snapshot: the compaction mark and the records agree.
  Snapshot tx(conn, sql, deadline);
  const int64_t compacted = conn.exec(sql.compacted, {}, deadline).int64(0, 0);
  Result r = conn.exec(sql.changes_at, {revisions}, deadline);
  tx.commit();
  std::unordered_map<int64_t, int> row_of;
  for (int i = 0; i < r.rows(); ++i) row_of.emplace(r.int64(i, 0), i);
  for (const Anchor& a : anchors) {
    if (a.revision <= compacted) continue;
    auto it = row_of.find(a.revision);
    const int i = it == row_of.end() ? -1 : it->second;
    if (i < 0 || r.is_null(i, 1)) {
      *why = fmt::format("revision {} ({} of '{}') is not in its change log", a.revision,
                         a.deleted ? "deletion" : "write", a.key);
      return true;
    }
    const std::string_view op = r.text(i, 2);
    const bool deleted = op == "delete" || op == "expire" || op == "truncate";
    const bool same = r.text(i, 1) == a.key && deleted == a.deleted &&
                      (deleted || (op == "set" && !r.is_null(i, 3) &&
                                   static_cast<uint32_t>(r.int64(i, 3)) == a.md5));
    if (!same) {
      *why = fmt::format(
          "revision {} names another change there ({} of '{}', not the {} of '{}' "
          "applied here)",
          a.revision, op, r.text(i, 1), a.deleted ? "deletion" : "write", a.key);
      return true;
    }
  }
  return false;
}

ReadResult catch_up(Connection& conn, const TableSql& sql, Cache& cache, WithDigest digest,
                    Deadline deadline) {
  const int64_t watermark = cache.watermark();
  TableChanges read = read_changes_since(conn, sql, watermark, digest, deadline);
  if (!read.answerable) {
    // Revisions went backwards (the table was recreated) or deletions we would need were
    // pruned: only a full reload is exact. Compared against a fresh reload there is nothing to
    // learn from a digest.
    return load_all(conn, sql, cache,
                    read.snapshot_revision < watermark ? ReplaceMode::kReset : ReplaceMode::kResync,
                    deadline);
  }
  ReadResult out;
  out.snapshot_revision = read.snapshot_revision;
  out.digest = read.digest;
  // Apply in revision order (a row and a tombstone of the same key resolve as they committed),
  // as one unit: the snapshot is a commit boundary, so no reader sees part of a transaction.
  std::vector<CacheChange> changes = merge_in_revision_order(read);
  out.changed = cache.apply(std::move(changes), ChangeOrigin::kResync, AppliedBy::kFeed);
  cache.advance_watermark(out.snapshot_revision);
  return out;
}

}  // namespace syncconfig::internal
