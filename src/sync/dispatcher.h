// Dispatcher: runs subscriber callbacks on one thread of its own, in the order changes were
// applied to the cache. Owns that thread: stop() (also run by the destructor) signals it under the
// mutex and joins it.
//
// Dispatcher is safe for concurrent access from multiple threads without external
// synchronization.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <variant>

#include "cache/cache.h"
#include "sync/counters.h"
#include "util/mutex.h"

namespace syncconfig::internal {

class Dispatcher : public ChangeSink {
 public:
  // Counts callbacks that threw and keeps the queue's depth in `counters` (which must outlive it).
  // The queue is not bounded: a slow callback delays every later one and the queue grows (its
  // depth and peak are in Stats), but the cache and the sync protocol never wait for callbacks.
  Dispatcher(std::shared_ptr<spdlog::logger> logger, Counters& counters);
  ~Dispatcher() override;

  // Queues a change for the callbacks. Dropped when nobody is subscribed or after stop().
  void push(Change change) override SC_EXCLUDES(mu_);
  // Queues a Progress for the progress callbacks, in order with the changes.
  void progress(int64_t revision, bool reset) override SC_EXCLUDES(mu_);
  // `on_progress` may be empty.
  SubscriptionId subscribe(Callback callback, ProgressCallback on_progress = {}) SC_EXCLUDES(mu_);
  // After it returns, `id`'s callback is not called again. Waits for a running call of it to
  // finish, unless called from the dispatcher thread itself.
  void unsubscribe(SubscriptionId id) SC_EXCLUDES(mu_);
  // Stops and joins the thread; pending changes are dropped. Idempotent. Called from the
  // dispatcher thread (a callback), it stops the thread without joining; the destructor joins.
  void stop() SC_EXCLUDES(mu_);
  bool on_dispatcher_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run() SC_EXCLUDES(mu_);

  std::shared_ptr<spdlog::logger> logger_;
  Counters& counters_;

  Mutex mu_;
  CondVar cv_;       // Work queued or stop requested.
  CondVar idle_cv_;  // A callback finished.
  struct Subscriber {
    Callback on_change;
    ProgressCallback on_progress;
  };
  using Event = std::variant<Change, Progress>;
  void enqueue(Event event) SC_EXCLUDES(mu_);
  void note_depth() SC_REQUIRES(mu_);
  // Calls the subscriber's callback for `event`; exceptions are logged and counted.
  void deliver(const Subscriber& s, const Event& event);

  std::deque<Event> queue_ SC_GUARDED_BY(mu_);
  std::map<SubscriptionId, std::shared_ptr<const Subscriber>> callbacks_ SC_GUARDED_BY(mu_);
  SubscriptionId next_id_ SC_GUARDED_BY(mu_) = 1;
  SubscriptionId running_ SC_GUARDED_BY(mu_) = 0;  // Id of the callback being called, 0 if none.
  bool stopping_ SC_GUARDED_BY(mu_) = false;
  std::atomic<bool> has_subscribers_{false};
  std::thread thread_;
};

}  // namespace syncconfig::internal
