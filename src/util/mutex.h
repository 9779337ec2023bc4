// A mutex, its scoped lock and a condition variable, annotated for clang's thread-safety
// analysis (util/thread_annotations.h): members marked SC_GUARDED_BY(mu_) can only be touched,
// and functions marked SC_REQUIRES(mu_) only be called, where the compiler sees mu_ held.
//
// Thin wrappers over std::mutex and std::condition_variable; no extra cost.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "util/thread_annotations.h"

namespace syncconfig::internal {

class SC_CAPABILITY("mutex") Mutex {
 public:
  void lock() SC_ACQUIRE() { mu_.lock(); }
  void unlock() SC_RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` from construction to destruction, except between unlock() and lock() (a stretch
// run without it, such as a callback).
class SC_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) SC_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() SC_RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() SC_RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  void lock() SC_ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  friend class CondVar;
  Mutex& mu_;
  bool held_ = true;
};

// Waits release the lock while blocked and hold it again when they return; like any condition
// variable they can wake spuriously, so callers wait in a loop on their condition (written out
// in the caller, where the analysis sees the lock held while the guarded state is read).
class CondVar {
 public:
  void wait(MutexLock& lock) {
    std::unique_lock<std::mutex> native(lock.mu_.mu_, std::adopt_lock);
    cv_.wait(native);
    native.release();  // Still held: the MutexLock owns it.
  }
  // False when `deadline` passed (the lock is held again either way).
  template <class Clock, class Duration>
  bool wait_until(MutexLock& lock, std::chrono::time_point<Clock, Duration> deadline) {
    std::unique_lock<std::mutex> native(lock.mu_.mu_, std::adopt_lock);
    const bool woken = cv_.wait_until(native, deadline) == std::cv_status::no_timeout;
    native.release();
    return woken;
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace syncconfig::internal
