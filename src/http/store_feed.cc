#include "http/store_feed.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace syncconfig::service::detail {

namespace {

// Bytes an event is charged in the history: its strings plus a fixed overhead.
std::size_t event_cost(const WatchEvent& e) { return e.key.size() + e.data.size() + 64; }

}  // namespace

void LagHistogram::observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // Clock skew with the database server; NaN.
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  std::lock_guard lock(mu_);
  if (i < kBounds.size()) ++buckets_[i];
  ++count_;
  sum_ += seconds;
}

LagHistogram::Snapshot LagHistogram::snapshot() const {
  Snapshot s;
  std::lock_guard lock(mu_);
  uint64_t running = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    running += buckets_[i];
    s.cumulative[i] = running;
  }
  s.count = count_;
  s.sum = sum_;
  return s;
}

StoreFeed::StoreFeed(std::string name, Store* store, std::size_t max_events, std::size_t max_bytes,
                     uint64_t first_seq)
    : name_(std::move(name)),
      store_(store),
      max_events_(max_events),
      max_bytes_(max_bytes),
      last_seq_(first_seq) {}

StoreFeed::~StoreFeed() { detach(); }

void StoreFeed::attach() {
  if (subscription_) return;
  subscription_ = store_->subscribe([this](const Change& c) { on_change(c); });
}

void StoreFeed::detach() {
  if (!subscription_) return;
  store_->unsubscribe(*subscription_);
  subscription_.reset();
}

void StoreFeed::on_change(const Change& change) {
  if (change.written_at) {
    std::chrono::duration<double> lag = std::chrono::system_clock::now() - *change.written_at;
    lag_.observe(lag.count());
  }

  // Formatted here, once, outside the lock; streams only copy pointers.
  auto event = std::make_shared<WatchEvent>();
  event->key = change.key;
  nlohmann::json data = {
      {"key", change.key},
      {"value", change.value ? *change.value : nlohmann::json(nullptr)},
      {"deleted", !change.value.has_value()},
      {"revision", change.revision},
  };
  event->data = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::size_t cost = event_cost(*event);

  {
    std::lock_guard lock(mu_);
    event->seq = ++last_seq_;
    ring_.push_back(std::move(event));
    ring_bytes_ += cost;
    while (!ring_.empty() && (ring_.size() > max_events_ || ring_bytes_ > max_bytes_)) {
      ring_bytes_ -= event_cost(*ring_.front());
      ring_.pop_front();
    }
  }
  cv_.notify_all();
}

uint64_t StoreFeed::current_seq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

StoreFeed::Batch StoreFeed::wait_after(uint64_t cursor,
                                       std::chrono::steady_clock::time_point deadline) const {
  Batch batch;
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return closed_ || last_seq_ != cursor; });
  if (closed_) {
    batch.closed = true;
    return batch;
  }
  if (cursor == last_seq_) return batch;  // Deadline, nothing new.
  // Complete only if the change right after the cursor is still held (seqs are contiguous and
  // end at last_seq_). A cursor ahead of last_seq_ was never issued by this run.
  if (cursor > last_seq_ || ring_.empty() || ring_.front()->seq > cursor + 1) {
    batch.lost = true;
    return batch;
  }
  auto first = ring_.begin() + static_cast<std::ptrdiff_t>(cursor + 1 - ring_.front()->seq);
  batch.events.assign(first, ring_.end());
  return batch;
}

void StoreFeed::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::size_t StoreFeed::open_streams() const {
  std::lock_guard lock(mu_);
  return open_streams_;
}

void StoreFeed::stream_opened() {
  std::lock_guard lock(mu_);
  ++open_streams_;
}

void StoreFeed::stream_closed() {
  std::lock_guard lock(mu_);
  --open_streams_;
}

}  // namespace syncconfig::service::detail
