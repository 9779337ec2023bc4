#include "util/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "syncconfig/error.h"

extern char** environ;

namespace syncconfig::internal {
namespace {

// How often the read loop wakes up to check whether the child exited while a descendant still
// holds the pipe open (e.g. a daemon that did not redirect its output).
constexpr int kPollSliceMs = 100;

[[noreturn]] void throw_errno(const std::string& what, int error) {
  throw Error(ErrorCode::kInternal, what + ": " + std::strerror(error));
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 128;
}

// Owns the spawn attribute objects so every exit path destroys them.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

void read_available(int fd, std::string& output) {
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;
    }
  }
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                          const std::filesystem::path& working_dir) {
  if (argv.empty()) throw Error(ErrorCode::kInternal, "run_process: empty argument list");

  // O_CLOEXEC: a child spawned concurrently by another thread must not inherit our pipe, or we
  // would not see EOF until that unrelated child exits.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw_errno("run_process: pipe", errno);
  const int read_fd = fds[0];
  const int write_fd = fds[1];

  pid_t pid = -1;
  int spawn_error;
  {
    SpawnSetup setup;
    posix_spawn_file_actions_addopen(&setup.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&setup.actions, write_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&setup.actions, write_fd, STDERR_FILENO);
    if (!working_dir.empty()) {
      posix_spawn_file_actions_addchdir_np(&setup.actions, working_dir.c_str());
    }
    // Own process group, so a timeout kills helpers the child started too. Default signal
    // dispositions and an empty mask, so an ignored SIGPIPE etc. in this process does not leak
    // into the child.
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setflags(
        &setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&setup.attr, 0);
    posix_spawnattr_setsigdefault(&setup.attr, &all);
    posix_spawnattr_setsigmask(&setup.attr, &none);

    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const std::string& arg : argv) cargv.push_back(const_cast<char*>(arg.c_str()));
    cargv.push_back(nullptr);
    spawn_error = posix_spawnp(&pid, cargv[0], &setup.actions, &setup.attr, cargv.data(), environ);
  }
  close(write_fd);
  if (spawn_error != 0) {
    close(read_fd);
    return {127, argv[0] + ": " + std::strerror(spawn_error)};
  }

  ProcessResult result{0, {}};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool reaped = false;
  int status = 0;
  for (;;) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd p{read_fd, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(remaining.count(), kPollSliceMs)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        // Exited, but something else keeps the pipe open: take what is there and stop.
        reaped = true;
        fcntl(read_fd, F_SETFL, O_NONBLOCK);
        read_available(read_fd, result.output);
        break;
      }
      continue;
    }
    char buffer[4096];
    ssize_t n = read(read_fd, buffer, sizeof(buffer));
    if (n > 0) {
      result.output.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;  // EOF: the child and everything it started closed their output.
    }
  }
  close(read_fd);

  // EOF normally means the child exited, but it may also just have closed its output: wait for
  // it, though not beyond the deadline.
  auto pause = std::chrono::milliseconds(1);
  while (!reaped && !result.timed_out) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      reaped = true;
    } else if (r < 0 && errno != EINTR) {
      // ECHILD: SIGCHLD is ignored in this process, so the kernel reaped it; status unknown.
      return {-1, std::move(result.output), false};
    } else if (std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  if (!reaped) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);  // In case it left its process group.
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  result.exit_code = decode_status(status);
  return result;
}

bool running_as_root() { return geteuid() == 0; }

}  // namespace syncconfig::internal
