#include "cache/cache.h"

#include <algorithm>
#include <mutex>

#include "cache/jsonb_text.h"

namespace syncconfig::internal {

std::optional<ParsedValue> parse_value(std::string_view key, std::string_view text) {
  EntryPtr e = Entry::make(key, text, /*revision=*/0);
  if (!e) return std::nullopt;
  return ParsedValue{std::move(e)};
}

std::optional<nlohmann::json> Cache::get(std::string_view key) const {
  ReaderLock lock(mu_);
  const Entry* e = map_.find(key);
  if (e == nullptr || !e->live()) return std::nullopt;
  return e->to_json();
}

std::size_t Cache::size() const {
  ReaderLock lock(mu_);
  return live_count_;
}

uint32_t Cache::crc() const {
  ReaderLock lock(mu_);
  return crc_sum_;
}

int64_t Cache::watermark() const {
  ReaderLock lock(mu_);
  return watermark_;
}

std::map<std::string, nlohmann::json> Cache::get_all(std::string_view prefix) const {
  return snapshot(prefix).values;
}

Snapshot Cache::snapshot(std::string_view prefix) const {
  // As export_snapshot: only the entry pointers are listed under the lock, and the values are
  // made after it. Building the map under the lock held it for 2 s at 1M keys (BENCHMARKS.md,
  // performance issue 5), and no change could be applied meanwhile.
  Snapshot out;
  std::vector<const Entry*> live;
  // The whole cache: sized (and its pages touched) before the lock. A prefix usually selects
  // few keys: grown as needed.
  if (prefix.empty()) {
    live.resize(size_hint() + 1024);  // Touches the pages: faulting them in under the lock cost.
    live.clear();
  }
  {
    ReaderLock lock(mu_);
    map_.for_each([&](const Entry& e) {
      if (e.live() && e.key().starts_with(prefix)) live.push_back(&e);
    });
    out.revision = watermark_;
    exports_.fetch_add(1);
  }
  struct EndExport {
    const Cache& cache;
    ~EndExport() { cache.end_export(); }
  } end_export{*this};
  // Sorted first, so that the map is built from sorted input in linear time.
  std::sort(live.begin(), live.end(),
            [](const Entry* a, const Entry* b) { return a->key() < b->key(); });
  for (const Entry* e : live) out.values.emplace_hint(out.values.end(), e->key(), e->to_json());
  return out;
}

SnapshotFileData Cache::export_snapshot() const {
  SnapshotFileData out;
  // Sized, and its pages touched, before the lock: faulting in fresh memory for a million
  // pointers took longer than the listing itself (100 ms against 7 ms).
  std::vector<const Entry*> live(size_hint() + 1024);
  std::size_t listed = 0;
  {
    ReaderLock lock(mu_);
    // Only the table's slots are read here; tombstones are skipped after the lock, so that the
    // lock is not held for a cache miss per entry.
    if (live.size() < map_.size()) live.resize(map_.size());
    map_.for_each([&](const Entry& e) { live[listed++] = &e; });
    out.revision = watermark_;
    out.newest_revision = std::max(max_revision_, watermark_);
    out.anchors.assign(anchors_.begin(), anchors_.end());
    exports_.fetch_add(1);
  }
  live.resize(listed);
  struct EndExport {
    const Cache& cache;
    ~EndExport() { cache.end_export(); }
  } end_export{*this};
  out.written_at = std::chrono::system_clock::now();
  out.entries.reserve(live.size());
  for (const Entry* e : live) {
    if (!e->live()) continue;
    std::string& text = out.entries.emplace_back(e->key(), std::string()).second;
    if (const nlohmann::json* c = e->container()) {
      append_jsonb_text(text, *c);
    } else {
      text = e->text();
    }
  }
  return out;
}

void Cache::end_export() const {
  std::vector<EntryPtr> freed;  // After the lock is released.
  WriterLock lock(mu_);
  if (exports_.fetch_sub(1) == 1) freed.swap(retired_);
}

void Cache::retire(EntryPtr& e) {
  if (e && exports_.load() > 0) retired_.push_back(std::move(e));
}

std::size_t Cache::size_hint() const {
  ReaderLock lock(mu_);
  return map_.size();
}

void Cache::note_applied(int64_t revision) {
  WriterLock lock(mu_);
  note_revision(revision);
}

uint64_t Cache::content_version() const {
  ReaderLock lock(mu_);
  return content_version_;
}

CacheDigest Cache::digest() const {
  ReaderLock lock(mu_);
  return CacheDigest{live_count_, crc_sum_, md5_sum_, max_revision_};
}

// Every change of the live content passes through add_sums or sub_sums.
void Cache::add_sums(const EntryHash& h) {
  ++content_version_;
  ++live_count_;
  crc_sum_ += h.crc;  // Modulo 2^32 by unsigned wrap-around.
  md5_sum_ += h.md5;
}

void Cache::sub_sums(const EntryHash& h) {
  ++content_version_;
  --live_count_;
  crc_sum_ -= h.crc;
  md5_sum_ -= h.md5;
}

void Cache::note_revision(int64_t revision) {
  if (revision > max_revision_) max_revision_ = revision;
}

void Cache::push(const Entry& e, ChangeOrigin origin, std::optional<WriteTime> written_at) {
  std::optional<nlohmann::json> value;
  if (e.live()) value = e.to_json();
  emit(Change{std::string(e.key()), std::move(value), e.revision, origin, written_at});
}

void Cache::emit(Change change) {
  change.expired = expiring_;
  if (pending_ != nullptr) {
    pending_->push_back(std::move(change));
  } else {
    sink_.push(std::move(change));
  }
}

std::size_t Cache::apply(std::vector<CacheChange> changes, ChangeOrigin origin, AppliedBy by) {
  std::vector<Change> pushed;
  std::vector<EntryPtr> replaced;  // Freed after the lock is released.
  std::size_t applied = 0;
  WriterLock lock(mu_);
  pending_ = &pushed;
  for (CacheChange& c : changes) {
    expiring_ = c.expired;
    switch (c.kind) {
      case CacheChange::Kind::kUpsert:
        applied +=
            upsert_locked(std::move(*c.value), c.revision, origin, by, c.written_at, replaced);
        break;
      case CacheChange::Kind::kRemove:
        applied += remove_locked(c.key, c.revision, origin, c.written_at, replaced);
        break;
      case CacheChange::Kind::kTruncate:
        applied += truncate_locked(c.revision, origin, c.written_at) > 0 ? 1 : 0;
        break;
    }
  }
  expiring_ = false;
  flush_unit(pushed);
  return applied;
}

void Cache::flush_unit(std::vector<Change>& pushed) {
  pending_ = nullptr;
  // One unit: its changes reach the sink consecutively, the last one marked.
  for (std::size_t i = 0; i < pushed.size(); ++i) {
    pushed[i].unit_end = i + 1 == pushed.size();
    sink_.push(std::move(pushed[i]));
  }
  if (deferred_progress_ > 0) {
    sink_.progress(deferred_progress_, /*reset=*/false);
    deferred_progress_ = 0;
  }
}

bool Cache::upsert(ParsedValue value, int64_t revision, ChangeOrigin origin, AppliedBy by,
                   std::optional<WriteTime> written_at) {
  std::vector<EntryPtr> replaced;  // Freed after the lock is released.
  WriterLock lock(mu_);
  return upsert_locked(std::move(value), revision, origin, by, written_at, replaced);
}

bool Cache::upsert_locked(ParsedValue value, int64_t revision, ChangeOrigin origin, AppliedBy by,
                          std::optional<WriteTime> written_at, std::vector<EntryPtr>& replaced) {
  EntryPtr incoming = std::move(value.entry);
  Entry* e = map_.find(incoming->key());
  if (by == AppliedBy::kWriter && revision <= watermark_ && e == nullptr)
    return false;  // See cache.h.
  if (e != nullptr && revision <= e->revision) return false;
  // Below a revision already seen: possibly a change the cache holds already (a server's
  // snapshot can hold changes above its revision, and their events follow: note_applied).
  const bool maybe_replay = revision <= max_revision_;
  note_revision(revision);
  anchor(origin, revision, incoming->key(), &incoming->hash);
  if (e != nullptr && e->same_value(*incoming)) {
    // A write of the same value is still a change at its revision (the checksums stay): a
    // client that names revisions in a compare-and-set, or follows /watch, must learn it, as
    // etcd's watchers and the reference service's callbacks do. Not when it may be a replay.
    e->revision = revision;
    if (!maybe_replay) push(*e, origin, written_at);
    return true;
  }
  if (e != nullptr && e->live()) sub_sums(e->hash);
  incoming->revision = revision;
  add_sums(incoming->hash);
  const Entry& stored = *incoming;
  EntryPtr old = map_.put(std::move(incoming));
  retire(old);
  if (old) replaced.push_back(std::move(old));
  push(stored, origin, written_at);
  return true;
}

// `AppliedBy::kWriter` needs no rule of its own here: with no entry, a deletion at or below the
// watermark is skipped for every caller, and over an entry the revisions decide (see upsert).
bool Cache::remove(std::string_view key, int64_t revision, ChangeOrigin origin,
                   [[maybe_unused]] AppliedBy by, std::optional<WriteTime> written_at) {
  std::vector<EntryPtr> replaced;
  WriterLock lock(mu_);
  return remove_locked(key, revision, origin, written_at, replaced);
}

bool Cache::remove_locked(std::string_view key, int64_t revision, ChangeOrigin origin,
                          std::optional<WriteTime> written_at, std::vector<EntryPtr>& replaced) {
  Entry* e = map_.find(key);
  if (e == nullptr) {
    // Remember the deletion so that an older write arriving later cannot resurrect the key.
    if (revision <= watermark_) return false;
  } else if (revision <= e->revision) {
    return false;
  }
  note_revision(revision);
  anchor(origin, revision, key, nullptr);
  const bool was_live = e != nullptr && e->live();
  if (was_live) sub_sums(e->hash);
  tombstones_.emplace_back(revision, std::string(key));
  EntryPtr tombstone = Entry::make_tombstone(key, revision);
  const Entry& stored = *tombstone;
  EntryPtr old = map_.put(std::move(tombstone));
  retire(old);
  if (old) replaced.push_back(std::move(old));
  if (was_live) push(stored, origin, written_at);
  prune_tombstones();
  return true;
}

void Cache::anchor(ChangeOrigin origin, int64_t revision, std::string_view key,
                   const EntryHash* hash) {
  if (origin == ChangeOrigin::kResync) return;
  if (anchors_.size() == kAnchors) anchors_.pop_front();
  anchors_.push_back(Anchor{revision, std::string(key), hash == nullptr, hash ? hash->md5 : 0});
}

std::vector<Anchor> Cache::anchors() const {
  ReaderLock lock(mu_);
  return {anchors_.begin(), anchors_.end()};
}

void Cache::restore_anchors(const std::vector<Anchor>& anchors) {
  WriterLock lock(mu_);
  anchors_.clear();
  for (const Anchor& a : anchors) {
    if (anchors_.size() == kAnchors) anchors_.pop_front();
    anchors_.push_back(a);
  }
}

std::size_t Cache::truncate(int64_t revision, ChangeOrigin origin,
                            std::optional<WriteTime> written_at) {
  WriterLock lock(mu_);
  return truncate_locked(revision, origin, written_at);
}

std::size_t Cache::truncate_locked(int64_t revision, ChangeOrigin origin,
                                   std::optional<WriteTime> written_at) {
  note_revision(revision);
  // Everything before the truncation has been applied (both callers apply in commit order), and
  // it is all gone now. Raising the watermark makes a slow writer thread skip its own older
  // result instead of bringing back a key the truncation removed.
  raise_watermark(revision - 1);
  std::vector<std::string> older;
  map_.for_each([&](const Entry& e) {
    if (e.revision < revision) older.emplace_back(e.key());
  });
  std::size_t removed = 0;
  for (const std::string& key : older) {
    EntryPtr gone = map_.erase(key);
    if (gone->live()) {
      sub_sums(gone->hash);
      emit(Change{key, std::nullopt, revision, origin, written_at});
      ++removed;
    }
    retire(gone);
  }
  return removed;
}

void Cache::advance_watermark(int64_t revision) {
  WriterLock lock(mu_);
  raise_watermark(revision);
}

void Cache::raise_watermark(int64_t revision) {
  if (revision <= watermark_) return;
  watermark_ = revision;
  ++content_version_;
  prune_tombstones();
  // Inside apply(), after the unit's changes: progress must follow every change below it.
  if (pending_ != nullptr) {
    deferred_progress_ = watermark_;
    return;
  }
  sink_.progress(watermark_, /*reset=*/false);
}

void Cache::prune_tombstones() {
  while (!tombstones_.empty() && tombstones_.front().first <= watermark_) {
    auto& [revision, key] = tombstones_.front();
    const Entry* e = map_.find(key);
    if (e != nullptr && !e->live() && e->revision == revision) {
      EntryPtr gone = map_.erase(key);
      retire(gone);
    }
    tombstones_.pop_front();
  }
}

std::size_t Cache::replace_all(std::vector<Row> rows, int64_t snapshot_revision, ReplaceMode mode) {
  const bool quiet = mode == ReplaceMode::kInitial;
  std::vector<EntryPtr> replaced;  // Freed after the lock is released.
  WriterLock lock(mu_);
  if (mode == ReplaceMode::kReset) {
    // Revisions of the old table mean nothing now: compare content only.
    map_.for_each([](Entry& e) { e.revision = 0; });
    tombstones_.clear();
    anchors_.clear();
    watermark_ = 0;
    max_revision_ = 0;
  }
  std::vector<Change> pushed;  // A resync reaches the sink as one unit.
  if (!quiet) pending_ = &pushed;
  std::size_t changed = 0;
  const bool was_empty = map_.empty();
  if (was_empty) map_.reserve(rows.size());
  // Store the snapshot's rows, marking every entry the snapshot has (or that is newer).
  constexpr std::size_t kPrefetchAhead = 8;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i + kPrefetchAhead < rows.size()) {
      map_.prefetch(rows[i + kPrefetchAhead].value.entry->key_hash());
    }
    Row& row = rows[i];
    EntryPtr incoming = std::move(row.value.entry);
    note_revision(row.revision);
    Entry* e = was_empty ? nullptr : map_.find(incoming->key());
    if (e != nullptr) {
      e->mark = 1;
      if (e->revision > snapshot_revision) continue;  // A newer local write.
      if (e->same_value(*incoming)) {
        // Not delivered: a server's snapshot enters every key at its own revision, so a moved
        // revision need not be a write (see upsert_locked).
        e->revision = row.revision;
        continue;
      }
      if (e->live()) sub_sums(e->hash);
    }
    incoming->revision = row.revision;
    incoming->mark = was_empty ? 0 : 1;
    add_sums(incoming->hash);
    ++changed;
    const Entry& stored = *incoming;
    if (EntryPtr old = map_.put(std::move(incoming))) {
      retire(old);
      if (old) replaced.push_back(std::move(old));
    }
    if (!quiet) push(stored, ChangeOrigin::kResync, std::nullopt);
  }
  // Entries the snapshot no longer has, unless written after it.
  std::vector<std::string> gone;
  if (!was_empty) {
    map_.for_each([&](Entry& e) {
      if (e.mark == 0 && e.revision <= snapshot_revision) gone.emplace_back(e.key());
      e.mark = 0;
    });
  } else {
    map_.for_each([](Entry& e) { e.mark = 0; });
  }
  for (const std::string& key : gone) {
    EntryPtr e = map_.erase(key);
    if (e->live()) {
      sub_sums(e->hash);
      ++changed;
      if (!quiet) {
        emit(Change{key, std::nullopt, snapshot_revision, ChangeOrigin::kResync, std::nullopt});
      }
    }
    retire(e);
  }
  note_revision(snapshot_revision);
  flush_unit(pushed);
  if (mode == ReplaceMode::kReset) {
    ++content_version_;  // The watermark was reset (rare enough not to check for equality).
    watermark_ = snapshot_revision;
    prune_tombstones();
    sink_.progress(watermark_, /*reset=*/true);
  } else if (snapshot_revision > watermark_) {
    raise_watermark(snapshot_revision);
  } else if (mode == ReplaceMode::kResync) {
    // Reported even when the watermark stays: subscribers learn that the repairs they were just
    // given are complete.
    sink_.progress(watermark_, /*reset=*/false);
  }
  return changed;
}

}  // namespace syncconfig::internal
