// Running helper programs (initdb, pg_ctl, ...) without a shell.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace syncconfig::internal {

struct ProcessResult {
  // The program's exit status; 128 + N if it was killed by signal N (as shells report it); 127
  // if it could not be started (output then says why); -1 if unknown (SIGCHLD is ignored in
  // this process, so the kernel reaped the child).
  int exit_code;
  // stdout and stderr, interleaved as written.
  std::string output;
  // The timeout passed and the child was killed (exit_code is then 128 + SIGKILL).
  bool timed_out = false;
};

// Runs argv[0] (looked up in PATH when it has no '/') with the given arguments, stdin from
// /dev/null, and waits for it. Kills it (and its process group) if it runs longer than timeout.
// working_dir: the child's working directory; empty keeps ours. Thread-safe.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                          const std::filesystem::path& working_dir = {});

bool running_as_root();

}  // namespace syncconfig::internal
