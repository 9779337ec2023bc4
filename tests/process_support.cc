#include "process_support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace syncconfig::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::vector<std::string> child_environment(const EnvChanges& changes) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    if (name == "SYNCCONFIG_DSN" || name == "SYNCCONFIG_SERVER" || name == "SYNCCONFIG_TOKEN" ||
        changes.count(name) != 0) {
      continue;
    }
    out.push_back(entry);
  }
  for (const auto& [name, value] : changes) {
    if (value) out.push_back(name + "=" + *value);
  }
  return out;
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "syncconfig_test_XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
  fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
  std::ofstream(path_ / name) << text;
  return (path_ / name).string();
}

Program syncconfig_program() { return Program{SYNCCONFIG_BIN}; }

Child::Child(const std::vector<std::string>& args, const EnvChanges& env, const fs::path& cwd,
             const Program& program) {
  err_path_ = (fs::temp_directory_path() /
               ("syncconfig_child_err_" + std::to_string(getpid()) + "_" + unique_name("c")))
                  .string();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  out_fd_ = fds[0];

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);

  std::vector<std::string> argv = {program.path};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<std::string> envs = child_environment(env);
  std::vector<char*> cenv;
  for (std::string& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  int rc = posix_spawn(&pid_, program.path.c_str(), &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(out_fd_);
    throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
  }
}

Child::~Child() {
  if (!exit_code_) {
    kill(pid_, SIGTERM);
    if (!wait(30s)) {
      kill(pid_, SIGKILL);
      wait(10s);
    }
  }
  close(out_fd_);
  std::error_code ec;
  fs::remove(err_path_, ec);
}

void Child::signal(int signo) { kill(pid_, signo); }

std::optional<std::string> Child::read_line(std::chrono::milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (std::size_t nl = out_.find('\n'); nl != std::string::npos) {
      std::string line = out_.substr(0, nl);
      out_.erase(0, nl + 1);
      return line;
    }
    if (eof_ || !fill(deadline)) return std::nullopt;
  }
}

std::string Child::read_rest(std::chrono::milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (!eof_ && fill(deadline)) {
  }
  return std::exchange(out_, {});
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else if (r < 0 && errno != EINTR) {
      exit_code_ = -1;
    } else if (Clock::now() >= deadline) {
      return std::nullopt;
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  return exit_code_;
}

std::string Child::err() const {
  std::ifstream in(err_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Child::fill(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  pollfd p{out_fd_, POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(left.count()));
  if (ready < 0 && errno == EINTR) return true;
  if (ready <= 0) return false;
  char buffer[4096];
  ssize_t n = read(out_fd_, buffer, sizeof(buffer));
  if (n > 0) {
    out_.append(buffer, static_cast<std::size_t>(n));
  } else if (n == 0 || errno != EINTR) {
    eof_ = true;
  }
  return true;
}

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit " << r.exit_code << "\nstdout: " << r.out << "\nstderr: " << r.err;
}

RunResult run(const std::vector<std::string>& args, const EnvChanges& env,
              std::chrono::milliseconds timeout, const fs::path& cwd, const Program& program) {
  Child child(args, env, cwd, program);
  Clock::time_point deadline = Clock::now() + timeout;
  std::string out = child.read_rest(timeout);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  std::optional<int> code = child.wait(std::max(left, 0ms));
  return {code.value_or(-1), out, child.err()};
}

std::vector<std::string> on_table(const std::string& table) {
  return {"--dsn", dsn(), "--table", table, "--channel", table + "_ch"};
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

int listening_port(Child& serve, std::chrono::milliseconds timeout) {
  std::optional<std::string> line = serve.read_line(timeout);
  std::string prefix = "listening on http://127.0.0.1:";
  if (line && line->rfind("listening on https://", 0) == 0) {
    prefix = "listening on https://127.0.0.1:";  // serve --tls-cert
  }
  if (!line || line->rfind(prefix, 0) != 0) {
    ADD_FAILURE() << "no listening line; got: " << line.value_or("<none>")
                  << "\nstderr: " << serve.err();
    return 0;
  }
  return std::stoi(line->substr(prefix.size()));
}

TableServer::TableServer(const std::string& table, int port, EnvChanges env,
                         const std::string& extra_params, const std::string& serve_section) {
  std::string file =
      dir_.write("services.yaml", serve_section +
                                      "service-definitions:\n"
                                      "  db:\n"
                                      "    type: dbpool_pg\n"
                                      "    params: {dsn: \"${TEST_DSN}\"}\n"
                                      "  cfg:\n"
                                      "    type: sync_config_pg\n"
                                      "    params: {dbpool_name: db, table_name: " +
                                      table + ", channel: " + table + "_ch" + extra_params + "}\n");
  env["TEST_DSN"] = dsn();
  child_ = std::make_unique<Child>(std::vector<std::string>{"serve", "--config", file, "--listen",
                                                            "127.0.0.1:" + std::to_string(port)},
                                   env);
  port_ = listening_port(*child_);
}

}  // namespace syncconfig::testing
