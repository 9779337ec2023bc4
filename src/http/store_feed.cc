#include "http/store_feed.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace syncconfig::service::detail {

namespace {

using nlohmann::json;

// The first event after `cursor` in a revision-ordered history.
std::deque<WatchEventPtr>::const_iterator first_after(const std::deque<WatchEventPtr>& history,
                                                      int64_t cursor) {
  return std::upper_bound(history.begin(), history.end(), cursor,
                          [](int64_t c, const WatchEventPtr& e) { return c < e->revision; });
}

}  // namespace

std::string sse_event(std::string_view id, std::string_view type, std::string_view data) {
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", id, type, data);
}

std::string chunk(std::string_view payload) {
  return fmt::format("{:x}\r\n{}\r\n", payload.size(), payload);
}

void LagHistogram::observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // Clock skew with the database server; NaN.
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  internal::MutexLock lock(mu_);
  if (i < kBounds.size()) ++buckets_[i];
  ++count_;
  sum_ += seconds;
}

LagHistogram::Snapshot LagHistogram::snapshot() const {
  Snapshot s;
  internal::MutexLock lock(mu_);
  uint64_t running = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    running += buckets_[i];
    s.cumulative[i] = running;
  }
  s.count = count_;
  s.sum = sum_;
  return s;
}

StoreFeed::StoreFeed(std::string name, Config* store, std::size_t max_events, std::size_t max_bytes)
    : name_(std::move(name)), store_(store), max_events_(max_events), max_bytes_(max_bytes) {}

StoreFeed::~StoreFeed() { detach(); }

void StoreFeed::attach() {
  if (subscription_) return;
  subscription_ = store_->subscribe([this](const Change& c) { on_change(c); },
                                    [this](const Progress& p) { on_progress(p); });
  // Every change applied from now on reaches on_change; those applied before may not have.
  // History can therefore only start above everything applied so far, and the feed is ready
  // once the store is complete to there (normally at once; while the listener is away, when it
  // is back).
  Stats s = store_->stats();
  internal::MutexLock lock(mu_);
  start_revision_ = std::max(s.revision, s.applied_revision);
  if (!ready_ && s.revision >= start_revision_) {
    ready_ = true;
    std::erase_if(pending_, [&](const Change& c) { return c.revision <= s.revision; });
    reset_history(s.revision, /*same_history=*/false);
    std::vector<Waker> wakers = take_wakers();
    lock.unlock();
    wake_all(wakers);
  }
}

void StoreFeed::detach() {
  if (!subscription_) return;
  store_->unsubscribe(*subscription_);
  subscription_.reset();
}

WatchEventPtr StoreFeed::make_event(const Change& change) const {
  auto event = std::make_shared<WatchEvent>();
  event->revision = change.revision;
  event->key = change.key;
  // The value is serialized once, for the event and its fingerprint. The members are written in
  // the order a JSON object of them dumps in (sorted by name).
  const auto text = [](const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  };
  const std::string value_text = change.value ? text(*change.value) : std::string("null");
  event->fingerprint = change_fingerprint_of_text(
      change.key, change.value ? std::optional<std::string_view>(value_text) : std::nullopt);
  std::string data = change.value ? "{\"deleted\":false," : "{\"deleted\":true,";
  if (change.expired) data += "\"expired\":true,";
  data += "\"key\":" + text(json(change.key)) + ",";
  // A transaction's events are consecutive; all but the last say more of it follows.
  if (!change.unit_end) data += "\"more\":true,";
  data += fmt::format("\"revision\":{},\"value\":{}}}", change.revision, value_text);
  event->chunk = chunk(
      sse_event(format_event_id(change.revision, ResumeAnchor{change.revision, event->fingerprint}),
                "change", data));
  return event;
}

void StoreFeed::on_change(const Change& change) {
  if (change.written_at) {
    std::chrono::duration<double> lag = std::chrono::system_clock::now() - *change.written_at;
    lag_.observe(lag.count());
  }
  internal::MutexLock lock(mu_);
  if (!ready_ || change.revision > position_) {
    pending_.push_back(change);
    return;
  }
  // At or below the position: released already. A repair found by a resync (a write that sent
  // no notification keeps its old revision) cannot be numbered into the history: the streams
  // get a reset. This instance's own write applied late is superseded by a change the history
  // has or will have (see Cache::upsert), so it is dropped.
  if (change.origin == ChangeOrigin::kResync) reset_pending_ = true;
}

void StoreFeed::on_progress(const Progress& progress) {
  internal::MutexLock lock(mu_);
  if (closed_) return;
  if (!ready_) {
    if (progress.revision < start_revision_ && !progress.reset) {
      std::erase_if(pending_, [&](const Change& c) { return c.revision <= progress.revision; });
      return;
    }
    ready_ = true;
    const int64_t start = start_revision_;  // A copy: the lambda cannot show mu_ held.
    std::erase_if(pending_, [&](const Change& c) { return c.revision <= start; });
    reset_history(start_revision_, /*same_history=*/false);
    // Released below as usual.
  }
  if (progress.reset || reset_pending_) {
    // Whatever was below the new position is in the store's snapshot, which a reset sends.
    std::erase_if(pending_, [&](const Change& c) { return c.revision <= progress.revision; });
    reset_history(progress.revision, /*same_history=*/!progress.reset);
    ++generation_;
    if (progress.reset) history_generation_ = generation_;
    std::vector<Waker> wakers = take_wakers();
    lock.unlock();
    wake_all(wakers);
    return;
  }
  if (progress.revision <= position_) return;
  // Release what is now complete, in revision order.
  auto complete = std::partition(pending_.begin(), pending_.end(),
                                 [&](const Change& c) { return c.revision > progress.revision; });
  std::vector<Change> released(std::make_move_iterator(complete),
                               std::make_move_iterator(pending_.end()));
  pending_.erase(complete, pending_.end());
  if (released.empty()) {
    position_ = progress.revision;  // Streams learn it from progress events.
    return;
  }
  std::sort(released.begin(), released.end(),
            [](const Change& a, const Change& b) { return a.revision < b.revision; });
  lock.unlock();
  // Formatted once, outside the lock; streams share the text.
  std::vector<WatchEventPtr> events;
  events.reserve(released.size());
  for (const Change& c : released) events.push_back(make_event(c));
  lock.lock();
  for (WatchEventPtr& e : events) {
    // A change at or below the newest held (a reset in between) is not part of this history.
    if (!history_.empty() && e->revision <= history_.back()->revision) continue;
    if (e->revision <= history_start_) continue;
    int64_t base = history_.empty() ? 0 : history_.back()->offset;
    std::const_pointer_cast<WatchEvent>(e)->offset = base + static_cast<int64_t>(e->chunk.size());
    history_bytes_ += e->chunk.size();
    history_.push_back(std::move(e));
  }
  // Only now: a reader that saw the new position before these events were in the history would
  // move its cursor past them (found by HttpWatchFeed's concurrent reader test).
  position_ = progress.revision;
  trim();
  std::vector<Waker> wakers = take_wakers();
  lock.unlock();
  wake_all(wakers);
}

void StoreFeed::reset_history(int64_t position, bool same_history) {
  if (!same_history) {
    floor_anchor_.reset();
  } else if (!history_.empty()) {
    floor_anchor_ = ResumeAnchor{history_.back()->revision, history_.back()->fingerprint};
  }
  history_.clear();
  history_bytes_ = 0;
  position_ = position;
  history_start_ = position;
  reset_pending_ = false;
}

void StoreFeed::trim() {
  while (!history_.empty() && (history_.size() > max_events_ || history_bytes_ > max_bytes_)) {
    history_bytes_ -= history_.front()->chunk.size();
    history_start_ = history_.front()->revision;
    floor_anchor_ = ResumeAnchor{history_.front()->revision, history_.front()->fingerprint};
    history_.pop_front();
  }
}

void StoreFeed::wake_all(std::vector<Waker>& wakers) {
  for (Waker& w : wakers) w->wake();
}

StoreFeed::Read StoreFeed::read(int64_t cursor, uint64_t generation, std::size_t max_bytes,
                                Waker waker, std::vector<WatchEventPtr>& events) {
  Read out;
  events.clear();
  internal::MutexLock lock(mu_);
  if (closed_) {
    out.status = Read::Status::kClosed;
    return out;
  }
  if (!ready_) {
    out.status = Read::Status::kNotReady;
    if (waker) wakers_.push_back(std::move(waker));
    return out;
  }
  if (generation != generation_) {
    out.status = Read::Status::kReset;
    out.history_reset = generation < history_generation_;
    return out;
  }
  if (cursor < history_start_) {
    out.status = Read::Status::kBehind;
    return out;
  }
  auto it = first_after(history_, cursor);
  std::size_t bytes = 0;
  for (; it != history_.end() && (events.empty() || bytes < max_bytes); ++it) {
    bytes += (*it)->chunk.size();
    events.push_back(*it);
  }
  if (it == history_.end()) {
    out.cursor = std::max(cursor, position_);
  } else {
    out.cursor = events.back()->revision;
    out.lag_bytes = history_.back()->offset - events.back()->offset;
  }
  if (events.empty() && waker) wakers_.push_back(std::move(waker));
  return out;
}

StoreFeed::Start StoreFeed::start(Waker waker) {
  Start out;
  internal::MutexLock lock(mu_);
  if (!ready_ && !closed_) {
    wakers_.push_back(std::move(waker));
    return out;
  }
  out.ready = true;
  out.position = position_;
  out.generation = generation_;
  return out;
}

StoreFeed::Backfill StoreFeed::backfill(int64_t since) {
  Backfill out;
  std::lock_guard single(backfill_mu_);
  uint64_t generation;
  {
    internal::MutexLock lock(mu_);
    if (closed_) {
      out.reset = "the server is stopping";
      return out;
    }
    if (since >= history_start_) return out;  // A reader before us did it.
    generation = generation_;
  }
  backfills.fetch_add(1);
  ChangesSince read = store_->changes_since(since);
  if (!read.complete) {
    out.reset = read.reason;
    return out;
  }
  std::vector<WatchEventPtr> events;
  events.reserve(read.changes.size());
  for (const Change& c : read.changes) events.push_back(make_event(c));
  internal::MutexLock lock(mu_);
  if (generation != generation_) {
    out.reset = "the table was reloaded meanwhile";
    return out;
  }
  if (read.revision < history_start_) {
    out.reset = fmt::format("the table (at revision {}) is behind this server (at {})",
                            read.revision, history_start_);
    return out;
  }
  // Each key's state in the table after `since`, up to where the history starts; above that
  // the history has every change (a key's later change supersedes its earlier one either way).
  const int64_t start = history_start_;
  std::erase_if(events, [&](const WatchEventPtr& e) { return e->revision > start; });
  std::size_t bytes = 0;
  for (const WatchEventPtr& e : events) bytes += e->chunk.size();
  if (history_.size() + events.size() > max_events_ || history_bytes_ + bytes > max_bytes_) {
    // More than the history holds: this stream alone gets them.
    out.direct = std::move(events);
    out.cursor = start;
    return out;
  }
  int64_t offset = history_.empty() ? 0
                                    : history_.front()->offset -
                                          static_cast<int64_t>(history_.front()->chunk.size());
  for (auto it = events.rbegin(); it != events.rend(); ++it) {
    std::const_pointer_cast<WatchEvent>(*it)->offset = offset;
    offset -= static_cast<int64_t>((*it)->chunk.size());
    history_.push_front(*it);
  }
  history_bytes_ += bytes;
  history_start_ = since;
  return out;
}

StoreFeed::ResetPoint StoreFeed::reset_point(std::string_view prefix) const {
  ResetPoint out;
  {
    internal::MutexLock lock(mu_);
    out.position = position_;
    out.generation = generation_;
  }
  // Taken after the position: it holds at least every change up to it. Later changes it also
  // holds are sent again after it, as whole values, which leaves the same state.
  out.settings = store_->snapshot(prefix).values;
  // Read after the settings: it covers every change they hold.
  out.newest = std::max(out.position, store_->stats().applied_revision);
  return out;
}

int64_t StoreFeed::position() const {
  internal::MutexLock lock(mu_);
  return ready_ ? position_ : 0;
}

std::optional<ResumeAnchor> StoreFeed::anchor_at(int64_t revision) const {
  internal::MutexLock lock(mu_);
  auto it = first_after(history_, revision);
  if (it != history_.begin()) {
    const WatchEvent& e = **std::prev(it);
    return ResumeAnchor{e.revision, e.fingerprint};
  }
  // Nothing in the history at or below it: the newest change released before the history.
  if (floor_anchor_ && floor_anchor_->revision <= revision) return floor_anchor_;
  return std::nullopt;
}

StoreFeed::AnchorCheck StoreFeed::check_anchor(const ResumeAnchor& anchor) const {
  internal::MutexLock lock(mu_);
  auto it = first_after(history_, anchor.revision);
  const WatchEvent* at = it == history_.begin() ? nullptr : std::prev(it)->get();
  if (at && at->revision == anchor.revision) {
    return at->fingerprint == anchor.fingerprint ? AnchorCheck::kMatch : AnchorCheck::kMismatch;
  }
  if (floor_anchor_ && floor_anchor_->revision == anchor.revision) {
    return floor_anchor_->fingerprint == anchor.fingerprint ? AnchorCheck::kMatch
                                                            : AnchorCheck::kMismatch;
  }
  return AnchorCheck::kUnknown;
}

std::optional<std::string> StoreFeed::verify_anchor(const ResumeAnchor& anchor) const {
  // The newest record at or below the anchor's revision, of any key: the PK index read backwards.
  std::vector<HistoryRecord> records =
      store_->history(Config::HistoryQuery{"", /*prefix=*/true, 1, anchor.revision + 1});
  if (records.empty() || records.front().revision != anchor.revision) {
    return fmt::format(
        "revision {}, the last change the client saw, is not in this table's change log (lost "
        "in a failover, from a table since recreated, or pruned)",
        anchor.revision);
  }
  const HistoryRecord& r = records.front();
  const bool deleted = r.op != "set";
  const uint32_t fingerprint =
      change_fingerprint(r.key, deleted ? std::nullopt : std::optional<json>(r.value));
  if (fingerprint != anchor.fingerprint) {
    return fmt::format(
        "revision {} names another change in this table's change log than the one the client "
        "saw (its history diverged: a failover lost commits, or the table was recreated)",
        anchor.revision);
  }
  return std::nullopt;
}

std::optional<std::string> StoreFeed::anchor_problem(const ResumeAnchor& anchor) const {
  switch (check_anchor(anchor)) {
    case AnchorCheck::kMatch:
      return std::nullopt;
    case AnchorCheck::kMismatch:
      return mismatch_reason(anchor);
    case AnchorCheck::kUnknown:
      break;
  }
  return verify_anchor(anchor);
}

std::string StoreFeed::mismatch_reason(const ResumeAnchor& anchor) {
  return fmt::format(
      "revision {}, the last change the client saw, names another change on this server (its "
      "history diverged)",
      anchor.revision);
}

void StoreFeed::close() {
  internal::MutexLock lock(mu_);
  closed_ = true;
  std::vector<Waker> wakers = take_wakers();
  lock.unlock();
  wake_all(wakers);
}

}  // namespace syncconfig::service::detail
