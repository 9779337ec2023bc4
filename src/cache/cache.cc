#include "cache/cache.h"

#include <mutex>

namespace syncconfig::internal {

std::optional<ParsedValue> parse_value(std::string_view key, std::string_view text) {
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return ParsedValue{std::move(value), hash_entry(key, text)};
}

std::optional<nlohmann::json> Cache::get(std::string_view key) const {
  std::shared_lock lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || !it->second.live) return std::nullopt;
  return it->second.value;
}

std::size_t Cache::size() const {
  std::shared_lock lock(mu_);
  return live_count_;
}

uint32_t Cache::crc() const {
  std::shared_lock lock(mu_);
  return crc_sum_;
}

int64_t Cache::watermark() const {
  std::shared_lock lock(mu_);
  return watermark_;
}

std::map<std::string, nlohmann::json> Cache::get_all(std::string_view prefix) const {
  std::map<std::string, nlohmann::json> out;
  std::shared_lock lock(mu_);
  for (const auto& [key, entry] : map_) {
    if (entry.live && std::string_view(key).starts_with(prefix)) out.emplace(key, entry.value);
  }
  return out;
}

CacheDigest Cache::digest() const {
  std::shared_lock lock(mu_);
  return CacheDigest{live_count_, crc_sum_, md5_sum_, max_revision_};
}

void Cache::add_sums(const EntryHash& h) {
  ++live_count_;
  crc_sum_ += h.crc;  // Modulo 2^32 by unsigned wrap-around.
  md5_sum_ += h.md5;
}

void Cache::sub_sums(const EntryHash& h) {
  --live_count_;
  crc_sum_ -= h.crc;
  md5_sum_ -= h.md5;
}

void Cache::note_revision(int64_t revision) {
  if (revision > max_revision_) max_revision_ = revision;
}

bool Cache::upsert(std::string key, ParsedValue value, int64_t revision, ChangeOrigin origin,
                   bool local_write, std::optional<WriteTime> written_at) {
  std::unique_lock lock(mu_);
  if (local_write && revision <= watermark_) return false;
  auto [it, inserted] = map_.try_emplace(std::move(key));
  Entry& e = it->second;
  if (!inserted && revision <= e.revision) return false;
  note_revision(revision);
  e.revision = revision;
  bool unchanged = e.live && e.hash.crc == value.hash.crc && e.hash.md5 == value.hash.md5;
  if (unchanged) return true;
  if (e.live) sub_sums(e.hash);
  e.value = std::move(value.value);
  e.hash = value.hash;
  e.live = true;
  add_sums(e.hash);
  sink_.push(Change{it->first, e.value, revision, origin, written_at});
  return true;
}

bool Cache::remove(std::string_view key, int64_t revision, ChangeOrigin origin, bool local_write,
                   std::optional<WriteTime> written_at) {
  std::unique_lock lock(mu_);
  if (local_write && revision <= watermark_) return false;
  auto it = map_.find(key);
  if (it == map_.end()) {
    // Remember the deletion so that an older write arriving later cannot resurrect the key.
    if (revision <= watermark_) return false;
    it = map_.try_emplace(std::string(key)).first;
  } else if (revision <= it->second.revision) {
    return false;
  }
  note_revision(revision);
  Entry& e = it->second;
  bool was_live = e.live;
  if (was_live) sub_sums(e.hash);
  e.revision = revision;
  e.live = false;
  e.value = nullptr;
  e.hash = {};
  tombstones_.emplace_back(revision, it->first);
  if (was_live) sink_.push(Change{it->first, std::nullopt, revision, origin, written_at});
  prune_tombstones();
  return true;
}

void Cache::truncate(int64_t revision, ChangeOrigin origin, std::optional<WriteTime> written_at) {
  std::unique_lock lock(mu_);
  note_revision(revision);
  for (auto it = map_.begin(); it != map_.end();) {
    if (it->second.revision < revision) {
      if (it->second.live) {
        sub_sums(it->second.hash);
        sink_.push(Change{it->first, std::nullopt, revision, origin, written_at});
      }
      it = map_.erase(it);
    } else {
      ++it;
    }
  }
}

void Cache::advance_watermark(int64_t revision) {
  std::unique_lock lock(mu_);
  if (revision <= watermark_) return;
  watermark_ = revision;
  prune_tombstones();
}

void Cache::prune_tombstones() {
  while (!tombstones_.empty() && tombstones_.front().first <= watermark_) {
    auto& [revision, key] = tombstones_.front();
    auto it = map_.find(key);
    if (it != map_.end() && !it->second.live && it->second.revision == revision) map_.erase(it);
    tombstones_.pop_front();
  }
}

std::size_t Cache::replace_all(std::vector<Row> rows, int64_t snapshot_revision, ReplaceMode mode) {
  const bool initial_load = mode == ReplaceMode::kInitial;
  std::unique_lock lock(mu_);
  if (mode == ReplaceMode::kReset) {
    // Revisions of the old table mean nothing now: compare content only.
    for (auto& [key, entry] : map_) entry.revision = 0;
    tombstones_.clear();
    watermark_ = 0;
    max_revision_ = 0;
  }
  std::size_t changed = 0;
  std::unordered_map<std::string_view, Row*> snapshot;
  snapshot.reserve(rows.size());
  for (Row& row : rows) snapshot.emplace(row.key, &row);

  // Entries the snapshot no longer has, unless written after it.
  for (auto it = map_.begin(); it != map_.end();) {
    Entry& e = it->second;
    if (e.revision <= snapshot_revision && !snapshot.contains(it->first)) {
      if (e.live) {
        sub_sums(e.hash);
        ++changed;
        if (!initial_load) {
          sink_.push(Change{it->first, std::nullopt, snapshot_revision, ChangeOrigin::kResync,
                            std::nullopt});
        }
      }
      it = map_.erase(it);
    } else {
      ++it;
    }
  }
  if (map_.empty()) map_.reserve(rows.size());
  for (Row& row : rows) {
    note_revision(row.revision);
    auto [it, inserted] = map_.try_emplace(std::move(row.key));
    Entry& e = it->second;
    if (!inserted && e.revision > snapshot_revision) continue;  // A newer local write.
    bool same = e.live && e.hash.crc == row.value.hash.crc && e.hash.md5 == row.value.hash.md5;
    e.revision = row.revision;
    if (same) continue;
    if (e.live) sub_sums(e.hash);
    e.value = std::move(row.value.value);
    e.hash = row.value.hash;
    e.live = true;
    add_sums(e.hash);
    ++changed;
    if (!initial_load) {
      sink_.push(Change{it->first, e.value, e.revision, ChangeOrigin::kResync, std::nullopt});
    }
  }
  note_revision(snapshot_revision);
  if (snapshot_revision > watermark_) watermark_ = snapshot_revision;
  prune_tombstones();
  return changed;
}

}  // namespace syncconfig::internal
