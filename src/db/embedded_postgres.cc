#include "syncconfig/embedded_postgres.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "syncconfig/error.h"
#include "util/process.h"

namespace syncconfig {
namespace {

namespace fs = std::filesystem;
using internal::ProcessResult;
using internal::run_process;

constexpr char kServerUser[] = "postgres";
constexpr int kPortAttempts = 4;  // First try plus 3 retries with a new auto-picked port.
constexpr int kLogTailLines = 20;
constexpr int kInitdbMinTimeoutSeconds = 60;
// Slack on top of pg_ctl's own -t, so pg_ctl reports its timeout rather than being killed.
constexpr int kPgCtlSlackSeconds = 15;

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInternal, message); }

std::string quote_path(const fs::path& path) { return "\"" + path.string() + "\""; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  return s;
}

std::string tail_lines(std::string_view text, int lines) {
  text = trim(text);
  size_t pos = text.size();
  for (int i = 0; i < lines && pos > 0; ++i) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string_view::npos) return std::string(text);
    pos = nl;
  }
  return std::string(text.substr(pos == 0 ? 0 : pos + 1));
}

std::string read_from(const fs::path& file, std::streamoff offset) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  in.seekg(offset);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool has_server_binaries(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "initdb", ec) && fs::is_regular_file(dir / "pg_ctl", ec);
}

// "15" -> {15}, "9.6" -> {9, 6}; nullopt for anything that is not a version number.
std::optional<std::vector<int>> parse_version(const std::string& name) {
  std::vector<int> parts;
  std::istringstream in(name);
  std::string part;
  while (std::getline(in, part, '.')) {
    if (part.empty() || part.size() > 6 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    parts.push_back(std::stoi(part));
  }
  if (parts.empty()) return std::nullopt;
  return parts;
}

fs::path find_bin_dir(const fs::path& configured) {
  constexpr char kNotFound[] =
      "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql";
  if (!configured.empty()) {
    if (has_server_binaries(configured)) return fs::absolute(configured);
    fail(std::string(kNotFound) + " (EmbeddedPostgresOptions::bin_dir is " +
         quote_path(configured) + ")");
  }
  // Debian scheme first: there `pg_config --bindir` says /usr/bin, which holds only client
  // wrappers, while the server binaries live in /usr/lib/postgresql/<major>/bin.
  std::optional<std::vector<int>> best_version;
  fs::path best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    auto version = parse_version(entry.path().filename().string());
    if (!version || !has_server_binaries(entry.path() / "bin")) continue;
    if (!best_version || *version > *best_version) {
      best_version = version;
      best = entry.path() / "bin";
    }
  }
  if (!best.empty()) return best;

  ProcessResult r = run_process({"pg_config", "--bindir"}, std::chrono::seconds(10));
  if (r.exit_code == 0) {
    fs::path dir(std::string(trim(r.output)));
    if (has_server_binaries(dir)) return dir;
  }
  fail(kNotFound);
}

// Passed through pg_ctl's shell (pg_ctl -o), so only characters that need no quoting.
bool is_safe_setting_token(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == '-';
  });
}

void validate_settings(const std::map<std::string, std::string>& settings) {
  for (const auto& [name, value] : settings) {
    if (name.empty() || !is_safe_setting_token(name)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "EmbeddedPostgres setting name \"" + name +
                      "\" is invalid: only letters, digits and _.:/- are allowed");
    }
    if (!is_safe_setting_token(value)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "EmbeddedPostgres setting " + name + " has invalid value \"" + value +
                      "\": only letters, digits and _.:/- are allowed");
    }
  }
}

// pg_ctl puts the data directory into a shell command inside double quotes, and PostgreSQL
// splits unix_socket_directories at commas.
void validate_data_dir(const fs::path& dir) {
  const std::string s = dir.string();
  for (char c : s) {
    if (c == '"' || c == '\\' || c == '$' || c == '`' || c == ',' || c == '\'' ||
        static_cast<unsigned char>(c) < 0x20) {
      throw Error(ErrorCode::kInvalidArgument,
                  "EmbeddedPostgres data directory " + quote_path(dir) +
                      " contains a character that cannot be passed to pg_ctl (one of "
                      "\"\\$`,' or a control character)");
    }
  }
}

// A free loopback port, reserved: the returned socket stays bound to it (with SO_REUSEADDR and
// never listening, so PostgreSQL, which also sets SO_REUSEADDR, can bind it too). While it is
// bound, the kernel hands the port to no other bind(port 0) or outgoing connection, so another
// cluster started meanwhile cannot take it while this server is down for a restart.
std::pair<int, int> reserve_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(std::string("picking a free port: socket: ") + std::strerror(errno));
  const int on = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0 &&
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (port <= 0) {
    int error = errno;
    close(fd);
    fail(std::string("picking a free port: ") + std::strerror(error));
  }
  return {fd, port};
}

// root's PATH normally has /usr/sbin, but do not depend on it.
std::string runuser_program() {
  std::error_code ec;
  return fs::exists("/usr/sbin/runuser", ec) ? "/usr/sbin/runuser" : "runuser";
}

struct ServerUser {
  uid_t uid;
  gid_t gid;
};

ServerUser lookup_server_user() {
  std::vector<char> buffer(16384);
  passwd pw;
  passwd* found = nullptr;
  int error = getpwnam_r(kServerUser, &pw, buffer.data(), buffer.size(), &found);
  if (found == nullptr) {
    fail(std::string("running as root, but user \"") + kServerUser +
         "\" to run PostgreSQL as does not exist (PostgreSQL refuses to run as root)" +
         (error != 0 ? std::string(": ") + std::strerror(error) : std::string()));
  }
  return {pw.pw_uid, pw.pw_gid};
}

void chown_recursive(const fs::path& dir, const ServerUser& user) {
  auto chown_one = [&](const fs::path& p) {
    if (lchown(p.c_str(), user.uid, user.gid) != 0) {
      fail("changing the owner of " + quote_path(p) + " to " + kServerUser +
           " failed: " + std::strerror(errno));
    }
  };
  chown_one(dir);
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    chown_one(it->path());
  }
  if (ec) fail("listing " + quote_path(dir) + " failed: " + ec.message());
}

// Best-effort explanation of why `user` cannot reach `dir`: the first ancestor it cannot search
// by mode bits (ACLs are not considered).
fs::path first_untraversable(const fs::path& dir, const ServerUser& user) {
  std::vector<gid_t> groups(64);
  int count = static_cast<int>(groups.size());
  if (getgrouplist(kServerUser, user.gid, groups.data(), &count) < 0) {
    groups.resize(count);
    getgrouplist(kServerUser, user.gid, groups.data(), &count);
  }
  groups.resize(std::max(count, 0));
  fs::path current;
  for (const fs::path& part : dir) {
    current /= part;
    struct stat st;
    if (stat(current.c_str(), &st) != 0) return current;
    bool ok;
    if (st.st_uid == user.uid) {
      ok = st.st_mode & S_IXUSR;
    } else if (std::find(groups.begin(), groups.end(), st.st_gid) != groups.end()) {
      ok = st.st_mode & S_IXGRP;
    } else {
      ok = st.st_mode & S_IXOTH;
    }
    if (!ok) return current;
  }
  return dir;
}

}  // namespace

EmbeddedPostgres::EmbeddedPostgres(EmbeddedPostgresOptions options)
    : options_(std::move(options)), port_(options_.port) {
  if (!options_.data_dir.empty()) data_dir_ = fs::absolute(options_.data_dir).lexically_normal();
}

EmbeddedPostgres::~EmbeddedPostgres() {
  try {
    stop();
  } catch (...) {
    try {
      kill();
    } catch (...) {
      // Nothing left to try; a server whose data directory vanishes shuts itself down.
    }
  }
  if (temporary_ && !data_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }
  if (port_reservation_ >= 0) close(port_reservation_);
}

std::vector<std::string> EmbeddedPostgres::server_command(const char* program,
                                                          std::vector<std::string> args) const {
  std::vector<std::string> argv;
  if (as_root_) {
    // PostgreSQL refuses to run as root. runuser (unlike su) needs no PAM session or password.
    argv = {runuser_program(), "-u", kServerUser, "--"};
  }
  argv.push_back((bin_dir_ / program).string());
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  return argv;
}

void EmbeddedPostgres::start() {
  if (running_) return;
  validate_settings(options_.settings);
  if (!data_dir_.empty()) validate_data_dir(data_dir_);
  if (bin_dir_.empty()) bin_dir_ = find_bin_dir(options_.bin_dir);
  as_root_ = internal::running_as_root();
  std::optional<ServerUser> user;
  if (as_root_) user = lookup_server_user();

  if (data_dir_.empty()) {
    std::string pattern = (fs::temp_directory_path() / "syncconfig-pg-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      fail("creating a temporary directory " + quote_path(pattern) +
           " failed: " + std::strerror(errno));
    }
    data_dir_ = pattern;
    temporary_ = true;
    validate_data_dir(data_dir_);
  } else {
    std::error_code ec;
    fs::create_directories(data_dir_, ec);
    if (ec) fail("creating data directory " + quote_path(data_dir_) + " failed: " + ec.message());
  }
  const bool initialised = fs::exists(data_dir_ / "PG_VERSION");
  // Working directory of the helpers: ours may be unreadable for the postgres user (e.g. /root),
  // which makes initdb and postgres complain.
  const fs::path cwd = "/";

  if (user) {
    std::error_code ec;
    // create_directories made it 0755; PostgreSQL requires 0700 (or 0750).
    if (!initialised) fs::permissions(data_dir_, fs::perms::owner_all, ec);
    if (ec) fail("chmod 0700 " + quote_path(data_dir_) + " failed: " + ec.message());
    chown_recursive(data_dir_, *user);
    ProcessResult reach =
        run_process({runuser_program(), "-u", kServerUser, "--", "test", "-x", data_dir_.string()},
                    std::chrono::seconds(30), cwd);
    if (reach.exit_code != 0) {
      fs::path blocker = first_untraversable(data_dir_, *user);
      fail("PostgreSQL runs as user " + std::string(kServerUser) +
           " (this process is root), which cannot reach data directory " + quote_path(data_dir_) +
           ": " + quote_path(blocker) + " is not searchable by " + kServerUser +
           "; use a data directory below a path it can traverse (or chmod o+x " + blocker.string() +
           ")");
    }
  }

  const std::string dir = data_dir_.string();
  if (!initialised) {
    const int timeout = std::max(options_.timeout_seconds, kInitdbMinTimeoutSeconds);
    ProcessResult r =
        run_process(server_command("initdb", {"-D", dir, "-U", "postgres", "-A", "trust", "-E",
                                              "UTF8", "--locale=C", "--no-sync"}),
                    std::chrono::seconds(timeout), cwd);
    if (r.exit_code != 0) {
      fail("initdb in " + dir + " failed (exit code " + std::to_string(r.exit_code) +
           "): " + tail_lines(r.output, kLogTailLines));
    }
  }

  const bool pick_port = port_ == 0;
  std::string failure;
  for (int attempt = 0; attempt < (pick_port ? kPortAttempts : 1); ++attempt) {
    int port = port_;
    if (pick_port) std::tie(port_reservation_, port) = reserve_free_port();
    std::optional<std::string> error = start_server(port);
    if (!error) {
      port_ = port;
      running_ = true;
      return;
    }
    failure = std::move(*error);
    if (pick_port) {
      close(port_reservation_);
      port_reservation_ = -1;
    }
  }
  fail("starting PostgreSQL in " + dir + " failed: " + failure);
}

std::optional<std::string> EmbeddedPostgres::start_server(int port) {
  const std::string dir = data_dir_.string();
  const fs::path log = data_dir_ / "server.log";
  std::error_code ec;
  const auto log_offset = static_cast<std::streamoff>(fs::file_size(log, ec));

  // pg_ctl hands this string to /bin/sh: the data directory is single-quoted (validate_data_dir
  // rules out quotes) and the settings are restricted to characters that need no quoting.
  std::string opts = "-p " + std::to_string(port) +
                     " -c listen_addresses=127.0.0.1 -c 'unix_socket_directories=" + dir + "'";
  // A temporary cluster is thrown away anyway, so durability only costs time. A kept one keeps
  // fsync on. synchronous_commit stays on in both: benchmarks measure real commits.
  if (temporary_) opts += " -c fsync=off";
  for (const auto& [name, value] : options_.settings) opts += " -c " + name + "=" + value;

  const int timeout = options_.timeout_seconds;
  ProcessResult r =
      run_process(server_command("pg_ctl", {"-D", dir, "-l", log.string(), "-w", "-t",
                                            std::to_string(timeout), "-o", opts, "start"}),
                  std::chrono::seconds(timeout + kPgCtlSlackSeconds), "/");
  if (r.exit_code == 0) return std::nullopt;

  // pg_ctl may have given up waiting while the server is still coming up; leave nothing behind
  // for the next attempt or the caller.
  run_process(server_command("pg_ctl", {"-D", dir, "-m", "immediate", "-w", "-t",
                                        std::to_string(timeout), "stop"}),
              std::chrono::seconds(timeout + kPgCtlSlackSeconds), "/");

  std::string server_log = read_from(log, log_offset);
  if (trim(server_log).empty()) server_log = read_from(log, 0);
  return "pg_ctl (port " + std::to_string(port) + ", exit code " + std::to_string(r.exit_code) +
         "): " + tail_lines(r.output, kLogTailLines) +
         "\nserver.log: " + tail_lines(server_log, kLogTailLines);
}

void EmbeddedPostgres::shutdown(const char* mode) {
  if (!running_) return;
  const std::string dir = data_dir_.string();
  const int timeout = options_.timeout_seconds;
  ProcessResult r = run_process(server_command("pg_ctl", {"-D", dir, "-m", mode, "-w", "-t",
                                                          std::to_string(timeout), "stop"}),
                                std::chrono::seconds(timeout + kPgCtlSlackSeconds), "/");
  if (r.exit_code != 0) {
    // The server may have died on its own; then there is nothing to stop. pg_ctl status exits
    // with 3 when no server runs.
    ProcessResult status =
        run_process(server_command("pg_ctl", {"-D", dir, "status"}), std::chrono::seconds(30), "/");
    if (status.exit_code != 3) {
      fail("stopping PostgreSQL (" + std::string(mode) + ") in " + dir +
           " failed: " + tail_lines(r.output, kLogTailLines));
    }
  }
  running_ = false;
}

void EmbeddedPostgres::stop() { shutdown("fast"); }

void EmbeddedPostgres::kill() { shutdown("immediate"); }

void EmbeddedPostgres::promote() {
  const std::string dir = data_dir_.string();
  if (!running_) fail("promoting PostgreSQL in " + dir + " failed: the server is not running");
  const int timeout = options_.timeout_seconds;
  ProcessResult r = run_process(
      server_command("pg_ctl", {"-D", dir, "-w", "-t", std::to_string(timeout), "promote"}),
      std::chrono::seconds(timeout + kPgCtlSlackSeconds), "/");
  if (r.exit_code != 0) {
    fail("promoting PostgreSQL in " + dir + " failed: " + tail_lines(r.output, kLogTailLines));
  }
}

void EmbeddedPostgres::restart() {
  stop();
  start();
}

std::string EmbeddedPostgres::dsn() const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/postgres";
}

}  // namespace syncconfig
