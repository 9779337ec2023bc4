// The in-memory copy of the table, with the per-key revision rules that keep it moving forward.
//
// Every entry carries the revision of the commit that wrote it. A change is applied only if its
// revision is newer than the entry's, so late notifications and write echoes never roll a key
// back. Deletions leave a tombstone (the deletion's revision) until the watermark passes it.
//
// The watermark W is the revision up to which this instance has applied every commit (see
// docs/protocol.md). A local write's result <= W for a key with no entry is skipped (the key may
// have been deleted since); tombstones <= W can be forgotten because nothing older than W can
// arrive anymore.
//
// Changes that alter the cache are handed to a ChangeSink while the cache lock is held, so the
// sink sees them in the order they were applied (per key: commit order).
//
// Cache is safe for concurrent access from multiple threads without external synchronization.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/entry.h"
#include "cache/entry_hash.h"
#include "cache/entry_table.h"
#include "cache/read_mostly_mutex.h"
#include "cache/snapshot_file.h"
#include "syncconfig/store.h"

namespace syncconfig::internal {

using WriteTime = std::chrono::system_clock::time_point;

class ChangeSink {
 public:
  virtual ~ChangeSink() = default;
  // Called under the cache lock: must be quick and must not call back into the cache.
  virtual void push(Change change) = 0;
  // The watermark rose to `revision` (every change at or below it was pushed before), or, with
  // `reset`, the table's revisions started over and the cache now equals the new table at
  // `revision`. Under the cache lock, like push().
  virtual void progress(int64_t revision, bool reset) = 0;
};

// A value as read from PostgreSQL, parsed and hashed into its cache entry (done before taking
// the cache lock). The entry's revision is set by the cache.
struct ParsedValue {
  EntryPtr entry;
};
// Parses PostgreSQL's jsonb text. Returns std::nullopt if it is not JSON (never expected).
std::optional<ParsedValue> parse_value(std::string_view key, std::string_view text);

// One change of a unit applied with Cache::apply.
struct CacheChange {
  enum class Kind { kUpsert, kRemove, kTruncate };
  Kind kind = Kind::kUpsert;
  std::optional<ParsedValue> value;  // kUpsert.
  std::string key;                   // kRemove.
  int64_t revision = 0;
  bool expired = false;  // kRemove: a lease expired (Change::expired).
  std::optional<WriteTime> written_at;
};

// One row of the table.
struct Row {
  ParsedValue value;  // Its entry holds the key.
  int64_t revision = 0;
};

// Who hands a change to the cache: the thread that wrote it, with the revision its own commit
// returned, or the feed that follows the table (notifications, catch-ups, a server's event
// stream). They differ at the watermark: see upsert().
enum class AppliedBy { kWriter, kFeed };

enum class ReplaceMode {
  kInitial,  // Start-up load: no callbacks.
  kResync,   // Report changes (kResync); keep entries newer than the snapshot.
  kReset,    // The table's revisions went backwards (it was recreated): trust only the snapshot,
             // and lower the watermark to it.
};

struct CacheDigest {
  std::size_t count = 0;
  uint32_t crc = 0;
  uint64_t md5_sum = 0;
  int64_t max_revision = 0;  // Highest revision ever applied (entries, tombstones, truncations).
};

class Cache {
 public:
  explicit Cache(ChangeSink& sink) : sink_(sink) {}

  std::optional<nlohmann::json> get(std::string_view key) const;
  // Calls f(const Entry&) under the read lock for a live key; returns false (without calling)
  // if absent.
  template <class F>
  bool read(std::string_view key, F&& f) const {
    ReaderLock lock(mu_);
    const Entry* e = map_.find(key);
    if (e == nullptr || !e->live()) return false;
    f(*e);
    return true;
  }
  std::size_t size() const;
  uint32_t crc() const;
  std::map<std::string, nlohmann::json> get_all(std::string_view prefix) const;
  // get_all and the watermark, read at one moment: the entries are listed under the read lock,
  // their values made after it (entries are immutable; see export_snapshot).
  Snapshot snapshot(std::string_view prefix) const;
  CacheDigest digest() const;
  int64_t watermark() const;
  // Every live entry's key and jsonb text, in no particular order, with revision = the watermark
  // and written_at = now; source left empty. The cache at one moment: the entries are listed
  // under one read lock, and their text is made (containers rendered with jsonb_text) after it
  // is released. The lock is held only for the listing (pointers copied from the table's slots)
  // because ReadMostlyMutex makes every new reader wait behind a waiting writer: a lock held
  // while a million entries are rendered, or just copied (measured: about as slow), would stall
  // get() for a second whenever a write came in. The listed entries stay valid: an entry is
  // immutable but for revision and mark (not read here), and while an export runs, writers
  // retire what they take out of the table instead of freeing it (retire()).
  SnapshotFileData export_snapshot() const;
  // A number that changes whenever the live content or the watermark changes (a counter of such
  // changes, never repeating), and only then: a write of an equal value does not change it.
  uint64_t content_version() const;
  // The newest changes (at most kAnchors) applied from notifications or this instance's own
  // writes, oldest first; cleared by a reset reload.
  static constexpr std::size_t kAnchors = 8;
  std::vector<Anchor> anchors() const;
  // Replaces them with those of a snapshot file the cache was loaded from (at most the newest
  // kAnchors of them).
  void restore_anchors(const std::vector<Anchor>& anchors);

  // Upsert at `revision`, reported with `origin`. Applied if newer than the entry (or its
  // tombstone). The result of this instance's own write (AppliedBy::kWriter, applied by the
  // writing thread) at or below the watermark is skipped when the key has no entry at all: it may
  // have been deleted since and its tombstone forgotten. Over an older entry it is applied: the
  // listener can pass a revision without applying it (a value too large for the payload, read
  // by key after a later deletion), and the writer must still read its own write. Returns
  // whether applied.
  // `written_at` is passed on in the reported Change.
  bool upsert(ParsedValue value, int64_t revision, ChangeOrigin origin, AppliedBy by,
              std::optional<WriteTime> written_at = std::nullopt);
  // Deletion at `revision`, same rules. Returns whether applied.
  bool remove(std::string_view key, int64_t revision, ChangeOrigin origin, AppliedBy by,
              std::optional<WriteTime> written_at = std::nullopt);
  // TRUNCATE at `revision`: drops every entry older than it. Returns how many live keys it
  // removed.
  std::size_t truncate(int64_t revision, ChangeOrigin origin,
                       std::optional<WriteTime> written_at = std::nullopt);
  // Applies `changes` (in revision order) as one unit: under one write lock, so no reader sees
  // part of it, each by the rules of upsert/remove/truncate; the changes it makes reach the sink
  // consecutively, the last with unit_end. Returns how many were applied.
  std::size_t apply(std::vector<CacheChange> changes, ChangeOrigin origin, AppliedBy by);
  // Raises the watermark (never lowers it) and forgets tombstones at or below it.
  void advance_watermark(int64_t revision);
  // Records that the content may hold changes up to `revision` (Stats::applied_revision, what a
  // StoreFeed starts its history above) although its entries do not say so: rows loaded from a
  // server's snapshot or a snapshot file carry the snapshot's revision, not their own, and such a
  // snapshot can hold a change newer than it. Its own event will then change nothing here and
  // notify no one, so nothing may claim to have numbered it.
  void note_applied(int64_t revision);
  // Makes the cache equal to `rows`, a consistent snapshot of the whole table at revision
  // `snapshot_revision`, except for entries newer than the snapshot (kept, unless kReset).
  // Returns how many keys changed.
  std::size_t replace_all(std::vector<Row> rows, int64_t snapshot_revision, ReplaceMode mode);

 private:
  void add_sums(const EntryHash& h) SC_REQUIRES(mu_);
  void sub_sums(const EntryHash& h) SC_REQUIRES(mu_);
  void note_revision(int64_t revision) SC_REQUIRES(mu_);
  void prune_tombstones() SC_REQUIRES(mu_);
  // Raises the watermark and reports it to the sink.
  void raise_watermark(int64_t revision) SC_REQUIRES(mu_);
  // Keeps `e`, just taken out of the map, alive while an export may be reading it; otherwise
  // leaves it to its owner, who frees it after releasing the lock.
  void retire(EntryPtr& e) SC_REQUIRES(mu_);
  // Entries in the table, tombstones included.
  std::size_t size_hint() const;
  // Ends an export: the last one frees the retired entries.
  void end_export() const;

  bool upsert_locked(ParsedValue value, int64_t revision, ChangeOrigin origin, AppliedBy by,
                     std::optional<WriteTime> written_at, std::vector<EntryPtr>& replaced)
      SC_REQUIRES(mu_);
  bool remove_locked(std::string_view key, int64_t revision, ChangeOrigin origin,
                     std::optional<WriteTime> written_at, std::vector<EntryPtr>& replaced)
      SC_REQUIRES(mu_);
  std::size_t truncate_locked(int64_t revision, ChangeOrigin origin,
                              std::optional<WriteTime> written_at) SC_REQUIRES(mu_);
  // Hands a change to the sink, or to the unit being applied.
  void emit(Change change) SC_REQUIRES(mu_);
  // Ends a unit: its changes to the sink, the last marked unit_end, then any progress reached.
  void flush_unit(std::vector<Change>& pushed) SC_REQUIRES(mu_);

  ChangeSink& sink_;
  std::vector<Change>* pending_ SC_GUARDED_BY(mu_) = nullptr;  // The unit apply() is applying.
  int64_t deferred_progress_ SC_GUARDED_BY(mu_) = 0;           // Progress reached inside it.
  bool expiring_ SC_GUARDED_BY(mu_) = false;  // The change being applied is a lease expiry.
  void push(const Entry& e, ChangeOrigin origin, std::optional<WriteTime> written_at)
      SC_REQUIRES(mu_);

  mutable ReadMostlyMutex mu_;
  EntryTable map_ SC_GUARDED_BY(mu_);
  std::deque<std::pair<int64_t, std::string>> tombstones_ SC_GUARDED_BY(mu_);  // Revision order.
  std::size_t live_count_ SC_GUARDED_BY(mu_) = 0;
  uint32_t crc_sum_ SC_GUARDED_BY(mu_) = 0;
  uint64_t md5_sum_ SC_GUARDED_BY(mu_) = 0;
  int64_t max_revision_ SC_GUARDED_BY(mu_) = 0;
  int64_t watermark_ SC_GUARDED_BY(mu_) = 0;
  uint64_t content_version_ SC_GUARDED_BY(mu_) = 0;  // See content_version().
  std::deque<Anchor> anchors_ SC_GUARDED_BY(mu_);    // See anchors().
  // Records an applied change as an anchor unless it came from a catch-up or resync (those read
  // rows, whose revision need not name a logged change: a write made with triggers off).
  void anchor(ChangeOrigin origin, int64_t revision, std::string_view key, const EntryHash* hash)
      SC_REQUIRES(mu_);
  // Exports running (raised under the read lock, lowered under the write lock) and the entries
  // retired meanwhile (under the write lock).
  mutable std::atomic<int> exports_{0};
  mutable std::vector<EntryPtr> retired_;
};

}  // namespace syncconfig::internal
