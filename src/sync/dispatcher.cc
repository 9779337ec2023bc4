#include "sync/dispatcher.h"

#include <vector>

namespace syncconfig::internal {

Dispatcher::Dispatcher(std::shared_ptr<spdlog::logger> logger,
                       std::atomic<uint64_t>& callback_errors)
    : logger_(std::move(logger)), callback_errors_(callback_errors) {
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

void Dispatcher::push(Change change) {
  if (!has_subscribers_.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(change));
    ++pushed_;
  }
  cv_.notify_one();
}

SubscriptionId Dispatcher::subscribe(Callback callback) {
  std::lock_guard lock(mu_);
  SubscriptionId id = next_id_++;
  callbacks_.emplace(id, std::make_shared<Callback>(std::move(callback)));
  has_subscribers_.store(true);
  return id;
}

void Dispatcher::unsubscribe(SubscriptionId id) {
  std::unique_lock lock(mu_);
  callbacks_.erase(id);
  has_subscribers_.store(!callbacks_.empty());
  if (on_dispatcher_thread()) return;
  idle_cv_.wait(lock, [&] { return running_ != id; });
}

void Dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  idle_cv_.notify_all();
  if (thread_.joinable() && !on_dispatcher_thread()) thread_.join();
}

void Dispatcher::drain() {
  std::unique_lock lock(mu_);
  uint64_t target = pushed_;
  idle_cv_.wait(lock, [&] { return stopping_ || delivered_ >= target; });
}

void Dispatcher::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) break;
    Change change = std::move(queue_.front());
    queue_.pop_front();
    // Snapshot the ids; each is re-checked right before its call so that unsubscribe holds.
    std::vector<SubscriptionId> ids;
    ids.reserve(callbacks_.size());
    for (const auto& [id, cb] : callbacks_) ids.push_back(id);
    for (SubscriptionId id : ids) {
      if (stopping_) break;
      auto it = callbacks_.find(id);
      if (it == callbacks_.end()) continue;
      std::shared_ptr<Callback> cb = it->second;
      running_ = id;
      lock.unlock();
      try {
        (*cb)(change);
      } catch (const std::exception& e) {
        callback_errors_.fetch_add(1);
        logger_->error("syncconfig: a change callback threw on key '{}': {}", change.key, e.what());
      } catch (...) {
        callback_errors_.fetch_add(1);
        logger_->error("syncconfig: a change callback threw a non-exception on key '{}'",
                       change.key);
      }
      lock.lock();
      running_ = 0;
      idle_cv_.notify_all();
    }
    ++delivered_;
    if (delivered_ == pushed_) idle_cv_.notify_all();
  }
}

}  // namespace syncconfig::internal
