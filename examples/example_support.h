// Helpers shared by the examples: where the database is, waiting for a condition with a
// deadline, and counting failed checks (an example exits non-zero when one fails).
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "syncconfig/embedded_postgres.h"
#include "syncconfig/syncconfig.h"

namespace example {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  // One write per line: subscribers print from the store's callback thread meanwhile, and three
  // separate writes could be split by theirs.
  std::cout << (std::string(ok ? "  ok: " : "  FAILED: ") + what + "\n") << std::flush;
  if (!ok) ++failures;
}

// Polls `condition` until it holds or 5 seconds pass. Returns whether it held.
inline bool wait_for(const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// argv[1], else SYNCCONFIG_DSN, else an embedded PostgreSQL started into `embedded`.
inline std::string dsn_for(int argc, char** argv,
                           std::optional<syncconfig::EmbeddedPostgres>& embedded) {
  if (argc > 1) return argv[1];
  if (const char* env = std::getenv("SYNCCONFIG_DSN"); env && *env) return env;
  std::cout << "No DSN given: starting an embedded PostgreSQL...\n";
  embedded.emplace();
  embedded->start();
  return embedded->dsn();
}

}  // namespace example
