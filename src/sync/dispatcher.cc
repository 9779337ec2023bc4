#include "sync/dispatcher.h"

#include <vector>

namespace syncconfig::internal {

Dispatcher::Dispatcher(std::shared_ptr<spdlog::logger> logger, Counters& counters)
    : logger_(std::move(logger)), counters_(counters) {
  thread_ = std::thread([this] { run(); });
}

Dispatcher::~Dispatcher() {
  stop();
  if (thread_.joinable()) {
    // Only reachable when a callback destroys its own store: documented as not allowed.
    logger_->critical("syncconfig: a store was destroyed from its own change callback");
    thread_.detach();
  }
}

void Dispatcher::push(Change change) { enqueue(std::move(change)); }

void Dispatcher::progress(int64_t revision, bool reset) { enqueue(Progress{revision, reset}); }

void Dispatcher::enqueue(Event event) {
  if (!has_subscribers_.load(std::memory_order_relaxed)) return;
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(event));
    note_depth();
  }
  cv_.notify_one();
}

void Dispatcher::note_depth() {
  const uint64_t depth = queue_.size();
  counters_.callback_queue_depth.store(depth);
  if (depth > counters_.callback_queue_peak.load()) counters_.callback_queue_peak.store(depth);
}

SubscriptionId Dispatcher::subscribe(Callback callback, ProgressCallback on_progress) {
  MutexLock lock(mu_);
  SubscriptionId id = next_id_++;
  callbacks_.emplace(id, std::make_shared<const Subscriber>(
                             Subscriber{std::move(callback), std::move(on_progress)}));
  has_subscribers_.store(true);
  return id;
}

void Dispatcher::unsubscribe(SubscriptionId id) {
  MutexLock lock(mu_);
  callbacks_.erase(id);
  has_subscribers_.store(!callbacks_.empty());
  if (on_dispatcher_thread()) return;
  while (running_ == id) idle_cv_.wait(lock);
}

void Dispatcher::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    queue_.clear();
    note_depth();
  }
  cv_.notify_all();
  idle_cv_.notify_all();
  if (thread_.joinable() && !on_dispatcher_thread()) thread_.join();
}

void Dispatcher::run() {
  MutexLock lock(mu_);
  for (;;) {
    while (!stopping_ && queue_.empty()) cv_.wait(lock);
    if (stopping_) break;
    Event event = std::move(queue_.front());
    queue_.pop_front();
    note_depth();
    // Snapshot the ids; each is re-checked right before its call so that unsubscribe holds.
    std::vector<SubscriptionId> ids;
    ids.reserve(callbacks_.size());
    for (const auto& [id, cb] : callbacks_) ids.push_back(id);
    for (SubscriptionId id : ids) {
      if (stopping_) break;
      auto it = callbacks_.find(id);
      if (it == callbacks_.end()) continue;
      std::shared_ptr<const Subscriber> subscriber = it->second;
      running_ = id;
      lock.unlock();
      deliver(*subscriber, event);
      lock.lock();
      running_ = 0;
      idle_cv_.notify_all();
    }
  }
}

void Dispatcher::deliver(const Subscriber& s, const Event& event) {
  const Change* change = std::get_if<Change>(&event);
  try {
    if (change != nullptr) {
      if (s.on_change) s.on_change(*change);
    } else if (s.on_progress) {
      s.on_progress(std::get<Progress>(event));
    }
  } catch (const std::exception& e) {
    counters_.callback_errors.fetch_add(1);
    logger_->error("syncconfig: a {} callback threw{}: {}", change ? "change" : "progress",
                   change ? " on key '" + change->key + "'" : std::string(), e.what());
  } catch (...) {
    counters_.callback_errors.fetch_add(1);
    logger_->error("syncconfig: a {} callback threw a non-exception{}",
                   change ? "change" : "progress",
                   change ? " on key '" + change->key + "'" : std::string());
  }
}

}  // namespace syncconfig::internal
