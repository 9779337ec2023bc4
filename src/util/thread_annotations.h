// Clang's thread-safety analysis: which mutex guards which member, and which functions must be
// called with it held, written so that the compiler checks it (-Wthread-safety; `.ci/run` builds
// the library with clang and makes its warnings errors). Empty for other compilers.
//
// Use with the annotated mutexes of util/mutex.h and cache/read_mostly_mutex.h: the analysis
// does not see std::mutex or std::lock_guard.
#pragma once

#if defined(__clang__)
#define SC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SC_THREAD_ANNOTATION(x)
#endif

// On a class: it is a lock. On a member: which lock guards it (reads need it shared, writes
// exclusive).
#define SC_CAPABILITY(name) SC_THREAD_ANNOTATION(capability(name))
#define SC_SCOPED_CAPABILITY SC_THREAD_ANNOTATION(scoped_lockable)
#define SC_GUARDED_BY(lock) SC_THREAD_ANNOTATION(guarded_by(lock))
#define SC_PT_GUARDED_BY(lock) SC_THREAD_ANNOTATION(pt_guarded_by(lock))

// On a function: the caller must hold the lock (exclusively / at least shared), or must not.
#define SC_REQUIRES(...) SC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define SC_REQUIRES_SHARED(...) SC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define SC_EXCLUDES(...) SC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// On a function: it takes or releases the lock.
#define SC_ACQUIRE(...) SC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define SC_ACQUIRE_SHARED(...) SC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define SC_RELEASE(...) SC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define SC_RELEASE_SHARED(...) SC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define SC_RELEASE_GENERIC(...) SC_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))

// Where the analysis cannot follow (a lock handed to std::condition_variable): say why.
#define SC_NO_THREAD_SAFETY_ANALYSIS SC_THREAD_ANNOTATION(no_thread_safety_analysis)
